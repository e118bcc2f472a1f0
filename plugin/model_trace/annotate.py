"""An author's marks on a figure: ``highlight``, ``labels``, ``notes`` and ``hide``.

Each names *targets*, resolved against the figure's view tree (after ``focus``):

- a module path, in full (``layers.0.attn.wkv_b``) or below the figure's root (``wkv_b``
  in a figure focused on ``layers.0.attn``); a path inside a folded run names the run's
  representative (``layers.10.ffn`` in ``layers.3–60``: ``layers.3.ffn``);
- a module class (``RMSNorm``: every call of one), an op name (``einsum``) or an op kind
  (``shape``, ``activation``: the colour groups of the op table), tried in that order;
- ``scope/target``: only matches inside the modules ``scope`` names (``attn/einsum``);
- ``target#n``: the n-th match in reading order (``einsum#2``).

A target that matches nothing is an error that names the nearest paths, classes and ops.
``labels`` replace an item's text (the tooltip keeps its name); ``highlight`` and ``notes``
become ``Mark``s the engine draws (an outline, numbered badges; on the closed box that holds
the item when it is not drawn); ``hide`` removes items and draws each tensor that passed
through them from its producer to its consumers.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from model_trace.errors import SpecError, brief
from model_trace.naming import relative_name
from model_trace.spec import COLOURS, FenceSpec
from model_trace.view_tree import Flow, Mark, Note, ViewTree

DEFAULT_COLOUR = "orange"
_NTH = re.compile(r"(.*)#([1-9][0-9]*)")


@dataclass(frozen=True)
class Annotations:
    """The marks a fence asks for, by target, in the fence's order."""

    highlight: dict[str, str] = field(default_factory=dict)
    """Target -> colour (a name of ``spec.COLOURS`` or ``#rrggbb``)."""
    labels: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    hide: tuple[str, ...] = ()

    @classmethod
    def of(cls, spec: FenceSpec) -> Annotations:
        highlight = spec.highlight or {}
        if not isinstance(highlight, dict):
            targets = [highlight] if isinstance(highlight, str) else highlight
            highlight = dict.fromkeys(targets, DEFAULT_COLOUR)
        hide = spec.hide or ()
        return cls(highlight=dict(highlight), labels=dict(spec.labels or {}),
                   notes=dict(spec.notes or {}),
                   hide=(hide,) if isinstance(hide, str) else tuple(hide))

    def __bool__(self) -> bool:
        return bool(self.highlight or self.labels or self.notes or self.hide)

    def targets(self) -> list[tuple[str, str]]:
        """(field, target) of every mark asked for."""
        return [*(("highlight", t) for t in self.highlight), *(("labels", t) for t in self.labels),
                *(("notes", t) for t in self.notes), *(("hide", t) for t in self.hide)]

    def apply(self, tree: ViewTree, *, strict: bool = True,
              matched: set[tuple[str, str]] | None = None) -> None:
        """Mark, relabel and hide in ``tree``; ``SpecError`` for a target that matches
        nothing (with ``strict``; otherwise it is skipped, and ``matched`` collects the
        (field, target) pairs that matched: a comparison's shared marks need only match in
        one of its variants)."""
        def found(field_name: str, target: str) -> list[str]:
            items = find(tree, target, field_name, strict)
            if items and matched is not None:
                matched.add((field_name, target))
            return items

        for target, text in self.labels.items():
            for item_id in found("labels", target):
                tree.items[item_id].label = text
        for target, colour in self.highlight.items():
            for item_id in found("highlight", target):
                tree.marks.setdefault(item_id, Mark()).colour = COLOURS.get(colour, colour)
        for number, (target, text) in enumerate(self.notes.items(), start=1):
            items = found("notes", target)
            for item_id in items:
                tree.marks.setdefault(item_id, Mark()).notes.append(number)
            if items:  # (a comparison's variant may not have it)
                tree.notes.append(Note(number, text, tuple(items)))
        hidden = [item for target in self.hide for item in found("hide", target)]
        if hidden:
            hide_items(tree, hidden)


# ------------------------------------------------------------------ targets
def find(tree: ViewTree, target: str, field_name: str, strict: bool = True) -> list[str]:
    """The ids of the items ``target`` names, in reading order (see the module's doc)."""
    match = _NTH.fullmatch(target)
    name, nth = (match.group(1), int(match.group(2))) if match else (target, 0)
    scope, _, name = name.rpartition("/")
    within: list[str] | None = None
    if scope:
        within = _matches(tree, scope, None)
        if not within:
            if strict:
                raise SpecError(_unmatched(tree, scope, field_name), field=field_name)
            return []
    found = _matches(tree, name, within)
    if nth:
        if len(found) < nth:
            if not strict:
                return []
            raise SpecError(f"{field_name}: '{target}' asks for match {nth}, but "
                            f"'{name}' matches {len(found)} item(s) here", field=field_name)
        found = [found[nth - 1]]
    if not found and strict:
        raise SpecError(_unmatched(tree, target if not scope else name, field_name,
                                   scope=scope), field=field_name)
    return found


def _matches(tree: ViewTree, name: str, within: list[str] | None) -> list[str]:
    """Items named ``name`` (a path, a class, an op name, an op kind: the first kind that
    matches), inside one of ``within`` if given."""
    order = list(tree.items)
    inside = _descendants(tree, within) if within is not None else None
    candidates = [i for i in order if inside is None or i in inside]
    for test in (_path_test(tree, name), _class_test(tree, name), _op_test(tree, name),
                 _kind_test(tree, name)):
        found = [i for i in candidates if test(i)]
        if found:
            return found
    return []


