"""Comparisons: variants traced, matched by module path and the line that called each op,
their differences marked in the figures and summed up in a table; ``model-trace diff``."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

from model_trace.cache import PREFIX_PLACEHOLDER
from model_trace.cli import main
from model_trace.compare import diff_graphs, draw_compare, op_counts, trace_compare, variants
from model_trace.engine import DrawOptions, draw
from model_trace.errors import SpecError
from model_trace.graph import Graph
from model_trace.integrity import check_figure
from model_trace.pipeline import focused, run_fences
from model_trace.render_html import FigureData
from model_trace.session import describe
from model_trace.spec import FenceSpec, parse_spec
from model_trace.view_tree import ViewTree
from model_zoo.deepseek_v3.model import MLA

MLA_FENCE = """\
model: deepseek-v3
config: tiny
focus: layers.0.attn
compare: {attn_impl: [naive, absorb]}
"""


def _spec(text: str) -> FenceSpec:
    return parse_spec(text).with_defaults(depth=1, routing="balanced", export=())


@pytest.fixture(scope="module")
def mla() -> tuple[list[Graph], list[str]]:
    spec = _spec(MLA_FENCE)
    traced = trace_compare(spec)
    graphs = [focused(g, v.spec)[0] for g, v in zip(traced.graphs, traced.variants,
                                                   strict=True)]
    return graphs, [v.title for v in traced.variants]


def _lines(method: object) -> tuple[str, range]:
    """The file (as the tracer names it) and the line numbers of a method's body."""
    source, first = inspect.getsourcelines(method)
    path = inspect.getsourcefile(method)
    assert path is not None
    return path.replace("\\", "/").rpartition("model_zoo/")[2], range(first, first + len(source))


def _branch_ops(graph: Graph, method: object) -> set[str]:
    """The ops of ``graph`` whose line of code is in ``method`` (a branch of the forward)."""
    file, lines = _lines(method)
    return {n.id for n in graph.nodes.values() if n.kind == "op" and n.source is not None
            and n.source.file.endswith(file) and n.source.line in lines}


def test_naive_against_absorb_finds_exactly_the_ops_of_the_two_branches(mla) -> None:
    graphs, titles = mla
    naive, absorb = graphs
    diff = diff_graphs(graphs, titles)
    only = [{d.present[k] for d in diff.by_status("only") if d.present[k] is not None
             and d.kind == "op"} for k in range(2)]
    # what the reference's code says: each branch's own lines, and in the naive branch the
    # call of wkv_b (its linear runs in the module's forward, not in the branch's lines)
    wkv_b = next(m.id for m in naive.modules.values() if m.path.endswith("attn.wkv_b"))
    expanded = {n.id for n in naive.nodes.values() if n.parent == wkv_b}
    assert expanded
    assert only[0] == _branch_ops(naive, MLA._attend_naive) | expanded
    assert only[1] == _branch_ops(absorb, MLA._attend_absorbed)
    # the shared code (projections, rotary, _cache, _softmax) is matched in both: the caches
    # it allocates change shape, nothing else in it is marked
    changed = {d.label.split(" (")[0] for d in diff.by_status("changed")}
    assert changed == {"wkv_b", "new_zeros"}
    cache_lines = _lines(MLA._cache)[1]
    for difference in diff.by_status("changed"):
        if difference.kind == "op":
            node = naive.nodes[difference.present[0]]
            assert node.source.line in cache_lines
            assert any(name == "shape" for name, _ in difference.rows)


def test_the_table_sets_the_totals_side_by_side(mla) -> None:
    graphs, titles = mla
    diff = diff_graphs(graphs, titles)
    totals = {name: values for name, values, _ in diff.totals}
    assert totals["parameters"][0] == totals["parameters"][1] == graphs[0].modules[
        graphs[0].root].stats.params
    assert totals["FLOPs"] == [g.modules[g.root].stats.flops for g in graphs]
    for k, graph in enumerate(graphs):
        ops = [n for n in graph.nodes.values() if n.kind == "op"]
        assert totals["ops"][k] == len(ops)  # nothing folded inside one attention
        assert totals["ops: matmul"][k] == sum(n.category == "matmul" for n in ops)
    assert totals["ops: matmul"][1] > totals["ops: matmul"][0]  # absorb multiplies more
    for name, stat in (("weights read", "weight_bytes"), ("workspace written", "workspace_bytes"),
                       ("activations written", "activation_bytes")):
        assert totals[name] == [getattr(g.modules[g.root].stats, stat) for g in graphs]
    assert totals["weights read"][0] == totals["weights read"][1]  # the same weights
    assert totals["workspace written"][0] > totals["workspace written"][1]  # per-head caches


