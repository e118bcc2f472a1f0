"""Statistics of a recorded graph: parameters, activated parameters, FLOPs, bytes read and
written.

- ``params`` of a module call: the parameters of its module and submodules, counted once (at
  the module's first call; a parameter shared by two modules counts at the first). The root's
  figure is the model's ``sum(p.numel() for p in model.parameters())``.
- ``activated_params``: the parameters one token goes through. A *routed group* is a set of
  sibling modules of one class in one container (``ffn.experts.*``) whose inputs are rows
  picked by an index (``x[idx]``): each member counts in proportion to the rows it got over
  the rows its parent got, so 8 of 256 experts per token count 8 experts. A module the
  forward never called counts the parameters of it and its submodules that some op read
  (``wkv_b.weight``, which absorbed attention reads without calling ``wkv_b``) and nothing
  for the others (a vision tower a text-only forward skips). Everything else counts fully.
  Experts stored as one stacked parameter count by the share of their slices the tokens
  used (``stacked``). For an op node, the parameters it reads (at their first read in the
  trace).
- ``flops`` and the bytes: per op, summed into every enclosing module call. The bytes of the
  new tensors an op writes (views excluded) are ``workspace_bytes`` when the tensors are made
  from weights alone (``weight_dequant`` of an fp8 weight, a cast, a reshaped weight) or are
  the model's own state allocated in the forward (a KV cache: a buffer of the model after the
  forward), and ``activation_bytes`` otherwise, so the two add up to every byte written;
  ``weight_bytes`` are the parameters the op reads, in their stored dtype, and ``read_bytes``
  everything it reads.

``graph.meta["totals"]`` holds the root's figures, and ``graph.meta["experts"]`` each routed
group's load (how many tokens each member got), stacked experts' too;
``graph.meta["dense_experts"]`` the stacked experts the model's code ran for every token
although a router chose fewer (``stacked.dense_experts``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from model_trace.graph import STAT_NAMES, Graph, ModuleCall, Node, Stats
from model_trace.naming import natural_key
from model_trace.tracing.model_index import ModelIndex
from model_trace.tracing.op_info import writes_in_place
from model_trace.tracing.op_table import gathers_rows, is_view
from model_trace.tracing.source import SourceIndex
from model_trace.tracing.stacked import (
    StackedUse,
    dense_experts,
    expert_load,
    stacked_uses,
)

if TYPE_CHECKING:
    from model_trace.tracing.replay import ReplayedCalls


def add_uncalled_modules(graph: Graph, call_modules: dict[str, Any],
                         root: torch.nn.Module | None, sources: SourceIndex | None = None,
                         drawn_as_ops: frozenset[str] = frozenset(),
                         index: ModelIndex | None = None,
                         replayed: ReplayedCalls | None = None) -> None:
    """Add each submodule the forward never called (an expert without tokens, a layer whose
    weight the parent reads directly) as a ``called=False`` call under its nearest called
    ancestor, so every module of the model is in the graph. Modules ``drawn_as_ops`` (below
    ``module_depth``) ran inside an op node: they and their submodules are left out, as are
    the submodules of replayed calls (``replay``: a fold drops them). ``index``: the model's
    ``ModelIndex``, if there is one already."""
    if root is None:
        return
    sources = sources or SourceIndex()
    first_call: dict[str, str] = {}
    for call in graph.modules.values():
        if call.kind == "module":
            first_call.setdefault(call.path, call.id)
    above_called: set[str] = set()
    for path in first_call:
        while path:
            path = path.rpartition(".")[0]
            if path in above_called:
                break
            above_called.add(path)
    replayed_paths = {stub.path for stub in replayed.stubs.values()} if replayed else set()
    for name, module in _named_modules(root, index, replayed_paths):
        if name in first_call or name in above_called or name in drawn_as_ops:
            continue
        parent = name.rpartition(".")[0]
        if parent not in first_call and parent not in above_called:
            continue  # inside an uncalled module added already
        host = parent
        while host not in first_call:
            host = host.rpartition(".")[0]
        module_id = f"m{len(graph.modules)}"
        while module_id in graph.modules:
            module_id += "u"
        call = ModuleCall(id=module_id, path=name, cls=type(module).__name__,
                          parent=first_call[host], called=False,
                          source=sources.class_span(type(module)))
        try:
            call.extra_repr = module.extra_repr()
        except Exception:
            call.extra_repr = ""
        graph.modules[module_id] = call
        graph.modules[call.parent].children.append(module_id)  # type: ignore[index]
        call_modules[module_id] = module


def _named_modules(root: torch.nn.Module, index: ModelIndex | None, skipped: set[str]
                   ) -> Iterator[tuple[str, torch.nn.Module]]:
    """``root.named_modules()``, from the index when there is one, without the modules
    below the paths ``skipped``."""
    if index is not None:
        return index.named_modules(skipped)
    return ((n, m) for n, m in root.named_modules()
            if not any(n.startswith(p + ".") for p in skipped))


def _is_block_scale(module: torch.nn.Module, name: str, param: torch.Tensor) -> bool:
    """A float32 ``scale`` next to a float8 weight: fp8 block scales, which published
    parameter counts leave out."""
    if "scale" not in name or param.dtype != torch.float32:
        return False
    return any(p is not None and p.element_size() == 1 and p.dtype.is_floating_point
               for p in module._parameters.values())


Counts = tuple[int, int, int, int, int, int]
"""Parameters of a module: (own, own block scales, subtree, subtree block scales, subtree
ones some op read, subtree block scales some op read)."""


def _subtree_parameters(roots: list[torch.nn.Module],
                        replayed: dict[int, torch.nn.Module] | None = None,
                        read: frozenset[int] = frozenset()) -> dict[int, Counts]:
    """``Counts`` per module object, each parameter counted once (at the first module
    holding it). ``replayed``: modules whose subtree is not walked, counted as the module
    they repeat (in the order given: a module repeated inside a later one first). ``read``:
    the ids of the parameters some op read."""
    replayed = replayed or {}
    seen: set[int] = set()
    own: dict[int, list[int]] = {}
    parent_of: dict[int, torch.nn.Module | None] = {}
    order: list[tuple[torch.nn.Module, torch.nn.Module | None]] = []
    for root in roots:
        stack: list[tuple[torch.nn.Module, torch.nn.Module | None]] = [(root, None)]
        while stack:
            module, parent = stack.pop()
            if id(module) in own:
                continue
            parent_of[id(module)] = parent
            if id(module) in replayed:
                own[id(module)] = [0] * 6
                continue
            mine = [0] * 6
            for name, param in module._parameters.items():
                if param is None or id(param) in seen:
                    continue
                seen.add(id(param))
                size = param.numel()
                scales = size if _is_block_scale(module, name, param) else 0
                mine[0] += size
                mine[1] += scales
                if id(param) in read:
                    mine[4] += size
                    mine[5] += scales
            mine[2:4] = mine[0:2]
            own[id(module)] = mine
            order.append((module, parent))
            stack.extend((child, module) for child in reversed(module._modules.values())
                         if child is not None)
    for module, parent in reversed(order):
        if parent is not None:
            _add_subtree(own[id(parent)], own[id(module)])
    for module_id, template in replayed.items():
        if module_id not in own:
            continue
        own[module_id] = list(own[id(template)])
        ancestor = parent_of[module_id]
        while ancestor is not None:
            _add_subtree(own[id(ancestor)], own[module_id])
            ancestor = parent_of[id(ancestor)]
    return {key: (v[0], v[1], v[2], v[3], v[4], v[5]) for key, v in own.items()}


def _add_subtree(totals: list[int], below: list[int]) -> None:
    """Add a submodule's subtree figures (all but its own) to an ancestor's."""
    for at in range(2, 6):
        totals[at] += below[at]


def _read_parameters(graph: Graph, root: torch.nn.Module | None) -> frozenset[int]:
    """The ids of the parameters of ``root`` that some op of the trace read."""
    if root is None:
        return frozenset()
    names = {name for node in graph.nodes.values() for name in node.params}
    found = set()
    for name in sorted(names):
        try:
            found.add(id(root.get_parameter(name)))
        except AttributeError:  # held outside the model (a function's own module)
            continue
    return frozenset(found)


def _rows(graph: Graph, call: ModuleCall) -> int | None:
    """Rows of a call's first input: all its dimensions but the last, multiplied."""
    if not call.inputs:
        return None
    shape = graph.tensors[call.inputs[0]].shape
    return math.prod(shape[:-1]) if shape else 1


