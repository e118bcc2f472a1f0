"""``compare:`` -- variants of one fence traced, drawn side by side, their differences marked.

A fence's ``compare`` is either a list of variants (each the fields it changes: ``{args:
{attn_impl: naive}}``) or a mapping of fields to one value per variant (``attn_impl:
[naive, absorb]``; a name that is not a fence field is an ``args`` entry, or for a zoo model
a config field, ``overrides``). Each variant is traced on its own; items are matched across
the traces by ``matching``'s keys (module path below the figure's root, op name, the line of
code that called it and which call of that line). Then every item is:

- "only": some variants have it, others do not (a branch the others did not take);
- "changed": all have it, but its output shapes, dtypes, arguments, parameters, class or
  repeat count differ (FLOPs and bytes that differ are listed on it, not marked: every
  module around a changed op would be);
- the same.

The figures carry the marks (``view_tree.Mark``: an outline and tooltip lines), and a table
under them sets the variants' totals side by side: parameters, FLOPs, the bytes of weights
read, of activations and of workspace written (``Stats``), ops per kind, and how many items
differ.
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from model_trace.annotate import DEFAULT_COLOUR, Annotations, find
from model_trace.cache import PREFIX_PLACEHOLDER, FenceOutput, SharedTraces
from model_trace.caveats import build_notes
from model_trace.dims import symbolic_shape
from model_trace.errors import ModelTraceError, SpecError, brief
from model_trace.graph import BYTES_WORDS, Graph, Node
from model_trace.loader import ZOO, ImportPolicy, check_allowed
from model_trace.matching import Key, module_keys, node_keys
from model_trace.naming import format_bytes, format_count, relative_name
from model_trace.spec import FIELDS, FenceSpec
from model_trace.view_tree import Mark, ViewTree

Status = Literal["only", "changed", ""]
MERGED_FIELDS = ("args", "overrides", "highlight", "labels", "notes", "hide")
"""Fields a variant adds to rather than replaces (the fence's marks apply to every variant,
a variant's own to it alone)."""
MARK_FIELDS = ("highlight", "labels", "notes", "hide")


@dataclass(frozen=True)
class Variant:
    """One side of a comparison: its title and the full spec it traces and draws."""

    title: str
    spec: FenceSpec
    own: tuple[tuple[str, str], ...] = ()
    """(field, target) of the marks the variant itself asks for (they must match in it)."""


@dataclass(frozen=True)
class Traced:
    """The variants of a comparison and the graph of each (in order)."""

    variants: list[Variant]
    graphs: list[Graph]
    model_warnings: list[str] = field(default_factory=list)
    """The Python warnings their models raised, as build-log lines (``model_warnings``)."""
    shared: int = 0
    """How many graphs were read from the folder of traces shared between sites."""


@dataclass
class Difference:
    """An item that differs between the variants."""

    key: Key
    label: str
    """How a reader finds it: ``wkv_b``, ``einsum (model.py:352)``."""
    kind: str
    """"module", "op" or the node's kind."""
    status: Status
    present: list[str | None]
    """The item's id in each variant's graph (None: not there)."""
    rows: list[tuple[str, str]] = field(default_factory=list)
    """What differs, as tooltip lines."""


@dataclass
class GraphDiff:
    """The differences between two or more graphs, and their totals side by side."""

    titles: list[str]
    differences: list[Difference]
    totals: list[tuple[str, list[int], str]]
    """(row name, one value per variant, unit: "" counts, "bytes")."""

    def by_status(self, status: Status) -> list[Difference]:
        return [d for d in self.differences if d.status == status]

    def to_json(self) -> dict[str, Any]:
        return {"variants": self.titles,
                "differences": [{"item": d.label, "kind": d.kind, "status": d.status,
                                 "ids": d.present, "what": [list(r) for r in d.rows]}
                                for d in self.differences if d.status],
                "totals": [{"name": n, "values": v, "unit": u} for n, v, u in self.totals]}


# ------------------------------------------------------------------ variants
def variants(spec: FenceSpec) -> list[Variant]:
    """The specs a ``compare`` fence draws, each with its title."""
    base = dataclasses.replace(spec, compare=None, caption="")
    compare = spec.compare
    if isinstance(compare, list):
        return [_variant(base, dict(item), str(item.get("caption") or _title(item)))
                for item in compare]
    assert isinstance(compare, dict)
    count = len(next(iter(compare.values())))
    found = []
    for k in range(count):
        changes: dict[str, Any] = {}
        for name, values in compare.items():
            scope, target = _scope(spec, name)
            if scope is None:
                changes[target] = values[k]
            else:
                changes.setdefault(scope, {})[target] = values[k]
        title = ", ".join(f"{name.rpartition('.')[2]}: {_shown(values[k])}"
                          for name, values in compare.items())
        found.append(_variant(base, changes, title))
    return found


def _variant(base: FenceSpec, changes: dict[str, Any], title: str) -> Variant:
    values: dict[str, Any] = {}
    own = Annotations.of(dataclasses.replace(base, **{
        name: changes.get(name) for name in MARK_FIELDS})).targets()
    for name, value in changes.items():
        if name in MERGED_FIELDS:
            value = _merged(getattr(base, name), value)
        if name == "export":
            value = (value,) if isinstance(value, str) else tuple(value)
        values[name] = value
    if isinstance(values.get("dims"), dict):
        values["dims"] = {int(size): name for size, name in values["dims"].items()}
    spec = dataclasses.replace(base, **values)
    zoo = ZOO.get(spec.model)
    if zoo is not None:  # the zoo's defaults, as a single fence gets them
        spec = dataclasses.replace(spec, config=spec.config or zoo.default_config,
                                   inputs=spec.inputs or zoo.default_inputs)
    return Variant(title, spec, tuple(own))


def _merged(base: Any, own: Any) -> Any:
    """A variant's value of a merged field after the fence's: mappings merged, lists (and a
    highlight list, orange) joined."""
    if base is None or base == {}:
        return own
    if isinstance(base, dict) or isinstance(own, dict):
        as_dict = [dict.fromkeys([v] if isinstance(v, str) else v, DEFAULT_COLOUR)
                   if not isinstance(v, dict) else v for v in (base, own)]
        return {**as_dict[0], **as_dict[1]}
    listed = [[v] if isinstance(v, str) else list(v) for v in (base, own)]
    return listed[0] + [v for v in listed[1] if v not in listed[0]]


def _scope(spec: FenceSpec, name: str) -> tuple[str | None, str]:
    """Where a name of a ``compare`` mapping goes: a fence field (None), or ``args`` or
    ``overrides`` and the key there."""
    if name in FIELDS:
        return None, name
    scope, dot, key = name.partition(".")
    if dot:
        return scope, key
    zoo = ZOO.get(spec.model)
    if zoo is None:
        return "args", name
    package = importlib.import_module(zoo.package)
    options = {f.name for f in dataclasses.fields(package.RuntimeOptions)}
    config = {f.name for f in dataclasses.fields(package.ModelArgs)}
    return ("overrides" if name in config and name not in options else "args"), name


def _title(changes: dict[str, Any]) -> str:
    parts = []
    for name, value in changes.items():
        if isinstance(value, dict):
            parts += [f"{key}: {_shown(v)}" for key, v in value.items()]
        else:
            parts.append(f"{name}: {_shown(value)}")
    return brief(", ".join(parts), 80)


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def trace_compare(spec: FenceSpec, *, policy: ImportPolicy | None = None,
                  shared: tuple[SharedTraces, ...] = ()) -> Traced:
    """Trace every variant of a ``compare`` fence (each checked against ``policy`` first).
    ``shared``: where each variant's trace is shared with other sites, in the order of
    ``variants`` (empty: none is); a variant another site or fence traced is read from there."""
    from model_trace.pipeline import shared_or_traced

    found = variants(spec)
    for variant in found:
        check_allowed(variant.spec, policy)
    graphs: list[Graph] = []
    lines: list[str] = []
    read = 0
    for variant, place in zip(found, shared or [None] * len(found), strict=True):
        try:
            graph, model_warnings, from_shared = shared_or_traced(variant.spec, policy, place)
        except ModelTraceError as error:
            raise type(error)(f"variant '{variant.title}': {error}") from error
        graphs.append(graph)
        lines += [line for line in model_warnings if line not in lines]
        read += from_shared
    return Traced(found, graphs, lines, read)


# ------------------------------------------------------------------ the diff
def diff_graphs(graphs: list[Graph], titles: list[str]) -> GraphDiff:
    """Every module call, op and tensor source matched across ``graphs`` by key, with what
    differs."""
    indexes = []
    for graph in graphs:
        modules = module_keys(graph)
        nodes = node_keys(graph, modules)
        indexes.append({**{k: i for i, k in modules.items()}, **{k: i for i, k in nodes.items()}})
    order: dict[Key, None] = {}
    for index in indexes:
        order.update(dict.fromkeys(index))
    differences = []
    for key in order:
        present = [index.get(key) for index in indexes]
        found = [(g, i) for g, i in zip(graphs, present, strict=True) if i is not None]
        graph, item_id = found[0]
        is_module = item_id in graph.modules
        label = _label(graph, item_id)
        kind = "module" if is_module else graph.nodes[item_id].kind
        if len(found) < len(graphs):
            where = [t for t, i in zip(titles, present, strict=True) if i is not None]
            missing = [t for t, i in zip(titles, present, strict=True) if i is None]
            rows = [("only in", f"{', '.join(where)} (not in {', '.join(missing)})")]
            differences.append(Difference(key, label, kind, "only", present, rows))
            continue
        rows, marked = (_module_rows if is_module else _node_rows)(found, titles)
        if rows:
            differences.append(Difference(key, label, kind, "changed" if marked else "",
                                          present, rows))
    return GraphDiff(titles, differences, _totals(graphs, differences))


def _label(graph: Graph, item_id: str) -> str:
    root_path = graph.modules[graph.root].path
    if item_id in graph.modules:
        module = graph.modules[item_id]
        if item_id == graph.root:
            return module.cls
        name = relative_name(module.path, root_path) if module.kind == "module" else (
            f"{module.cls}()")
        return name + (f" (call {module.call_index + 1})" if module.call_index else "")
    node = graph.nodes[item_id]
    parent = graph.modules[node.parent]
    where = relative_name(parent.path, root_path) if parent.path != root_path else ""
    source = f" ({node.source.file.rpartition('/')[2]}:{node.source.line})" if node.source else ""
    return f"{where + '/' if where else ''}{node.name}{source}"


def _values(rows: list[tuple[str, str]], titles: list[str], name: str,
            values: list[str]) -> bool:
    """Add a row if ``values`` differ; True if they did."""
    if len(set(values)) < 2:
        return False
    if len(values) == 2:
        rows.append((name, f"{values[0]} → {values[1]}"))
    else:
        rows.append((name, "; ".join(f"{t}: {v}" for t, v in zip(titles, values,
                                                                   strict=True))))
    return True


def _module_rows(found: list[tuple[Graph, str]], titles: list[str]
                 ) -> tuple[list[tuple[str, str]], bool]:
    calls = [graph.modules[i] for graph, i in found]
    rows: list[tuple[str, str]] = []
    marked = any([
        _values(rows, titles, "class", [c.cls for c in calls]),
        _values(rows, titles, "repeat", [f"×{c.repeat.count}" if c.repeat else "×1"
                                         for c in calls]),
        _values(rows, titles, "called", ["yes" if c.called else "no" for c in calls]),
        _values(rows, titles, "params", [f"{c.stats.params:,}" for c in calls]),
    ])
    _values(rows, titles, "FLOPs", [format_count(c.stats.flops) for c in calls])
    for stat, words in BYTES_WORDS.items():
        _values(rows, titles, words, [format_bytes(getattr(c.stats, stat)) for c in calls])
    return rows, marked


def _node_rows(found: list[tuple[Graph, str]], titles: list[str]
               ) -> tuple[list[tuple[str, str]], bool]:
    nodes: list[Node] = [graph.nodes[i] for graph, i in found]
    rows: list[tuple[str, str]] = []

    def outputs(graph: Graph, node: Node, what: str) -> str:
        tensors = [graph.tensors[t] for t in node.outputs if t in graph.tensors]
        if what == "shape":
            return ", ".join(symbolic_shape(graph, t) if _named(graph) else t.shape_label
                             for t in tensors)
        return ", ".join(t.dtype for t in tensors)

    marked = any([
        _values(rows, titles, "shape", [outputs(g, n, "shape") for (g, _), n in
                                        zip(found, nodes, strict=True)]),
        _values(rows, titles, "dtype", [outputs(g, n, "dtype") for (g, _), n in
                                        zip(found, nodes, strict=True)]),
        _values(rows, titles, "arguments", [", ".join(f"{k}={v}" for k, v in n.args.items())
                                            for n in nodes]),
        _values(rows, titles, "params", [f"{n.stats.params:,}" for n in nodes]),
        _values(rows, titles, "FLOPs", [format_count(n.stats.flops) for n in nodes]),
    ])
    return rows, marked


def _named(graph: Graph) -> bool:
    return bool(graph.meta.get("dims"))


def _totals(graphs: list[Graph], differences: list[Difference]
            ) -> list[tuple[str, list[int], str]]:
    roots = [g.modules[g.root].stats for g in graphs]
    rows: list[tuple[str, list[int], str]] = [
        ("parameters", [s.params for s in roots], ""),
        ("activated parameters", [s.activated_params for s in roots], ""),
        ("FLOPs", [s.flops for s in roots], ""),
        *((words, [getattr(s, stat) for s in roots], "bytes")
          for stat, words in BYTES_WORDS.items()),
    ]
    counts = [op_counts(g) for g in graphs]
    kinds = sorted({kind for c in counts for kind in c if kind != "all"})
    rows.append(("ops", [c.get("all", 0) for c in counts], ""))
    rows += [(f"ops: {kind}", [c.get(kind, 0) for c in counts], "") for kind in kinds]
    for status, name in (("only", "items only in some"), ("changed", "items changed")):
        rows.append((name, [sum(1 for d in differences if d.status == status and
                                d.present[k] is not None) for k in range(len(graphs))], ""))
    return rows


def op_counts(graph: Graph) -> dict[str, int]:
    """Ops run in the forward, per kind (op table category) and in all: a folded run's ops
    count once per member."""
    counts: dict[str, int] = {}
    for node in graph.nodes.values():
        if node.kind != "op":
            continue
        times = math.prod(graph.modules[m].repeat.count  # type: ignore[union-attr]
                          for m in graph.ancestors(node.id)
                          if graph.modules[m].repeat is not None)
        for name in ("all", node.category):
            counts[name] = counts.get(name, 0) + times
    return counts


# ------------------------------------------------------------------ marks
def mark_tree(tree: ViewTree, diff: GraphDiff, variant: int) -> None:
    """Put the differences that concern variant ``variant`` on its figure's items."""
    for difference in diff.differences:
        item_id = difference.present[variant]
        if item_id is None or item_id not in tree.items:
            continue
        mark = tree.marks.setdefault(item_id, Mark())
        mark.diff = difference.status
        mark.rows = mark.rows + [("differs" if difference.status else "figures", "")] + [
            (f"  {name}", value) for name, value in difference.rows]


# ------------------------------------------------------------------ drawing
def draw_compare(traced: Traced, spec: FenceSpec, theme: str = "auto") -> FenceOutput:
    """A ``compare`` fence: its variants side by side, marked, and the table of totals."""
    from model_trace.breakdown import breakdown_table
    from model_trace.pipeline import figure_of, focused
    from model_trace.render_html import render_figure

    found = variants(spec) if spec.compare is not None else traced.variants
    pairs = [focused(graph, variant.spec) for graph, variant in
             zip(traced.graphs, found, strict=True)]
    titles = [v.title for v in found]
    diff = diff_graphs([g for g, _ in pairs], titles)
    cells, warnings, notes, figures = [], [], [], []
    matched: set[tuple[str, str]] = set()
    for k, ((graph, variant_spec), variant) in enumerate(zip(pairs, found, strict=True)):
        shown = dataclasses.replace(variant_spec, caption="", focus=None)  # titled above
        here: set[tuple[str, str]] = set()
        figure, view, warned = figure_of(
            graph, shown, theme, strict=False,
            marks=lambda tree, k=k: mark_tree(tree, diff, k), matched=here)
        matched |= here
        for field_name, target in variant.own:
            if (field_name, target) not in here:
                try:
                    find(figure.tree, target, field_name, strict=True)
                except SpecError as error:
                    raise SpecError(f"variant '{variant.title}': {error}",
                                    field="compare") from error
        figures.append((figure, view))
        warnings += [f"{variant.title}: {w}" for w in warned]
        notes += [f"{variant.title}: {n}" for n in build_notes(figure.tree.graph)]
        body = render_figure(figure, view, f"{PREFIX_PLACEHOLDER}-{k + 1}")
        if spec.summary:
            body += breakdown_table(figure.tree.graph, spec.summary)
        cells.append(f'<div class="mt-compare-cell"><p class="mt-compare-title">'
                     f"{html.escape(variant.title)}</p>\n{body}</div>")
    _check_matched(Annotations.of(spec), matched, pairs[0][0])
    legend = ('<p class="mt-compare-legend"><span class="mt-diff-only">only in one</span> '
              '<span class="mt-diff-changed">changed</span> <span class="mt-diff-holds">a '
              "difference inside</span> (matched by module path, op and the line that called "
              "it; hover a marked box for what differs)</p>\n")
    caption = (f'<p class="mt-compare-caption">{html.escape(spec.caption)}</p>\n'
               if spec.caption else "")
    page = (f'<div class="model-trace-compare" style="--mt-variants: {len(found)}">\n{legend}'
            f'<div class="mt-compare-grid">\n{"".join(cells)}</div>\n{caption}'
            f"{diff_table(diff)}</div>\n")
    return FenceOutput(html=page, exports=_exports(spec, figures, diff, traced),
                       warnings=tuple(warnings), notes=tuple(notes))


def _check_matched(annotations: Annotations, matched: set[tuple[str, str]],
                   first: Graph) -> None:
    """A mark the fence itself asks for must match in at least one variant (the error names
    the nearest items of the first)."""
    for field_name, target in annotations.targets():
        if (field_name, target) not in matched:
            find(ViewTree.from_graph(first), target, field_name, strict=True)


def _exports(spec: FenceSpec, figures: list[tuple[Any, Any]], diff: GraphDiff,
             traced: Traced) -> dict[str, bytes]:
    from model_trace.pipeline import svg_to_png
    from model_trace.render_html import export_svg

    formats = set(spec.export or ())
    exports: dict[str, bytes] = {}
    if "json" in formats:
        data = {"variants": [{"title": t, "graph": json.loads(g.to_json())}
                             for t, g in zip(diff.titles, traced.graphs, strict=True)],
                "diff": diff.to_json()}
        exports["json"] = json.dumps(data, indent=1, sort_keys=True).encode("utf-8")
    if formats & {"svg", "png"}:
        svgs = [export_svg(figure, view, prefix=f"model-trace-{k + 1}")
                for k, (figure, view) in enumerate(figures)]
        svg = side_by_side(svgs, diff.titles)
        if "svg" in formats:
            exports["svg"] = svg.encode("utf-8")
        if "png" in formats:
            exports["png"] = svg_to_png(svg)
    return exports


def side_by_side(svgs: list[str], titles: list[str], gap: float = 24.0) -> str:
    """Standalone SVGs in one row, each under its title (nested ``<svg>`` elements)."""
    import re

    sizes = []
    for svg in svgs:
        found = re.search(r'width="([\d.]+)" height="([\d.]+)"', svg)
        assert found is not None
        sizes.append((float(found.group(1)), float(found.group(2))))
    title_height = 22.0
    width = sum(w for w, _ in sizes) + gap * (len(svgs) - 1)
    height = max(h for _, h in sizes) + title_height
    parts, x = [], 0.0
    for svg, (w, _), title in zip(svgs, sizes, titles, strict=True):
        body = svg.replace("<svg ", f'<svg x="{x:.1f}" y="{title_height:.1f}" ', 1)
        parts.append(f'<text x="{x + 8:.1f}" y="15" font-weight="bold">'
                     f"{html.escape(title)}</text>{body}")
        x += w + gap
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.1f}" '
            f'height="{height:.1f}" viewBox="0 0 {width:.1f} {height:.1f}" '
            f'font-family="Helvetica, Arial, sans-serif" font-size="13">'
            f'<rect width="{width:.1f}" height="{height:.1f}" fill="#ffffff"/>'
            f'{"".join(parts)}</svg>')


