"""The compact view data a figure carries for the browser viewer.

One JSON object per graph, embedded in the page. It holds the whole ``Graph`` without loss (so
the viewer's "download JSON" gives back exactly ``Graph.to_json()``), in a form that is small
after gzip and cheap to read in JavaScript:

- ``strings``: every text once (names, classes, paths, files, source lines, dtypes); other
  fields hold indexes into it;
- ``modules``, ``nodes``, ``tensors``: one array per field (columns), indexed by position;
  ids that follow the tracer's ``m0, m1, ...`` pattern are stored as just the prefix;
- ``shapes``: every distinct tensor shape once; ``tensors.shape`` indexes it;
- ``edges``: a flat ``[src node, dst node, tensor, ...]`` list;
- ``view``: what the figure draws (``view_tree``): its items (modules, chunks, idle groups,
  folded members, shown nodes) in pre-order with their ids, kinds, labels, parents, children,
  categories and levels; each item's tooltip and panel text and overlay figures, written by
  ``details``; the flow between them (``[src, dst, key, ...]``) and what each key is (its
  id for port names, its label on an edge, its tooltip); and, when an author or a
  comparison marked items, ``marks`` (``[item, colour, note numbers, diff status]``).

Fields a later ``graph.py`` adds to modules or nodes that this encoder does not know are kept
in ``extra`` as plain JSON, so the round trip stays exact.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from model_trace.details import (
    OVERLAY_NAMES,
    OVERLAYS,
    item_text,
    overlay_text,
    overlay_value,
    tensor_text,
)
from model_trace.dims import symbolic_shape
from model_trace.graph import (
    Edge,
    Graph,
    ModuleCall,
    Node,
    Repeat,
    Selection,
    SourceLocation,
    SourceSpan,
    Stats,
    Tensor,
)
from model_trace.view_tree import ViewTree

FORMAT = "model-trace-view"
VERSION = 2
STAT_FIELDS = tuple(f.name for f in dataclasses.fields(Stats))
_KNOWN_MODULE = frozenset({"id", "path", "cls", "parent", "children", "call_index", "extra_repr",
                           "source", "stats", "repeat"})
_KNOWN_NODE = frozenset({"id", "kind", "name", "category", "parent", "inputs", "outputs", "args",
                         "source", "stats"})
_KNOWN_TENSOR = frozenset({"id", "shape", "dtype", "device", "producer"})


class _Strings:
    """The string table: ``add`` returns a stable index, first come first numbered."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def add(self, text: str) -> int:
        """The index of ``text``, adding it the first time it is seen."""
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.index)
        return found

    def table(self) -> list[str]:
        """The strings in index order, as the view data's ``strings`` field."""
        return list(self.index)


def encode_view(tree: ViewTree) -> dict[str, Any]:
    """The view data of ``tree``."""
    graph = tree.graph
    strings = _Strings()
    module_index = {m: i for i, m in enumerate(graph.modules)}
    node_index = {n: i for i, n in enumerate(graph.nodes)}
    tensor_index = {t: i for i, t in enumerate(graph.tensors)}
    data: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "schema_version": graph.schema_version,
        "root": module_index[graph.root],
        "meta": graph.meta,
        "stat_fields": list(STAT_FIELDS),
        "modules": _encode_modules(graph, strings, module_index, node_index),
        "nodes": _encode_nodes(graph, strings, module_index, tensor_index),
    }
    data["tensors"], data["shapes"] = _encode_tensors(graph, strings, node_index)
    data["edges"] = [value for edge in graph.edges for value in
                     (node_index[edge.src], node_index[edge.dst], tensor_index[edge.tensor])]
    data["view"] = _encode_view_part(tree, strings)
    data["strings"] = strings.table()
    return data


def _ids(ids: list[str], prefix: str) -> str | list[str]:
    """``"m#"`` when the ids are exactly ``m0, m1, ...``; else the ids themselves."""
    if all(item == f"{prefix}{i}" for i, item in enumerate(ids)):
        return prefix + "#"
    return ids