def _gathered(graph: Graph, call: ModuleCall, replayed: ReplayedCalls | None) -> bool:
    """Whether the call's first input is rows picked by an index tensor (``x[idx]``), seen
    through views of them (``x[None, idx].reshape(-1, d)``, Switch Transformers)."""
    tensor_id = call.inputs[0] if call.inputs else None
    while tensor_id is not None:
        producer = graph.tensors[tensor_id].producer
        node = graph.nodes.get(producer) if producer is not None else None
        if node is None and producer is not None and replayed:
            node = replayed.node(graph.nodes, producer)  # made inside a replayed call
        if node is None:
            return False
        if gathers_rows(node.name):
            return node.name != "getitem" or "T" in node.args.get("index", "")
        tensor_id = node.inputs[0] if is_view(node.name) and node.inputs else None
    return False


def routed_groups(graph: Graph, replayed: ReplayedCalls | None = None
                  ) -> dict[str, dict[str, Any]]:
    """Routed groups by container path: parent call, class, members (call ids, natural
    order), rows per member and the parent's rows."""
    groups: dict[str, dict[str, Any]] = {}
    for parent in graph.modules.values():
        members: dict[tuple[str, str], list[ModuleCall]] = {}
        for child_id in parent.children:
            child = graph.modules.get(child_id)
            if child is None or child.kind != "module" or child.call_index:
                continue
            container = child.path.rpartition(".")[0]
            members.setdefault((container, child.cls), []).append(child)
        parent_rows = _rows(graph, parent)
        if not parent_rows:
            continue
        for (container, cls), calls in members.items():
            called = [c for c in calls if c.called]
            if len(calls) < 2 or not called or not all(_gathered(graph, c, replayed)
                                                        for c in called):
                continue
            calls.sort(key=lambda c: natural_key(c.path))
            rows = [(_rows(graph, c) or 0) if c.called else 0 for c in calls]
            groups[container or parent.path] = {"parent": parent.id, "cls": cls,
                                                "members": [c.id for c in calls], "rows": rows,
                                                "parent_rows": parent_rows}
    return groups


