"""The project's own site, built as ``mkdocs build --strict`` builds it, in a temporary folder:
every figure is drawn, and the DeepSeek-V3 figures show what their pages say they show."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from figure_geometry import first_pieces_through_boxes, left_bands
from mkdocs.commands.build import build
from mkdocs.config import load_config

from model_trace.engine import DrawOptions, draw, place
from model_trace.graph import Graph, ModuleCall
from model_trace.integrity import check_figure
from model_trace.view_data import decode_graph
from model_trace.view_tree import ViewTree

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Figure:
    """One figure of a built page: its caption, its graph, and its HTML up to the next one
    (the breakdown table under it included)."""

    caption: str
    graph: Graph
    html: str
    data: str
    """The view data the figure carries (JSON)."""

    def ops(self) -> Counter[str]:
        return Counter(n.name for n in self.graph.nodes.values() if n.kind == "op")

    def outputs_of(self, name: str) -> list[tuple[int, ...]]:
        return [tuple(self.graph.tensors[t].shape) for n in self.graph.nodes.values()
                if n.name == name for t in n.outputs]

    def module(self, path: str) -> ModuleCall:
        return next(m for m in self.graph.modules.values() if m.path == path)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("docs-site")
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    build(load_config(str(root / "mkdocs.yml"), strict=True, site_dir=str(root / "site")))
    return root / "site"


def _figures(site: Path, page: str) -> list[Figure]:
    html = (site / page / "index.html").read_text(encoding="utf-8")
    starts = [m.start() for m in re.finditer(r'<figure class="model-trace"', html)]
    figures = []
    for start, end in zip(starts, [*starts[1:], len(html)], strict=True):
        part = html[start:end]
        data = re.search(r'<template class="mt-data">(.*?)</template>',
                         part, re.S)
        caption = re.search(r"<figcaption[^>]*>(.*?)</figcaption>", part, re.S)
        figures.append(Figure(re.sub(r"<[^>]+>", "", caption.group(1)) if caption else "",
                              decode_graph(json.loads(data.group(1))), part, data.group(1)))
    return figures


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_every_page_builds_with_its_figures_and_no_error_box(site: Path) -> None:
    pages = [p for p in site.rglob("index.html") if p.parent.name != "search"]
    assert len(pages) >= 10
    drawn = 0
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert "model-trace-error" not in html, page
        ids = re.findall(r' id="(model-trace-[^"]+)"', html)
        assert len(ids) == len(set(ids)), page
        drawn += html.count('<figure class="model-trace"')
    assert drawn >= 20


def _all_figures(site: Path) -> list[tuple[str, Figure]]:
    pages = sorted(p.parent.relative_to(site).as_posix() for p in site.rglob("index.html")
                   if p.parent.name != "search")
    return [(page, figure) for page in pages
            if '<figure class="model-trace"' in (site / page / "index.html").read_text(
                encoding="utf-8")
            for figure in _figures(site, page)]


def test_every_figure_draws_every_tensor_end_to_end_at_every_depth(site: Path) -> None:
    """The integrity checker on each figure as the page ships it, and on the same figure
    opened at every depth: no missing edge, dead end, floating box or detached end."""
    figures = _all_figures(site)
    assert len(figures) >= 20
    for page, figure in figures:
        data = json.loads(figure.data)
        tree = ViewTree.from_graph(figure.graph, show_constants=data["view"]["show_constants"])
        idle = [i for i, item in tree.items.items() if item.kind == "idle"]
        shipped = re.search(r"<svg.*?</svg>", figure.html, re.S).group(0)
        report = check_figure(shipped, figure.graph, tree.parents(), idle)
        assert report.total == 0, f"{page} {figure.caption!r}: {report}"
        for depth in range(tree.deepest_level() + 1):
            svg = draw(figure.data, DrawOptions(depth=depth)).svg
            report = check_figure(svg, figure.graph, tree.parents(), idle)
            assert report.total == 0, f"{page} {figure.caption!r} depth {depth}: {report}"


def test_no_figure_has_overlapping_labels_or_titles_too_wide(site: Path) -> None:
    """Shape labels never overlap each other or a box; every label fits its box; no open box
    keeps an empty band down its left side; no edge starts across another box."""
    for page, figure in _all_figures(site):
        depth = int(re.search(r'data-depth="(\d+)"', figure.html).group(1))
        placed = place(figure.data, DrawOptions(depth=depth))
        labels = [(lab["x"], lab["y"] - 8, lab["width"], 10) for lab in placed["labels"]]
        boxes = [(b["x"], b["y"], b["w"], b["h"]) for b in placed["boxes"].values()
                 if not b["open"]]
        for i, a in enumerate(labels):
            assert not any(_overlap(a, b) for b in labels[i + 1:] + boxes), (page, a)
        text_widths = placed["text_widths"]
        for item, box in placed["boxes"].items():
            assert box["w"] >= text_widths[item], (page, item)
        bands = left_bands(placed)
        assert all(band <= 1 for band in bands.values()), (page, bands)
        assert first_pieces_through_boxes(placed) == [], page


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return (a[0] < b[0] + b[2] - 0.5 and b[0] < a[0] + a[2] - 0.5
            and a[1] < b[1] + b[3] - 0.5 and b[1] < a[1] + a[3] - 0.5)


def test_the_whole_model_folds_its_61_blocks_and_256_experts(site: Path) -> None:
    (whole,) = _figures(site, "deepseek-v3")
    repeats = {m.path: m.repeat.count for m in whole.graph.modules.values() if m.repeat}
    assert repeats == {"layers.0": 3, "layers.3": 58, "layers.3.ffn.experts": 256}


def test_the_head_is_not_fp8_and_the_logits_are_of_the_last_position(site: Path) -> None:
    outer, _, head = _figures(site, "deepseek-v3/embedding-and-head")
    assert head.ops() == Counter({"linear": 1})  # no weight_dequant: bf16 weights
    assert (1, 7168) in outer.outputs_of("getitem")  # norm(h)[:, -1]
    assert outer.module("embed").stats.params == 926_679_040


def test_attention_tabs_show_the_two_paths_and_their_caches(site: Path) -> None:
    _, absorb, naive = _figures(site, "deepseek-v3/attention")
    assert sorted(absorb.outputs_of("new_zeros")) == [(8, 16384, 64), (8, 16384, 512)]
    assert sorted(naive.outputs_of("new_zeros")) == [(8, 16384, 128, 128),
                                                     (8, 16384, 128, 192)]
    absorb_einsums = {n.args["arg0"] for n in absorb.graph.nodes.values() if n.name == "einsum"}
    assert {"'bshd,hdc->bshc'", "'bshc,hdc->bshd'"} <= absorb_einsums
    assert "'bshd,bthd->bsht'" in {n.args["arg0"] for n in naive.graph.nodes.values()
                                   if n.name == "einsum"}
    scales = {n.args.get("arg1") for n in absorb.graph.nodes.values() if n.name == "mul"}
    assert any(s and s.startswith("0.1352") for s in scales)  # 192^-0.5 * m^2, YaRN's mscale


def test_the_gate_routes_within_groups_and_random_routing_leaves_experts_idle(
        site: Path) -> None:
    _, gate = _figures(site, "deepseek-v3/moe")
    ops = gate.ops()
    assert ops["sigmoid"] == 1 and ops["topk"] == 3 and ops["masked_fill"] == 1
    balanced, random, first = _figures(site, "deepseek-v3/load-balancing")
    assert "×256" in _text(balanced.html) and "(never called)" not in balanced.html
    assert "(never called)" in random.html
    loads = first.graph.meta["experts"]["layers.3.ffn.experts"]["tokens"]
    assert loads == [128] * 8 + [0] * 248


def test_a_decoding_step_attends_one_token_to_the_whole_cache(site: Path) -> None:
    prefill, absorbed, naive = _figures(site, "deepseek-v3/kv-cache")
    assert (1, 128, 128, 128) in prefill.outputs_of("softmax")
    assert (1, 1, 128, 4097) in absorbed.outputs_of("softmax")
    assert (1, 1, 128, 4097) in naive.outputs_of("softmax")
    assert "triu_" not in absorbed.ops()  # one token needs no mask


def test_the_deepseek_pages_compare_their_variants_in_one_fence(site: Path) -> None:
    """MLA absorbed against naive, bf16 against fp8 GEMMs, V2's gate against V3's: each a
    compare fence (two figures side by side, a table under them), and the decoding step's
    figures cost what the KV cache page says: absorbed, more FLOPs and less cache."""
    for page in ("attention", "kv-cache", "fp8", "v2-to-v3"):
        html = (site / "deepseek-v3" / page / "index.html").read_text(encoding="utf-8")
        assert html.count('<div class="model-trace-compare"') == 1, page
        assert html.count('<div class="mt-compare-cell">') == 2, page
        assert html.count('class="mt-note-ref"') >= 4, page
    _, absorbed, naive = _figures(site, "deepseek-v3/kv-cache")
    absorbed_root, naive_root = (f.graph.modules[f.graph.root].stats for f in (absorbed, naive))
    assert absorbed_root.flops > naive_root.flops
    assert absorbed_root.workspace_bytes < naive_root.workspace_bytes  # the caches


def test_the_mtp_figure_reproduces_the_published_checkpoint(site: Path) -> None:
    whole, mtp = _figures(site, "deepseek-v3/mtp")
    totals = whole.graph.meta["totals"]
    assert totals["params"] - totals["block_scale_params"] == 684_489_845_504
    assert totals["params"] == 684_531_386_000  # every tensor of the checkpoint: "685B"
    assert {m.path for m in mtp.graph.modules.values()} >= {
        "mtp.embed", "mtp.enorm", "mtp.hnorm", "mtp.eh_proj", "mtp.block", "mtp.norm",
        "mtp.head"}


def test_v2_and_v3_gates_differ_where_the_page_says(site: Path) -> None:
    v2_gate, v3_gate, v2_moe = _figures(site, "deepseek-v3/v2-to-v3")
    assert v2_gate.ops()["softmax"] == 1 and "sigmoid" not in v2_gate.ops()
    assert v2_gate.ops()["amax"] == 1 and v3_gate.ops()["sigmoid"] == 1
    assert v2_moe.module("layers.1.ffn.experts").repeat.count == 160


def test_the_latent_cache_is_not_split_by_tensor_parallelism(site: Path) -> None:
    _, attention = _figures(site, "deepseek-v3/expert-parallel")
    assert attention.graph.meta["tensor_parallel"] == {"rank": 0, "world_size": 16}
    assert sorted(attention.outputs_of("new_zeros")) == [(8, 16384, 64), (8, 16384, 512)]
    assert (1, 128, 8, 192) in attention.outputs_of("view")  # 8 of the 128 heads


def test_fp8_figures_put_the_kernels_where_the_page_says(site: Path) -> None:
    bf16, fp8, moe, memory = _figures(site, "deepseek-v3/fp8")
    assert bf16.ops()["weight_dequant"] == 3 and "act_quant" not in bf16.ops()
    assert fp8.ops()["act_quant"] == 3 and fp8.ops()["fp8_gemm"] == 3
    assert "weight_dequant" not in fp8.ops()
    kernels_by_module = {moe.graph.modules[n.parent].path for n in moe.graph.nodes.values()
                         if n.name in ("act_quant", "fp8_gemm")}
    assert "layers.3.ffn.gate" not in kernels_by_module
    assert "layers.3.ffn.shared_experts.w2" in kernels_by_module
    # the memory figure: one MoE block of the full model, bf16, coloured by workspace written
    assert 'data-overlay="workspace"' in memory.html
    assert "weight_dequant" in memory.ops() and "fp8_gemm" not in memory.ops()


def test_one_rank_of_the_16_way_split_shows_its_collectives(site: Path) -> None:
    rank, moe = _figures(site, "deepseek-v3/tensor-parallel")
    assert rank.graph.meta["tensor_parallel"] == {"rank": 0, "world_size": 16}
    ops = rank.ops()
    assert ops["all_reduce"] == 6  # embed; per block kind: wo, then w2 or shared w2 + routed
    assert ops["all_gather"] == 1
    assert (1, 129280) in rank.outputs_of("cat")  # the head's sixteen slices
    assert rank.module("embed").stats.params == 129280 // 16 * 7168
    assert moe.module("layers.3.ffn.experts").repeat.count == 16


def test_breakdown_has_the_published_totals_and_the_prose_quotes_it(site: Path) -> None:
    (figure,) = _figures(site, "deepseek-v3/parameters")
    text = _text(figure.html)
    assert "671,026,419,200 parameters" in text
    activated = int(re.search(r"([\d,]+) activated per token", text)[1].replace(",", ""))
    assert round(activated / 1e9, 2) == 37.55
    flops = int(re.search(r"([\d,]+) FLOPs per forward pass", text)[1].replace(",", ""))
    assert f"{flops / 1e12:.2f} trillion" in text
    assert f"{flops / 128 / 1e9:.1f} billion a token" in text


def _canvas_luminance(page: Any, figure: str = "model-trace-1") -> float:
    """Relative luminance (0..1) of a figure's canvas background, from its computed colour."""
    colour = page.evaluate(
        "(f) => getComputedStyle(document.querySelector(`#${f} .mt-canvas`)).backgroundColor",
        figure)
    parts = [float(v) for v in re.findall(r"[\d.]+", colour)[:3]]
    scale = 1.0 if colour.startswith("color(") else 255.0  # color-mix gives 0..1 parts
    r, g, b = (p / scale for p in parts)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _hydrated(page: Any, figure: str) -> None:
    """Wait until the viewer has taken a figure over (not left it static after a failure)."""
    page.wait_for_selector(f"#{figure}[data-mt-ready]")
    assert page.get_attribute(f"#{figure}", "data-mt-ready") != "failed"