def _source(strings: _Strings, source: SourceLocation | SourceSpan | None) -> Any:
    if source is None:
        return 0
    if isinstance(source, SourceSpan):
        return [strings.add(source.file), source.start, source.end]
    return [strings.add(source.file), source.line, strings.add(source.code)]


def _stats_columns(stats: list[Stats]) -> dict[str, list[int]]:
    return {name: [getattr(s, name) for s in stats] for name in STAT_FIELDS}


def _extra(item: Any, known: frozenset[str]) -> dict[str, Any]:
    """Fields this encoder does not know yet, as plain JSON (empty for today's graph.py)."""
    names = [f.name for f in dataclasses.fields(item) if f.name not in known]
    return {name: _plain(getattr(item, name)) for name in names}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def _encode_modules(graph: Graph, strings: _Strings, module_index: dict[str, int],
                    node_index: dict[str, int]) -> dict[str, Any]:
    modules = list(graph.modules.values())
    count = len(modules)
    repeats: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for i, module in enumerate(modules):
        if module.repeat is not None:
            repeat = module.repeat
            repeats[str(i)] = [
                repeat.count,
                [strings.add(m) for m in repeat.members],
                _stats_columns(repeat.member_stats),
                strings.add(repeat.note),
            ]
            if repeat.member_seconds is not None:  # a measured run's (execute)
                repeats[str(i)].append(repeat.member_seconds)
        extra = _extra(module, _KNOWN_MODULE)
        if extra:
            extras[str(i)] = extra
    return {
        "id": _ids([m.id for m in modules], "m"),
        "path": [strings.add(m.path) for m in modules],
        "cls": [strings.add(m.cls) for m in modules],
        "parent": [module_index[m.parent] if m.parent is not None else -1 for m in modules],
        "children": [
            [module_index[c] if c in module_index else count + node_index[c]
             for c in m.children]
            for m in modules
        ],
        "call": [m.call_index for m in modules],
        "extra_repr": [strings.add(m.extra_repr) for m in modules],
        "source": [_source(strings, m.source) for m in modules],
        "stats": _stats_columns([m.stats for m in modules]),
        "repeat": repeats,
        "extra": extras,
    }


def _encode_nodes(graph: Graph, strings: _Strings, module_index: dict[str, int],
                  tensor_index: dict[str, int]) -> dict[str, Any]:
    nodes = list(graph.nodes.values())
    extras = {str(i): e for i, n in enumerate(nodes) if (e := _extra(n, _KNOWN_NODE))}
    return {
        "id": _ids([n.id for n in nodes], "n"),
        "kind": [strings.add(n.kind) for n in nodes],
        "name": [strings.add(n.name) for n in nodes],
        "category": [strings.add(n.category) for n in nodes],
        "parent": [module_index[n.parent] for n in nodes],
        "inputs": [[tensor_index[t] for t in n.inputs] for n in nodes],
        "outputs": [[tensor_index[t] for t in n.outputs] for n in nodes],
        "args": [[strings.add(x) for kv in n.args.items() for x in kv] for n in nodes],
        "source": [_source(strings, n.source) for n in nodes],
        "stats": _stats_columns([n.stats for n in nodes]),
        "extra": extras,
    }


def _encode_tensors(graph: Graph, strings: _Strings,
                    node_index: dict[str, int]) -> tuple[dict[str, Any], list[list[int]]]:
    shapes: dict[tuple[int, ...], int] = {}
    tensors = list(graph.tensors.values())
    extras = {str(i): e for i, t in enumerate(tensors) if (e := _extra(t, _KNOWN_TENSOR))}
    columns = {
        "id": _ids([t.id for t in tensors], "t"),
        "shape": [shapes.setdefault(tuple(t.shape), len(shapes)) for t in tensors],
        "dtype": [strings.add(t.dtype) for t in tensors],
        "device": [strings.add(t.device) for t in tensors],
        "producer": [node_index[t.producer] if t.producer is not None else -1 for t in tensors],
        "extra": extras,
    }
    return columns, [list(shape) for shape in shapes]