# ------------------------------------------------------------------ tables
def diff_table(diff: GraphDiff) -> str:
    """The totals of the variants side by side (HTML), each after the first with its
    difference to the first."""
    head = "".join(f"<th>{html.escape(t)}</th>" for t in ["", *diff.titles])
    rows = []
    for name, values, unit in diff.totals:
        if not any(values):
            continue
        cells = [_cell(v, values[0], unit, k) for k, v in enumerate(values)]
        row = "<tr>" if len(set(values)) == 1 else '<tr class="mt-differs">'
        rows.append(f"{row}<th>{html.escape(name)}</th>{''.join(cells)}</tr>")
    return (f'<div class="mt-compare-table"><table><thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody></table></div>\n")


def _cell(value: int, first: int, unit: str, index: int) -> str:
    shown = f"{value:,}" if unit != "bytes" else format_bytes(value)
    if index and value != first:
        delta = value - first
        change = f"{delta:+,}" if unit != "bytes" else (
            ("+" if delta > 0 else "−") + format_bytes(abs(delta)))
        shown += f' <span class="mt-delta">({change})</span>'
    return f'<td style="text-align: right">{shown}</td>'


def diff_text(diff: GraphDiff, limit: int = 200) -> str:
    """The comparison as the command line prints it: the totals, then each difference."""
    width = max(len(t) for t in diff.titles)
    names = [n for n, values, _ in diff.totals if any(values)]
    first = max(len(n) for n in names) if names else 10
    lines = [" " * first + "  " + "  ".join(t.rjust(max(width, 14)) for t in diff.titles)]
    for name, values, unit in diff.totals:
        if any(values):
            shown = [f"{v:,}" if unit != "bytes" else format_bytes(v) for v in values]
            mark = "" if len(set(values)) == 1 else "  *"
            lines.append(name.ljust(first) + "  " +
                         "  ".join(s.rjust(max(width, 14)) for s in shown) + mark)
    marked = [d for d in diff.differences if d.status]
    lines.append("")
    lines.append(f"{len(marked)} items differ" if marked else "no differences")
    for difference in marked[:limit]:
        what = "; ".join(f"{name} {value}" for name, value in difference.rows)
        lines.append(f"  {difference.status:7}  {difference.label}: {what}")
    if len(marked) > limit:
        lines.append(f"  ... {len(marked) - limit} more")
    return "\n".join(lines)