def test_op_counts_count_each_member_of_a_folded_run() -> None:
    from figure_models import FIGURE_MODELS

    graph = FIGURE_MODELS["deepseek-v3 tiny"]()
    unfolded = _spec("model: deepseek-v3\nconfig: tiny\nfold: false")
    from model_trace.pipeline import trace_spec

    assert op_counts(graph) == op_counts(trace_spec(unfolded))


def test_the_fence_draws_each_variant_marked_with_a_table(mla) -> None:
    spec = _spec(MLA_FENCE + "highlight: [wkv_b]\nnotes: {wkv_b: Used in both.}\n"
                 "caption: Two ways to attend\nexport: [svg, json]")
    (output,) = run_fences([spec]).outputs
    assert not isinstance(output, Exception), output
    html = output.html
    assert html.count('<figure class="model-trace"') == 2
    titles = re.findall(r'<p class="mt-compare-title">([^<]+)</p>', html)
    assert titles == ["attn_impl: naive", "attn_impl: absorb"]
    ids = re.findall(r'<figure class="model-trace" id="([^"]+)"', html)
    assert ids == [f"{PREFIX_PLACEHOLDER}-1", f"{PREFIX_PLACEHOLDER}-2"]
    assert '<div class="mt-compare-table"><table>' in html and "Two ways to attend" in html
    assert html.count("Used in both.") == 2  # the note is listed under both figures
    # the marks travel in the view data; the static SVG draws them (green: only here)
    assert html.count("#1a7f37") >= 10 and "#bf8700" in html
    exported = json.loads(output.exports["json"])
    assert [v["title"] for v in exported["variants"]] == titles
    assert {d["status"] for d in exported["diff"]["differences"]} == {"only", "changed"}
    assert output.exports["svg"].startswith(b"<svg") and b"attn_impl: absorb" in \
        output.exports["svg"]


def test_marked_figures_stay_whole_at_every_depth(mla) -> None:
    graphs, titles = mla
    diff = diff_graphs(graphs, titles)
    from model_trace.compare import mark_tree

    for k, graph in enumerate(graphs):
        figure = FigureData.of(graph, marks=lambda tree, k=k: mark_tree(tree, diff, k))
        tree = figure.tree
        assert any(m.diff == "only" for m in tree.marks.values())
        for depth in (0, 1, -1):
            svg = draw(figure.json, DrawOptions(depth=depth)).svg
            assert check_figure(svg, graph, tree.parents()).total == 0
            assert "mt-marks" in svg
        # a closed box holding a difference is outlined dotted
        closed = draw(figure.json, DrawOptions(depth=0)).svg
        assert 'stroke-dasharray="2 3"' in closed or tree.marks.get(tree.root)


def test_variants_of_a_mapping_go_to_fields_args_or_the_zoo_config() -> None:
    spec = _spec("model: deepseek-v3\nargs: {gemm_impl: fp8}\ncompare:\n"
                 "  attn_impl: [naive, absorb]\n  score_func: [softmax, sigmoid]\n"
                 "  config: [236B, 671B]\n  overrides.n_layers: [4, 4]\n")
    found = variants(spec)
    assert [v.title for v in found] == [
        "attn_impl: naive, score_func: softmax, config: 236B, n_layers: 4",
        "attn_impl: absorb, score_func: sigmoid, config: 671B, n_layers: 4"]
    first = found[0].spec
    assert first.args == {"gemm_impl": "fp8", "attn_impl": "naive"}
    assert first.overrides == {"score_func": "softmax", "n_layers": 4}
    assert first.config == "236B" and first.compare is None
    listed = variants(_spec("model: torch.nn:Linear\ninputs: [[2, 4]]\ncompare:\n"
                            "  - {args: {in_features: 4, out_features: 3}, caption: small}\n"
                            "  - {args: {in_features: 4, out_features: 8}}\n"))
    assert [v.title for v in listed] == ["small", "in_features: 4, out_features: 8"]