def _parameter_bytes(graph: Graph, call_modules: dict[str, Any]) -> dict[str, int]:
    """Bytes of each parameter of the modules the graph holds, by its qualified name."""
    sizes: dict[str, int] = {}
    for call_id, module in call_modules.items():
        call = graph.modules.get(call_id)
        if call is None or not isinstance(module, torch.nn.Module):
            continue
        prefix = f"{call.path}." if call.path else ""
        for name, param in module._parameters.items():
            if param is not None:
                sizes.setdefault(prefix + name, param.numel() * param.element_size())
    return sizes


def _versions(graph: Graph, latest: frozenset[str]) -> set[str]:
    """Every version of the given tensors: an in-place write gives a tensor a new id, produced
    by the writing op, which read the previous version (its input of the same shape and
    dtype). Only writes in place are followed: a tensor a model keeps as a buffer may be made
    by any op from inputs of its shape (``self.cache = self.proj(x) * 2``), which are no
    versions of it."""
    found: set[str] = set()
    stack = list(latest)
    while stack:
        tensor_id = stack.pop()
        if tensor_id in found or tensor_id not in graph.tensors:
            continue
        found.add(tensor_id)
        tensor = graph.tensors[tensor_id]
        writer = graph.nodes.get(tensor.producer) if tensor.producer is not None else None
        if writer is not None and (writes_in_place(writer.name)
                                   or writer.category == "collective"):
            stack.extend(i for i in writer.inputs if graph.tensors[i].shape == tensor.shape
                         and graph.tensors[i].dtype == tensor.dtype)
    return found


def split_bytes(graph: Graph, call_modules: dict[str, Any], state: frozenset[str]) -> None:
    """Each op's ``weight_bytes``, and its written bytes moved from ``activation_bytes`` to
    ``workspace_bytes`` where they are made from weights alone or are the model's ``state``
    (the ids of its buffers' latest versions after the forward)."""
    sizes = _parameter_bytes(graph, call_modules)
    state_versions = _versions(graph, state)
    drawn_parameters = {t for n in graph.nodes.values() if n.kind == "parameter"
                        for t in n.outputs}  # trace(..., parameters="nodes")
    from_weights = set(drawn_parameters)
    for node in graph.nodes.values():
        if node.kind != "op":
            continue
        drawn = [t for t in node.inputs if t in drawn_parameters]
        node.stats.weight_bytes = sum(_tensor_bytes(graph, t) for t in drawn) if drawn \
            else round(sum(_read_share(node, name) * sizes.get(name, 0) for name in node.params))
        weights_only = bool(node.params or node.inputs) \
            and all(t in from_weights for t in node.inputs)
        if weights_only:
            from_weights.update(node.outputs)
        if weights_only or any(t in state_versions for t in node.outputs):
            node.stats.workspace_bytes += node.stats.activation_bytes
            node.stats.activation_bytes = 0


def _read_share(node: Node, name: str) -> float:
    """The share of a parameter an op read: the slices it selected of stacked experts."""
    for selection in node.selections:
        if selection.param == name and not selection.whole:
            return len(selection.indices) / selection.slices
    return 1.0