def _encode_view_part(tree: ViewTree, strings: _Strings) -> dict[str, Any]:
    ids = list(tree.items)
    index = {item_id: i for i, item_id in enumerate(ids)}
    items = list(tree.items.values())
    texts, caveats = [], []
    for index_of_item, item in enumerate(items):
        text = item_text(tree, item.id)
        row = [strings.add(text.heading), strings.add(text.code)]
        row += [strings.add(part) for pair in text.rows for part in pair]
        texts.append(row)
        if text.caveat:
            caveats.append(index_of_item)
    values = {name: [overlay_value(tree, item.id, name) for item in items] for name in OVERLAYS}
    keys: dict[str, int] = {}
    flows: list[int] = []
    for flow in tree.flows:
        flows += [index[flow.src], index[flow.dst], keys.setdefault(flow.key, len(keys))]
    key_columns: dict[str, list[int]] = {"id": [], "label": [], "tip": [], "param": []}
    for key in keys:
        name, label, tip = _key_text(tree, key)
        key_columns["id"].append(strings.add(name))
        key_columns["label"].append(strings.add(label))
        key_columns["tip"].append(strings.add(tip))
        key_columns["param"].append(int(key.startswith("param:")))
    part: dict[str, Any] = {
        "root": index[tree.root],
        "title": strings.add(f"Computation graph of {tree.graph.modules[tree.root].cls}"),
        "show_constants": tree.show_constants,
        "items": {
            "id": [strings.add(i) for i in ids],
            "kind": [strings.add(item.kind) for item in items],
            "label": [strings.add(item.label) for item in items],
            "category": [strings.add(item.category) for item in items],
            "path": [strings.add(_path(tree, item.id)) for item in items],
            "parent": [index[item.parent] if item.parent is not None else -1 for item in items],
            "children": [[index[c] for c in item.children] for item in items],
            "level": [item.level for item in items],
            "text": texts,
            "caveat": caveats,
            "overlay": {name: [_short_float(v) for v in column]
                        for name, column in values.items()},
            "overlay_text": {name: [strings.add(overlay_text(v, name)) for v in column]
                             for name, column in values.items()},
            "overlay_name": {name: strings.add(_overlay_name(tree, name)) for name in OVERLAYS},
        },
        "members": {str(index[rep]): [index[m] for m in members]
                    for rep, members in tree.members.items()},
        "flows": flows,
        "keys": key_columns,
    }
    if tree.marks:  # [item, outline colour, note numbers, diff status] (annotate, compare)
        part["marks"] = [[index[item_id], mark.colour, mark.notes, mark.diff]
                         for item_id, mark in tree.marks.items() if item_id in index]
    return part


def _overlay_name(tree: ViewTree, overlay: str) -> str:
    """The overlay's name in the legend and menu: a trace that ran for real (``execute``)
    shows measured time, not the estimate."""
    if overlay == "time" and "execution" in tree.graph.meta:
        return "measured time"
    return OVERLAY_NAMES[overlay]


def _path(tree: ViewTree, item_id: str) -> str:
    module = tree.graph.modules.get(item_id)
    return module.path if module is not None else ""


def _key_text(tree: ViewTree, key: str) -> tuple[str, str, str]:
    """A flow key's id (in port names), its label on an edge and its tooltip."""
    if key.startswith("param:"):
        name = key.removeprefix("param:")
        return name, name.rpartition(".")[2], f"parameter {name}"
    tensor = tree.graph.tensors[key]
    return key, symbolic_shape(tree.graph, tensor), tensor_text(tree.graph, tensor)


def _short_float(value: float) -> float | int:
    """Four significant digits: enough for a colour, and short in JSON."""
    if float(value).is_integer():
        return int(value)
    return float(f"{value:.4g}")