def test_a_mark_of_the_fence_must_match_in_some_variant(mla) -> None:
    traced = trace_compare(_spec(MLA_FENCE))
    only_absorb = _spec(MLA_FENCE + "highlight: [squeeze]\n")  # absorb squeezes k_pe
    assert draw_compare(traced, only_absorb).html
    with pytest.raises(SpecError, match="'squeez' matches no"):
        draw_compare(traced, _spec(MLA_FENCE + "highlight: [squeez]\n"))


def test_a_variant_that_may_not_be_imported_is_refused() -> None:
    from model_trace.loader import ImportPolicy

    spec = _spec("model: torch.nn:Linear\nargs: {in_features: 4, out_features: 2}\n"
                 "inputs: [[2, 4]]\ncompare: {model: ['torch.nn:Linear', 'os:system']}\n")
    with pytest.raises(SpecError, match="os"):
        trace_compare(spec, policy=ImportPolicy())


def test_diff_on_the_command_line(tmp_path: Path, capsys) -> None:
    base = "model: torch.nn:TransformerEncoderLayer\ninputs: [[2, 16, 64]]\n"
    (tmp_path / "relu.yml").write_text(base + "args: {d_model: 64, nhead: 4}\n")
    (tmp_path / "gelu.yml").write_text(base + "args: {d_model: 64, nhead: 4, "
                                       "activation: gelu}\n")
    out = tmp_path / "diff.json"
    assert main(["diff", str(tmp_path / "relu.yml"), str(tmp_path / "gelu.yml"),
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"ops: activation\s+1\s+1", printed)
    assert "only     relu" in printed and "only     gelu" in printed
    data = json.loads(out.read_text())
    assert data["variants"] == ["relu", "gelu"]
    page = tmp_path / "diff.html"
    assert main(["diff", str(tmp_path / "relu.yml"), str(tmp_path / "gelu.yml"),
                 "-o", str(page)]) == 0
    text = page.read_text()
    assert text.count('<figure class="model-trace"') == 2 and "<script>" in text
    assert main(["diff", str(tmp_path / "relu.yml")]) == 1
    assert "two or more spec files" in capsys.readouterr().err


def test_view_tree_marks_are_kept_out_of_figures_without_them() -> None:
    """A figure without marks carries no ``marks`` entry (its view data is unchanged)."""
    from figure_models import FIGURE_MODELS

    figure = FigureData.of(FIGURE_MODELS["encoder layer"]())
    assert '"marks"' not in figure.json
    assert ViewTree.from_graph(FIGURE_MODELS["encoder layer"]()).marks == {}


def test_a_variant_adds_its_own_marks_which_must_match_in_it(mla) -> None:
    text = ("model: deepseek-v3\nconfig: tiny\nfocus: layers.0.attn\nhighlight: [wkv_b]\n"
            "notes: {wkv_b: In both.}\ncompare:\n"
            "  - {args: {attn_impl: naive}, caption: naive,"
            " notes: {cat#2: 'The key, completed.'}}\n"
            "  - {args: {attn_impl: absorb}, caption: absorb, highlight: {squeeze: red}}\n")
    found = variants(_spec(text))
    assert found[0].spec.notes == {"wkv_b": "In both.", "cat#2": "The key, completed."}
    assert found[1].spec.highlight == {"wkv_b": "orange", "squeeze": "red"}
    assert found[0].own == (("notes", "cat#2"),) and found[1].own == (("highlight", "squeeze"),)
    traced = trace_compare(_spec(text))
    html = draw_compare(traced, _spec(text)).html
    naive, absorb = html.split('<div class="mt-compare-cell">')[1:]
    assert "The key, completed." in naive and "The key, completed." not in absorb
    assert "In both." in naive and "In both." in absorb
    wrong = text.replace("cat#2", "cat#3")
    with pytest.raises(SpecError, match=r"variant 'naive'.*asks for match 3"):
        draw_compare(traced, _spec(wrong))


def test_the_build_log_names_each_variant_of_a_comparison() -> None:
    gates = "model: deepseek-v3\ncompare:\n  - {config: 236B}\n  - {config: 671B}\n"
    assert describe(_spec(gates)) == "deepseek-v3 236B vs deepseek-v3 671B (2 variants)"
    impls = "model: deepseek-v3\nconfig: tiny\ncompare: {attn_impl: [naive, absorb]}\n"
    assert describe(_spec(impls)) == "deepseek-v3 tiny (2 variants)"