@pytest.mark.browser
def test_the_site_in_a_browser_instant_navigation_and_dark_palette(site: Path, serve,
                                                                   open_page) -> None:
    """The built site in Chromium: the figures hydrate, Material's palette toggle turns them
    dark, and instant navigation (no page load) hydrates the next page's figures, dark too.

    Material navigates instantly only to the URLs of the site's sitemap, which MkDocs writes
    only with a ``site_url`` (and Material keeps its port): so this build names the address
    it is served from. Every figure comes from the cache of the strict build above."""
    served = site.parent / "served"
    served.mkdir()
    url = serve(served)
    build(load_config(str(site.parent / "mkdocs.yml"), site_url=url, site_dir=str(served)))
    page = open_page(url + "deepseek-v3/")
    _hydrated(page, "model-trace-1")
    assert _canvas_luminance(page) > 0.7
    page.locator("form[data-md-component='palette'] label:visible").first.click()
    page.wait_for_selector("body[data-md-color-scheme='slate']")
    assert _canvas_luminance(page) < 0.3
    page.evaluate("window.notReloaded = true")
    page.locator(".md-content a[href$='tensor-parallel/']").first.click()
    page.wait_for_url("**/deepseek-v3/tensor-parallel/")
    for figure in ("model-trace-1", "model-trace-2"):
        _hydrated(page, figure)
        assert _canvas_luminance(page, figure) < 0.3
    assert page.evaluate("window.notReloaded") is True  # Material swapped the page in place
    assert page.evaluate("document.querySelectorAll('script[src*=\"viewer.js\"]').length") == 1
    page.problems.assert_clean()