def _path_test(tree: ViewTree, name: str) -> Callable[[str], bool]:
    graph = tree.graph
    root_path = graph.modules[tree.root].path
    wanted = {name, *_folded_paths(tree, name)}

    def test(item_id: str) -> bool:
        module = graph.modules.get(item_id)
        if module is None or not module.path or module.id == tree.root:
            return False
        return module.path in wanted or relative_name(module.path, root_path) in wanted
    return test


def _folded_paths(tree: ViewTree, path: str) -> list[str]:
    """The representative's path for a path inside a folded run's member."""
    found = []
    for module in tree.graph.modules.values():
        if module.repeat is None:
            continue
        for member in module.repeat.members[1:]:
            for candidate in (path, f"{tree.graph.modules[tree.root].path}.{path}"):
                if candidate == member or candidate.startswith(member + "."):
                    found.append(module.path + candidate[len(member):])
    return found


def _class_test(tree: ViewTree, name: str) -> Callable[[str], bool]:
    modules = tree.graph.modules
    return lambda item_id: item_id in modules and item_id != tree.root and (
        modules[item_id].cls == name)


def _op_test(tree: ViewTree, name: str) -> Callable[[str], bool]:
    nodes = tree.graph.nodes
    return lambda item_id: item_id in nodes and nodes[item_id].name == name


def _kind_test(tree: ViewTree, name: str) -> Callable[[str], bool]:
    nodes = tree.graph.nodes
    return lambda item_id: (item_id in nodes and nodes[item_id].kind == "op"
                            and nodes[item_id].category == name)


def _descendants(tree: ViewTree, roots: list[str]) -> set[str]:
    found: set[str] = set()
    stack = list(roots)
    while stack:
        item_id = stack.pop()
        for child in tree.items[item_id].children:
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _unmatched(tree: ViewTree, target: str, field_name: str, scope: str = "") -> str:
    """What to say when ``target`` names nothing: the nearest names of each kind."""
    graph = tree.graph
    root_path = graph.modules[tree.root].path
    paths = list(dict.fromkeys(  # a module called several times is named once
        relative_name(m.path, root_path) for m in graph.modules.values()
        if m.path and m.id in tree.items and m.id != tree.root))
    names = sorted({*paths, *(m.cls for m in graph.modules.values() if m.id in tree.items),
                    *(n.name for n in graph.nodes.values() if n.id in tree.items),
                    *(n.category for n in graph.nodes.values()
                      if n.id in tree.items and n.kind == "op")})
    close = difflib.get_close_matches(target, names, n=4, cutoff=0.5)
    parent = target.rpartition(".")[0]
    if parent:
        close += [p for p in paths if p.rpartition(".")[0] == parent and p not in close][:4]
    where = f" inside '{scope}'" if scope else ""
    nearest = (f"; nearest: {', '.join(repr(c) for c in close[:6])}" if close else
               f"; modules here: {brief(', '.join(paths[:8]) or 'none', 200)}")
    return (f"{field_name}: '{target}' matches no module path, class, op or op kind in this "
            f"figure{where}{nearest}")


# ------------------------------------------------------------------ hiding
def hide_items(tree: ViewTree, hidden: list[str]) -> None:
    """Remove ``hidden`` items (and everything inside them) from ``tree``; a flow that
    passed through them runs from its producer to its consumers instead."""
    gone = set(hidden) | _descendants(tree, hidden)
    tree.flows = list(_bridged(tree.flows, gone))
    for item_id in [i for i in tree.items if i in gone]:
        item = tree.items.pop(item_id)
        parent = tree.items.get(item.parent) if item.parent is not None else None
        if parent is not None:
            parent.children = [c for c in parent.children if c != item_id]
        tree.marks.pop(item_id, None)
    for rep in [r for r in tree.members if r in gone]:
        for member in tree.members.pop(rep):
            tree.items.pop(member, None)


def _bridged(flows: list[Flow], gone: set[str]) -> Iterator[Flow]:
    """The flows between items that stay: kept, or bridged over the hidden items they
    passed through (keyed by what the consumer reads), each once, in order."""
    into: dict[str, list[Flow]] = {}
    for flow in flows:
        if flow.dst in gone:
            into.setdefault(flow.dst, []).append(flow)
    memo: dict[str, list[str]] = {}

    def sources(item_id: str, seen: frozenset[str]) -> list[str]:
        if item_id in memo:
            return memo[item_id]
        found: list[str] = []
        for flow in into.get(item_id, []):
            if flow.src not in gone:
                found.append(flow.src)
            elif flow.src not in seen:
                found += sources(flow.src, seen | {flow.src})
        memo[item_id] = list(dict.fromkeys(found))
        return memo[item_id]

    emitted: set[Flow] = set()
    for flow in flows:
        if flow.dst in gone:
            continue
        ends = [flow.src] if flow.src not in gone else sources(flow.src, frozenset({flow.src}))
        for src in ends:
            bridged = Flow(src, flow.dst, flow.key)
            if src != flow.dst and bridged not in emitted:
                emitted.add(bridged)
                yield bridged