def decode_graph(data: dict[str, Any]) -> Graph:
    """The Graph that ``encode_view`` was given (what the viewer's JSON download rebuilds)."""
    strings: list[str] = data["strings"]
    mods, nodes, tens = data["modules"], data["nodes"], data["tensors"]
    module_ids = _decode_ids(mods["id"], len(mods["parent"]))
    node_ids = _decode_ids(nodes["id"], len(nodes["parent"]))
    tensor_ids = _decode_ids(tens["id"], len(tens["shape"]))
    count = len(module_ids)

    def child_id(ref: int) -> str:
        return module_ids[ref] if ref < count else node_ids[ref - count]

    modules: dict[str, ModuleCall] = {}
    for i, module_id in enumerate(module_ids):
        repeat = mods["repeat"].get(str(i))
        parent = mods["parent"][i]
        modules[module_id] = ModuleCall(
            id=module_id,
            path=strings[mods["path"][i]],
            cls=strings[mods["cls"][i]],
            parent=module_ids[parent] if parent >= 0 else None,
            children=[child_id(c) for c in mods["children"][i]],
            call_index=mods["call"][i],
            extra_repr=strings[mods["extra_repr"][i]],
            source=_decode_span(strings, mods["source"][i]),
            stats=_decode_stats(mods["stats"], i),
            repeat=Repeat(
                count=repeat[0],
                members=[strings[m] for m in repeat[1]],
                member_stats=[_decode_stats(repeat[2], k) for k in range(len(repeat[1]))],
                note=strings[repeat[3]],
                member_seconds=repeat[4] if len(repeat) > 4 else None,
            ) if repeat else None,
            **mods["extra"].get(str(i), {}),
        )
    graph_nodes: dict[str, Node] = {}
    for i, node_id in enumerate(node_ids):
        args = nodes["args"][i]
        source = nodes["source"][i]
        graph_nodes[node_id] = Node(
            id=node_id,
            kind=strings[nodes["kind"][i]],  # type: ignore[arg-type]
            name=strings[nodes["name"][i]],
            category=strings[nodes["category"][i]],
            parent=module_ids[nodes["parent"][i]],
            inputs=[tensor_ids[t] for t in nodes["inputs"][i]],
            outputs=[tensor_ids[t] for t in nodes["outputs"][i]],
            args={strings[args[k]]: strings[args[k + 1]] for k in range(0, len(args), 2)},
            source=SourceLocation(strings[source[0]], source[1], strings[source[2]])
            if source else None,
            stats=_decode_stats(nodes["stats"], i),
            **_node_extra(nodes["extra"].get(str(i), {})),
        )
    tensors = {
        tensor_id: Tensor(
            id=tensor_id,
            shape=list(data["shapes"][tens["shape"][i]]),
            dtype=strings[tens["dtype"][i]],
            device=strings[tens["device"][i]],
            producer=node_ids[tens["producer"][i]] if tens["producer"][i] >= 0 else None,
            **tens["extra"].get(str(i), {}),
        )
        for i, tensor_id in enumerate(tensor_ids)
    }
    flat = data["edges"]
    edges = [Edge(node_ids[flat[k]], node_ids[flat[k + 1]], tensor_ids[flat[k + 2]])
             for k in range(0, len(flat), 3)]
    return Graph(root=module_ids[data["root"]], modules=modules, nodes=graph_nodes,
                 tensors=tensors, edges=edges, meta=data["meta"],
                 schema_version=data["schema_version"])


def _node_extra(extra: dict[str, Any]) -> dict[str, Any]:
    if "selections" in extra:
        return {**extra, "selections": [Selection(**s) for s in extra["selections"]]}
    return extra


def _decode_ids(ids: str | list[str], count: int) -> list[str]:
    if isinstance(ids, str):
        prefix = ids.removesuffix("#")
        return [f"{prefix}{i}" for i in range(count)]
    return list(ids)


def _decode_span(strings: list[str], source: Any) -> SourceSpan | None:
    return SourceSpan(strings[source[0]], source[1], source[2]) if source else None


def _decode_stats(columns: dict[str, list[int]], index: int) -> Stats:
    return Stats(**{name: values[index] for name, values in columns.items()})