def _tensor_bytes(graph: Graph, tensor_id: str) -> int:
    """Bytes of a recorded tensor: its elements times its dtype's size, as torch knows it."""
    tensor = graph.tensors[tensor_id]
    dtype = getattr(torch, tensor.dtype, None)
    return math.prod(tensor.shape) * (dtype.itemsize if isinstance(dtype, torch.dtype) else 1)


def assign_statistics(graph: Graph, call_modules: dict[str, Any],
                      root: torch.nn.Module | None, state: frozenset[str] = frozenset(),
                      replayed: ReplayedCalls | None = None) -> None:
    """Fill every node's and module call's ``Stats`` and ``graph.meta["totals"]``; ``state``
    holds the ids of the model's buffers after the forward (see ``split_bytes``); a replayed
    call (``replay``) has the figures of the call it repeats."""
    if root is not None:
        roots = [root]
    else:
        roots = list({id(m): m for m in call_modules.values()
                      if isinstance(m, torch.nn.Module)}.values())
    stubs = replayed.stubs if replayed else {}
    counts = _subtree_parameters(roots, {id(stub.module): call_modules[stub.template.call]
                                         for stub in stubs.values()},
                                 _read_parameters(graph, root))
    groups = routed_groups(graph, replayed)
    uses = stacked_uses(graph, lambda call: _gathered(graph, call, replayed))
    size_of = _parameter_sizes(graph, call_modules, root)
    unused = _unused_stacked(graph, uses, size_of)
    weight: dict[str, float] = {}
    for group in groups.values():
        for member, rows in zip(group["members"], group["rows"], strict=True):
            weight[member] = rows / group["parent_rows"]
    activated: dict[str, tuple[float, float]] = {}
    modules = graph.walk_modules_children_first()
    for call in modules:
        obj = call_modules.get(call.id)
        first = call.kind == "module" and call.call_index == 0 and obj is not None
        own, own_scales, total, _, read, read_scales = \
            counts.get(id(obj), (0,) * 6) if first else (0,) * 6
        call.stats = Stats(params=total)
        stub = stubs.get(call.id)
        if stub is not None:
            activated[call.id] = activated[stub.template.call]
        elif not call.called:  # the parameters ops read without calling it
            activated[call.id] = (read - _unused_below(unused, call.path), float(read_scales))
        else:
            act, act_scales = float(own) - (unused.get(call.path, 0.0) if first else 0.0), \
                float(own_scales)
            for child_id in call.children:
                if child_id in activated:
                    share = weight.get(child_id, 1.0)
                    act += share * activated[child_id][0]
                    act_scales += share * activated[child_id][1]
            activated[call.id] = (act, act_scales)
        call.stats.activated_params = round(activated[call.id][0])
    if root is None:  # a plain function: its parameters are those of the modules it called
        root_call = graph.modules[graph.root]
        root_call.stats.params = sum(graph.modules[c].stats.params
                                     for c in root_call.children if c in graph.modules)
        root_call.stats.activated_params = sum(graph.modules[c].stats.activated_params
                                               for c in root_call.children
                                               if c in graph.modules)
    split_bytes(graph, call_modules, state)
    _roll_up(graph, modules, stubs)
    summaries = [_summary(container, group) for container, group in groups.items()]
    if stubs:
        summaries += _replayed_groups(graph, groups, stubs)
    _describe_totals(graph, summaries, activated, counts, roots)
    dense = dense_experts(graph, size_of)
    if dense:
        graph.meta["dense_experts"] = dense
    if uses:
        graph.meta["experts"] = dict(sorted({**graph.meta.get("experts", {}),
                                             **expert_load(graph, uses, _class_in(root))
                                             }.items(),
                                            key=lambda kv: natural_key(kv[0])))


def _parameter_sizes(graph: Graph, call_modules: dict[str, Any],
                     root: torch.nn.Module | None) -> Callable[[str], int]:
    """The number of elements of a parameter by its qualified name: held by a module of the
    graph, or by one inside an uncalled module (which the graph lists alone, without its
    submodules) of ``root``; 0 if neither holds it."""
    objects = {call.path: call_modules.get(call.id) for call in graph.modules.values()
               if call.kind == "module" and call.call_index == 0}

    def size_of(name: str) -> int:
        owner, _, own_name = name.rpartition(".")
        module = objects.get(owner)
        param = module._parameters.get(own_name) if isinstance(module, torch.nn.Module) \
            else None
        if param is None and root is not None:
            with contextlib.suppress(AttributeError):
                param = root.get_parameter(name)
        return param.numel() if param is not None else 0

    return size_of


def _class_in(root: torch.nn.Module | None) -> Callable[[str], str]:
    """The class name of the module of ``root`` at a path ("" if there is none)."""
    def class_of(path: str) -> str:
        with contextlib.suppress(AttributeError):
            return type(root.get_submodule(path)).__name__ if root is not None else ""
        return ""

    return class_of


def _unused_stacked(graph: Graph, uses: dict[str, StackedUse],
                    size_of: Callable[[str], int]) -> dict[str, float]:
    """Parameters of stacked experts no token went through, by the path of the module
    holding them; the op that first read each parameter is corrected likewise."""
    numel: dict[str, int] = {}
    unused: dict[str, float] = {}
    for name, use in uses.items():
        size = size_of(name)
        if not size:
            continue
        numel[name] = size
        unused[use.owner] = unused.get(use.owner, 0.0) + size * (1 - use.share)
    for node in graph.nodes.values():
        for name in node.params:
            if name in numel and node.stats.activated_params >= numel[name]:
                node.stats.activated_params -= round(numel.pop(name) * (1 - uses[name].share))
    return unused


def _unused_below(unused: dict[str, float], path: str) -> float:
    """The unused stacked parameters of the module at ``path`` and its submodules."""
    return sum(count for owner, count in unused.items()
               if owner == path or owner.startswith(path + "."))


_SUMMED = tuple(name for name in STAT_NAMES if name not in ("params", "activated_params"))
"""The figures an op has of its own, summed into the calls that enclose it."""


def _roll_up(graph: Graph, modules: list[ModuleCall], stubs: dict[str, Any]) -> None:
    """Sum node FLOPs and bytes into every enclosing call, children first (``modules`` in
    post-order: a replayed call adds the sums of the call it repeats, done before it)."""
    sums = {call_id: dict.fromkeys(_SUMMED, 0) for call_id in graph.modules}
    for node in graph.nodes.values():
        mine = sums[node.parent]
        for name in _SUMMED:
            mine[name] += getattr(node.stats, name)
    for call in modules:
        mine = sums[call.id]
        stub = stubs.get(call.id)
        if stub is not None:
            repeated = sums[stub.template.call]
            for name in _SUMMED:
                mine[name] += repeated[name]
        for name in _SUMMED:
            setattr(call.stats, name, mine[name])
        if call.parent is not None:
            theirs = sums[call.parent]
            for name in _SUMMED:
                theirs[name] += mine[name]


def _summary(container: str, group: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A routed group's load, as ``graph.meta["experts"]`` shows it."""
    rows = group["rows"]
    return container, {
        "cls": group["cls"],
        "count": len(rows),
        "called": sum(1 for r in rows if r),
        "active_per_token": round(sum(rows) / group["parent_rows"], 4),
        "tokens": rows,
    }


def _replayed_groups(graph: Graph, groups: dict[str, dict[str, Any]],
                     stubs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The routed groups inside replayed calls: their templates' (with the template's
    path replaced by the call's)."""
    inside: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    def of_template(call_id: str) -> list[tuple[str, dict[str, Any]]]:
        found = inside.get(call_id)
        if found is None:
            below = set()
            stack = [call_id]
            nested = []
            while stack:
                current = stack.pop()
                below.add(current)
                if current in stubs and current != call_id:
                    nested.append(stubs[current])
                stack.extend(c for c in graph.modules[current].children if c in graph.modules)
            found = [_summary(container, group) for container, group in groups.items()
                     if group["parent"] in below]
            for stub in nested:
                found += _moved(of_template(stub.template.call), stub)
            inside[call_id] = found
        return found

    replayed = []
    for stub in stubs.values():
        replayed += _moved(of_template(stub.template.call), stub)
    return replayed


def _moved(summaries: list[tuple[str, dict[str, Any]]], stub: Any
           ) -> list[tuple[str, dict[str, Any]]]:
    cut = len(stub.template.path)
    return [(stub.path + container[cut:], summary) for container, summary in summaries]


def _describe_totals(graph: Graph, summaries: list[tuple[str, dict[str, Any]]],
                     activated: dict[str, tuple[float, float]],
                     counts: dict[int, Counts],
                     roots: list[torch.nn.Module]) -> None:
    root = graph.modules[graph.root]
    scales = sum(counts[id(r)][3] for r in roots)
    activated_scales = round(activated[graph.root][1])
    graph.meta["totals"] = {
        "params": root.stats.params,
        "activated_params": root.stats.activated_params,
        "block_scale_params": scales,
        "activated_block_scale_params": activated_scales,
        **{name: getattr(root.stats, name) for name in _SUMMED},
    }
    if summaries:
        graph.meta["experts"] = dict(sorted(summaries, key=lambda kv: natural_key(kv[0])))
