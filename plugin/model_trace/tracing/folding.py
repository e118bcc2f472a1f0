"""Fold repeated structure into one representative with a count, keeping exact statistics.

Signatures are computed bottom-up, one per item (op node or module call), and interned to
small integers, so comparing two subtrees is comparing two integers and the whole pass is
linear in the size of the graph:

- an op's signature: its kind, name, source line, arity and which of its inputs come from
  sibling ops (not shapes: the rows an expert gets differ from expert to expert);
- a module call's: its kind, class, ``extra_repr`` and the signatures of its children after
  they were folded (a folded loop's count is left out, a folded run's count is kept).

In each module call, the children's signatures form a sequence; a run of a pattern repeated
back to back (period 1: ``Block ×58``; period 9: an MoE's per-expert ``where, x[idx], expert,
...``) is folded. A period-1 run of module calls keeps its first call, with ``repeat`` set. A
longer pattern becomes a ``loop`` group holding the first iteration. Either way the other
members are dropped with their insides, leaving their paths and statistics in
``Repeat.members`` / ``Repeat.member_stats``; edges into or out of a dropped member are moved
to the matching item of the representative, and edges between members (layer i's output
into layer i+1) are dropped. Ids are renumbered afterwards (``m0, m1, ...`` in walk order).
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from model_trace.graph import Edge, Graph, Measured, ModuleCall, Node, Repeat, Stats

if TYPE_CHECKING:
    from model_trace.tracing.replay import ReplayedCalls

MAX_PERIOD = 64
"""Longest repeated pattern looked for (items per iteration)."""
MIN_OP_RUN = 3
"""Fewest repeats for a pattern of ops only (no module call) to fold."""


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off inside. A trace or a fold makes millions of small
    objects and no garbage cycles: the collector would rescan the growing graph again and
    again (it doubled the time of a 671B trace, and tripled its fold)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def fold_repeats(graph: Graph, replayed: ReplayedCalls | None = None) -> Graph:
    """Fold ``graph`` in place (see the module docstring) and return it. ``replayed``: the
    calls early folding replayed (``replay``), all inside runs this fold drops."""
    before = _recorded_sizes(graph, replayed)
    with collector_paused():
        _Folder(graph, replayed).run()
        compact_ids(graph)
    graph.meta["folded"] = {
        "before": dict(zip(("modules", "nodes", "tensors", "edges"), before, strict=True)),
        "after": {"modules": len(graph.modules), "nodes": len(graph.nodes),
                  "tensors": len(graph.tensors), "edges": len(graph.edges)},
    }
    return graph


def surviving_stubs(graph: Graph, replayed: ReplayedCalls,
                    leading: dict[str, list[str]]) -> set[str]:
    """The replayed calls that ``fold_repeats`` would keep (not inside a run it drops), with
    the shared source nodes each call will start with (``leading``) taken into account; the
    graph is not changed."""
    folder = _Folder(graph, replayed, leading=leading, dry=True)
    folder.run()
    kept: set[str] = set()
    stack = [graph.root]
    while stack:
        call = graph.modules[stack.pop()]
        if call.id in replayed.stubs:
            kept.add(call.id)
        stack.extend(c for c in call.children
                     if c in graph.modules and c not in folder.dropped)
    return kept


def _recorded_sizes(graph: Graph, replayed: ReplayedCalls | None) -> tuple[int, int, int, int]:
    """Module calls, nodes, tensors and edges of the graph, counting what each replayed call
    would have recorded (so the figures are those of a trace without early folding)."""
    sizes = [len(graph.modules), len(graph.nodes), len(graph.tensors), len(graph.edges)]
    if not replayed:
        return sizes[0], sizes[1], sizes[2], sizes[3]
    inside: dict[str, tuple[int, int]] = {}  # template -> (uncalled calls, inner shared nodes)

    def added_later(call_id: str) -> tuple[int, int]:
        """Uncalled module calls and shared nodes inside a call (below its own children's
        level for shared nodes), those inside replayed calls included."""
        found = inside.get(call_id)
        if found is not None:
            return found
        uncalled = shared = 0
        stack = [(c, False) for c in graph.modules[call_id].children]
        while stack:
            item, deeper = stack.pop()
            module = graph.modules.get(item)
            if module is None:
                shared += deeper and graph.nodes[item].kind == "shared"
                continue
            if not module.called:
                uncalled += 1
            stub = replayed.stubs.get(item)
            if stub is not None:
                more = added_later(stub.template.call)
                uncalled += more[0]
                shared += more[1]
            stack.extend((c, True) for c in module.children)
        inside[call_id] = (uncalled, shared)
        return uncalled, shared

    for stub in replayed.stubs.values():
        template = stub.template
        uncalled, shared = added_later(template.call)
        sizes[0] += template.module_count + uncalled
        sizes[1] += template.node_count + shared
        sizes[2] += template.tensor_count - stub.escaped
        sizes[3] += stub.hidden_edges
    return sizes[0], sizes[1], sizes[2], sizes[3]


def find_runs(sequence: list[int], max_period: int = MAX_PERIOD,
              alike: Callable[[int, int, int], int] | None = None
              ) -> list[tuple[int, int, int]]:
    """Runs ``(start, period, count)`` of a pattern repeated at least twice back to back,
    left to right; at each start the run covering most items wins (the shorter period on a
    tie). ``alike(start, period, count)``: how many of a run's members, from its first on,
    may fold together (``_Folder.members_alike``); the run is cut there."""
    runs: list[tuple[int, int, int]] = []
    n = len(sequence)
    i = 0
    while i < n - 1:
        best: tuple[int, int] | None = None  # (covered, period)
        first = sequence[i]
        j = i
        while True:
            try:
                j = sequence.index(first, j + 1, min(n, i + max_period + 1))
            except ValueError:
                break
            period = j - i
            if i + 2 * period > n:
                break
            pattern = sequence[i:j]
            if sequence[j:j + period] != pattern:
                continue
            count = 2
            while sequence[i + count * period:i + (count + 1) * period] == pattern:
                count += 1
            if alike is not None:
                count = alike(i, period, count)
                if count < 2:
                    continue
            if best is None or count * period > best[0]:
                best = (count * period, period)
        if best is None:
            i += 1
            continue
        covered, period = best
        runs.append((i, period, covered // period))
        i += covered
    return runs


Item = str | tuple[str, str, Any]
"""A module call or node id, or ("v", stub, item): ``item`` of the template's recording as it
stands inside the replayed call ``stub``."""


class _Folder:
    """One folding pass. Dropped members are not deleted while folding: their (already
    folded) structure tells, lazily and only for the edges that need it, which item of the
    representative stands for one of their items. ``dry``: find the runs only (``dropped``),
    without changing the graph; ``leading`` then names the shared source nodes each call
    will start with."""

    def __init__(self, graph: Graph, replayed: ReplayedCalls | None = None,
                 leading: dict[str, list[str]] | None = None, dry: bool = False) -> None:
        self.graph = graph
        self.replayed = replayed
        self.stubs = replayed.stubs if replayed is not None else {}
        self.leading = leading or {}
        self.dry = dry
        self.dropped: set[str] = set()
        self.signatures: dict[tuple[Any, ...], int] = {}
        self.signature: dict[str, int] = {}
        self.inner: dict[str, list[int]] = {}  # a call's folded children, shared nodes left out
        self.tag: dict[str, tuple[int, int]] = {}  # member item -> (run, member index)
        self.counterpart: dict[str, str] = {}  # dropped member item -> representative's item
        self.alias: dict[Item, Item] = {}
        self.tensor_alias: dict[str, str] = {}
        self.runs = 0
        self.loops = 0
        self.experts = graph.meta.get("experts", {})
        # every item, dropped members included: a tensor made inside a dropped member is
        # resolved after ``keep_reachable`` has pruned the graph's own dicts
        self.all_nodes, self.all_modules = graph.nodes, graph.modules
        self._kids: dict[str, dict[str, int]] = {}
        self._kid_lists: dict[str, list[str]] = {}
        self._module_tags: dict[str, tuple[tuple[int, int], ...]] = {}

    def intern(self, key: tuple[Any, ...]) -> int:
        found = self.signatures.get(key)
        if found is None:
            found = self.signatures[key] = len(self.signatures)
        return found

    def included(self, item: str) -> bool:
        """Items that take part in signatures: nodes and called module calls."""
        module = self.graph.modules.get(item)
        return module is None or module.called

    # -- the pass ----------------------------------------------------------------------
    def run(self) -> None:
        for call in self.graph.walk_modules_children_first():
            stub = self.stubs.get(call.id)
            if stub is not None:  # stands for its template's recording
                children = self.shared_sequence(call) + self.inner[stub.template.call]
            else:
                children = self.fold_children(call)
            self.signature[call.id] = self.intern(("m", call.kind, call.cls, call.extra_repr,
                                                   call.called, tuple(children)))
        if not self.dry:
            self.check_stubs_dropped()
            self.rewrite()

    def node_signature(self, node: Node, parent: str) -> int:
        nodes, tensors = self.graph.nodes, self.graph.tensors
        wiring = []
        for tensor_id in node.inputs:
            producer = nodes.get(tensors[tensor_id].producer)  # type: ignore[arg-type]
            wiring.append(producer is not None and producer.parent == parent)
        source = node.source
        return self.intern(("n", node.kind, node.name, source.file if source else None,
                            source.line if source else None, tuple(wiring), len(node.params),
                            len(node.outputs)))

    def shared_sequence(self, call: ModuleCall) -> list[int]:
        """Signatures of the shared source nodes a call starts with."""
        if self.dry:
            return [self.intern(("n", "shared", name, None, None, (), 0, 1))
                    for name in self.leading.get(call.id, ())]
        nodes = self.graph.nodes
        return [self.node_signature(nodes[c], call.id) for c in call.children
                if c in nodes and nodes[c].kind == "shared"]

    # -- folding one call's children ---------------------------------------------------
    def fold_children(self, call: ModuleCall) -> list[int]:
        """Fold the runs among a call's children; the signatures of its included children
        after folding (one pass over the children: this runs for every call)."""
        modules, signature, nodes = self.graph.modules, self.signature, self.graph.nodes
        items: list[str] = []
        sequence: list[int] = []
        for child in call.children:
            module = modules.get(child)
            if module is not None:
                if not module.called:
                    continue
                found = signature[child]  # a call's children have their signatures already
            else:
                found = signature.get(child)
                if found is None:
                    found = signature[child] = self.node_signature(nodes[child], call.id)
            items.append(child)
            sequence.append(found)
        leading = self.shared_sequence(call) if self.dry else []
        runs = [run for run in find_runs(sequence, alike=functools.partial(
            self.members_alike, call.id, items)) if self.worth_folding(items, run)] \
            if len(items) > 1 else []
        if not runs:
            self.inner[call.id] = self.without_shared(items, sequence)
            return leading + sequence
        folded: list[str] = []
        folded_sequence: list[int] = []
        position = 0
        for start, period, count in runs:
            folded.extend(items[position:start])
            folded_sequence.extend(sequence[position:start])
            if self.dry:
                self.dropped.update(items[start + period:start + period * count])
                folded.append(items[start])
                folded_sequence.append(self.run_signature(items, sequence, start, period,
                                                          count))
            else:
                item = self.fold_run(call, items, sequence, start, period, count)
                folded.append(item)
                folded_sequence.append(signature[item])
            position = start + period * count
        folded.extend(items[position:])
        folded_sequence.extend(sequence[position:])
        if not self.dry:
            call.children = folded + [c for c in call.children if not self.included(c)]
        self.inner[call.id] = self.without_shared(folded, folded_sequence)
        return leading + folded_sequence

    def without_shared(self, items: list[str], sequence: list[int]) -> list[int]:
        nodes = self.graph.nodes
        return [sig for item, sig in zip(items, sequence, strict=True)
                if item not in nodes or nodes[item].kind != "shared"]

    def run_signature(self, items: list[str], sequence: list[int], start: int, period: int,
                      count: int) -> int:
        """The signature a run folds into: its representative's with the count, or a
        loop's (the pattern, without the count)."""
        if period == 1 and items[start] in self.graph.modules:
            return self.intern(("rep", sequence[start], count))
        return self.intern(("loop", tuple(sequence[start:start + period])))

    def worth_folding(self, items: list[str], run: tuple[int, int, int]) -> bool:
        """Runs of module calls fold from 2 on; runs of bare ops (two calls of one helper
        line) from 3 on."""
        start, period, count = run
        return count >= MIN_OP_RUN or any(i in self.graph.modules
                                          for i in items[start:start + period])

    def members_alike(self, call_id: str, items: list[str], start: int, period: int,
                      count: int) -> int:
        """How many members of a run, from its first on, may fold together: each must read
        what the first reads, item by item and argument by argument, and be drawn under a
        module path of its own. Reading alike is reading the same tensor, or the tensor of
        one's own member at the place the first reads its own, or, where the first reads
        a tensor from outside the run, the one the member before made at one place for
        every member (a chain: layer i + 1 reads layer i's output; a loop's carried
        accumulator). With a pattern of several items, such a chain is believed from three
        members on: two alone may be different calls wired crosswise. Members fed different
        tensors from outside (DeepSeek-V3's MTP ``enorm(e)`` beside ``hnorm(h)``, Llama 4's
        ``qk_norm`` of the queries, then of the keys, a UNet's skip connections) are uses
        side by side, not repeats: folded, the representative would be drawn reading what
        it never read."""
        end = start + period * count
        position = {items[index]: index for index in range(start, end)}

        def maker(tensor_id: str) -> tuple[int, int] | None:
            """(member, offset) of the item that made the tensor (None: outside the run)."""
            index = self.child_making(tensor_id, call_id, position)
            return None if index is None else divmod(index - start, period)

        firsts = [self.inputs_of(items[start + offset]) for offset in range(period)]
        makers = [[maker(tensor_id) for tensor_id in first] for first in firsts]
        carried: dict[tuple[int, int], int] = {}  # (offset, argument) -> offset it comes from
        paths = {self.module_path(items[start:start + period])}
        alike = count
        for index in range(1, count):
            base = start + index * period
            path = self.module_path(items[base:base + period])
            if path is not None and path in paths:
                alike = index  # one module called again: its calls are not distinct members
                break
            paths.add(path)
            if not self.reads_like_first(items, base, period, firsts, makers, index, maker,
                                         carried):
                alike = index
                break
        return 1 if alike == 2 and period > 1 and carried else alike

    def reads_like_first(self, items: list[str], base: int, period: int,
                         firsts: list[list[str]], makers: list[list[tuple[int, int] | None]],
                         index: int, maker: Callable[[str], tuple[int, int] | None],
                         carried: dict[tuple[int, int], int]) -> bool:
        """Whether member ``index`` (its items from ``base``) reads like the first (see
        ``members_alike``); ``carried`` collects the chain's places."""
        for offset in range(period):
            reads, first = self.inputs_of(items[base + offset]), firsts[offset]
            if len(reads) != len(first):
                return False
            for argument, (theirs, ours) in enumerate(zip(reads, first, strict=True)):
                if theirs == ours:
                    continue
                made, made_first = maker(theirs), makers[offset][argument]
                if made is None:
                    return False  # another tensor from outside the run
                if made_first is not None:  # both made inside their own member
                    if made != (index, made_first[1]):
                        return False
                elif made[0] != index - 1 or carried.setdefault((offset, argument),
                                                                 made[1]) != made[1]:
                    return False
        return True

    def inputs_of(self, item: str) -> list[str]:
        module = self.graph.modules.get(item)
        return module.inputs if module is not None else self.graph.nodes[item].inputs

    def child_making(self, tensor_id: str, call_id: str, position: dict[str, int]) -> int | None:
        """The position in ``position`` of the child of ``call_id`` inside which the
        tensor was made, or None if it was made elsewhere."""
        current = self.graph.tensors[tensor_id].producer
        if current is not None and current not in self.all_nodes:
            current = self.replayed.stub_of(current) if self.replayed is not None else None
        while current is not None:
            node = self.all_nodes.get(current)
            parent = node.parent if node is not None else self.all_modules[current].parent
            if parent == call_id:
                return position.get(current)
            current = parent
        return None

    def fold_run(self, call: ModuleCall, items: list[str], sequence: list[int], start: int,
                 period: int, count: int) -> str:
        graph = self.graph
        members = [items[start + j * period:start + (j + 1) * period] for j in range(count)]
        run = self.runs = self.runs + 1
        for index, member in enumerate(members):
            for position, item in enumerate(member):
                self.tag[item] = (run, index)
                if index:
                    self.counterpart[item] = members[0][position]
        stats = [self.stats_of(member) for member in members]
        seconds = self.seconds_of(members)
        labels = [self.label_of(member, call, j) for j, member in enumerate(members)]
        first = members[0]
        folded_signature = self.run_signature(items, sequence, start, period, count)
        if period == 1 and first[0] in graph.modules:
            representative = graph.modules[first[0]]
            representative.repeat = Repeat(count=count, members=labels, member_stats=stats,
                                           note=self.note(first, count),
                                           member_seconds=seconds)
            self.signature[representative.id] = folded_signature
            return representative.id
        self.loops += 1
        loop_id = f"loop{self.loops}"
        while loop_id in graph.modules:
            loop_id += "_"
        modules_inside = [graph.modules[i] for i in first if i in graph.modules]
        containers = {m.path.rpartition(".")[0] for m in modules_inside}
        path = containers.pop() if len(containers) == 1 and modules_inside else call.path
        loop = ModuleCall(id=loop_id, path=path, cls="loop", parent=call.id,
                          children=list(first), kind="loop", stats=stats[0].copy(),
                          repeat=Repeat(count=count, members=labels, member_stats=stats,
                                        note=self.note(first, count),
                                        member_seconds=seconds))
        graph.modules[loop_id] = loop
        for item in first:
            if item in graph.modules:
                graph.modules[item].parent = loop_id
            else:
                graph.nodes[item].parent = loop_id
        self.signature[loop_id] = folded_signature
        return loop_id

    def note(self, first: list[str], count: int) -> str:
        """``Expert ×252 of 256 called, 8 active per token`` for a routed group."""
        modules = [self.graph.modules[i] for i in first if i in self.graph.modules]
        if len(modules) != 1:
            return "" if modules else f"{count} iterations"
        container = modules[0].path.rpartition(".")[0]
        group = self.experts.get(container)
        if group is None:
            return ""
        active = group["active_per_token"]
        return (f"{group['cls']} ×{group['called']} of {group['count']} called, "
                f"{active:g} active per token")

    def label_of(self, member: list[str], call: ModuleCall, index: int) -> str:
        path = self.module_path(member)
        if path is not None:
            return path
        return f"{call.path}#{index}" if call.path else f"#{index}"

    def module_path(self, member: list[str]) -> str | None:
        """The path of a member's first module call (None: ops only)."""
        for item in member:
            module = self.graph.modules.get(item)
            if module is not None:
                return module.path
        return None

    def stats_of(self, member: list[str]) -> Stats:
        total = Stats()
        for item in member:
            module = self.graph.modules.get(item)
            total.add(module.stats if module is not None else self.graph.nodes[item].stats)
        return total

    def check_stubs_dropped(self) -> None:
        """Every replayed call must lie inside a dropped member (``surviving_stubs`` had
        the others recorded): the folded graph must not hold one."""
        stack = [self.graph.root]
        while stack:
            call = self.graph.modules[stack.pop()]
            if call.id in self.stubs:
                raise RuntimeError(
                    f"early folding kept the replayed call '{call.path}' in the folded graph; "
                    "this is a bug in model-trace: trace with early_fold=False meanwhile")
            stack.extend(c for c in call.children if c in self.graph.modules)

    def seconds_of(self, members: list[list[str]]) -> list[float] | None:
        """Each member's measured time: the sum over the module calls and ops it ran, None
        unless every one of them was measured (``execute``)."""
        if "execution" not in self.graph.meta:
            return None
        seconds = []
        for member in members:
            timed: list[Measured | None] = []
            for item in member:
                module, node = self.graph.modules.get(item), self.graph.nodes.get(item)
                if module is not None and module.called:
                    timed.append(module.measured)
                elif node is not None and node.kind == "op":
                    timed.append(node.measured)
            if not timed or any(m is None for m in timed):
                return None
            seconds.append(round(sum(m.wall_time_s for m in timed if m is not None), 7))
        return seconds

    # -- which item stands for a dropped one -------------------------------------------
    def canonical(self, item: Item) -> Item:
        """``item``, or for an id a replayed call reserved, ("v", stub, template's item)."""
        if isinstance(item, tuple) or item in self.all_nodes or item in self.all_modules:
            return item
        located = self.replayed.locate(item) if self.replayed is not None else None
        if located is None:
            raise KeyError(item)
        return ("v", located[0].call, located[1])

    def parent_of(self, item: Item) -> Item | None:
        if isinstance(item, tuple):
            stub = self.stubs[item[1]]
            parent = self.parent_of(self.canonical(item[2]))
            return stub.call if parent == stub.template.call else ("v", stub.call, parent)
        node = self.all_nodes.get(item)
        return node.parent if node is not None else self.all_modules[item].parent

    def index_in_parent(self, item: Item, parent: Item) -> int:
        """Where ``item`` is among its parent's included children."""
        if isinstance(item, tuple):
            inner = self.canonical(item[2])
            index = self.index_in_parent(inner, self.parent_of(inner))  # type: ignore[arg-type]
            if parent == item[1]:  # a child of the stub itself: after its own shared nodes
                stub = self.stubs[item[1]]
                index += self.shared_count(stub.call) - self.shared_count(stub.template.call)
            return index
        self.kids(parent)
        return self._kids[parent][item]  # type: ignore[index]

    def shared_count(self, call_id: str) -> int:
        nodes = self.all_nodes
        return sum(1 for c in self.all_modules[call_id].children
                   if c in nodes and nodes[c].kind == "shared")

    def counterpart_of(self, item: Item) -> Item | None:
        if isinstance(item, tuple):
            found = self.counterpart_of(self.canonical(item[2]))
            return ("v", item[1], found) if found is not None else None
        return self.counterpart.get(item)

    def kids(self, module_id: Item) -> list[Item]:
        if isinstance(module_id, tuple):
            return [("v", module_id[1], k) for k in self.kids(self.canonical(module_id[2]))]
        found = self._kid_lists.get(module_id)
        if found is None:
            assert module_id not in self.stubs, "a replayed call has no children to descend to"
            found = self._kid_lists[module_id] = [
                c for c in self.all_modules[module_id].children if self.included(c)]
            self._kids[module_id] = {c: i for i, c in enumerate(found)}
        return found  # type: ignore[return-value]

    def resolve(self, item: Item) -> Item:
        """The surviving item that stands for ``item`` (itself unless it lies in a dropped
        member): the item at the same position in the member's representative."""
        start = item
        item = self.canonical(item)
        while True:
            found = self.alias.get(item)
            if found is not None:
                item = found
                break
            path: list[int] = []
            current = item
            target = self.counterpart_of(current)
            while target is None:
                parent = self.parent_of(current)
                if parent is None:
                    break
                path.append(self.index_in_parent(current, parent))
                current = parent
                target = self.counterpart_of(current)
            if target is None:
                break
            for index in reversed(path):
                target = self.kids(target)[index]
            item = target
        self.alias[start] = item
        return item

    def outputs_of(self, item: Item) -> list[str]:
        item = self.canonical(item)
        if isinstance(item, tuple):
            stub = self.stubs[item[1]]
            return [self.replayed.stub_tensor(stub, t)  # type: ignore[union-attr]
                    for t in self.outputs_of(item[2])]
        return self.all_nodes[item].outputs

    def resolve_tensor(self, tensor_id: str) -> str:
        found = self.tensor_alias.get(tensor_id)
        if found is not None:
            return found
        result = tensor_id
        producer = self.graph.tensors[tensor_id].producer
        if producer is not None:
            standing = self.resolve(producer)
            if standing != producer:
                outputs = self.outputs_of(producer)
                theirs = self.all_nodes[standing].outputs  # type: ignore[index]
                index = outputs.index(tensor_id) if tensor_id in outputs else -1
                if 0 <= index < len(theirs):
                    result = theirs[index]
        self.tensor_alias[tensor_id] = result
        return result

    def module_tags(self, module_id: str | None) -> tuple[tuple[int, int], ...]:
        """(run, member) of every fold member on the way from the root down to a module."""
        if module_id is None:
            return ()
        found = self._module_tags.get(module_id)
        if found is not None:
            return found
        chain = []
        current: str | None = module_id
        while current is not None and current not in self._module_tags:
            chain.append(current)
            current = self.graph.modules[current].parent
        tags = self._module_tags[current] if current is not None else ()
        for item in reversed(chain):
            own = self.tag.get(item)
            tags = (*tags, own) if own is not None else tags
            self._module_tags[item] = tags
        return tags

    def tags_of(self, node_id: str) -> tuple[tuple[int, int], ...]:
        node = self.graph.nodes.get(node_id)
        if node is None:  # an id inside a replayed call: what holds for the call holds here
            return self.module_tags(self.replayed.stub_of(node_id))  # type: ignore[union-attr]
        tags = self.module_tags(node.parent)
        own = self.tag.get(node_id)
        return (*tags, own) if own is not None else tags

    # -- rewriting references ----------------------------------------------------------
    def rewrite(self) -> None:
        graph = self.graph
        kept: list[Edge] = []
        seen: set[tuple[str, str, str]] = set()
        for edge in graph.edges:
            source_tags, target_tags = self.tags_of(edge.src), self.tags_of(edge.dst)
            if source_tags is target_tags:  # same group, neither end a fold member itself
                if any(member for _, member in source_tags):
                    continue  # inside a dropped member: the representative has its own copy
                src, dst = edge.src, edge.dst
            else:
                members = dict(source_tags)
                shared_dropped = crossing = False
                for run, member in target_tags:
                    other = members.get(run)
                    if other is None:
                        continue
                    if other != member:
                        crossing = True  # from one member into another (layer i -> i + 1)
                        break
                    if member:
                        shared_dropped = True
                if crossing or shared_dropped:
                    continue
                src = self.resolve(edge.src) if any(m for _, m in source_tags) else edge.src  # type: ignore[assignment]
                dst = self.resolve(edge.dst) if any(m for _, m in target_tags) else edge.dst  # type: ignore[assignment]
            if src == dst:
                continue
            key = (src, dst, self.resolve_tensor(edge.tensor))
            if dst != edge.dst and key[2] not in self._tensors(graph.nodes[dst].inputs):
                continue  # read deep inside a dropped member, not through its arguments
                #           (which ``members_alike`` compares): the representative's own
                #           edge from the same producer stands for it
            if key not in seen:
                seen.add(key)
                kept.append(Edge(*key))
        graph.edges = kept
        self.keep_reachable()
        referenced: set[str] = set()
        for node in graph.nodes.values():
            node.inputs = self._tensors(node.inputs)
            referenced.update(node.inputs)
            referenced.update(node.outputs)
        for call in graph.modules.values():
            call.inputs = self._tensors(call.inputs)
            call.outputs = self._tensors(call.outputs)
            referenced.update(call.inputs)
            referenced.update(call.outputs)
        tensors = {}
        for tensor_id, tensor in graph.tensors.items():
            if tensor_id in referenced:
                if tensor.producer is not None and tensor.producer not in graph.nodes:
                    tensor.producer = None
                tensors[tensor_id] = tensor
        graph.tensors = tensors

    def keep_reachable(self) -> None:
        """Keep the modules and nodes the folded tree still reaches from the root."""
        graph = self.graph
        modules: dict[str, ModuleCall] = {}
        nodes: dict[str, Node] = {}
        stack = [graph.root]
        while stack:
            call = graph.modules[stack.pop()]
            modules[call.id] = call
            for child in call.children:
                if child in graph.modules:
                    stack.append(child)
                else:
                    nodes[child] = graph.nodes[child]
        graph.modules = modules
        graph.nodes = {key: value for key, value in graph.nodes.items() if key in nodes}

    def _tensors(self, ids: list[str]) -> list[str]:
        mapped: list[str] = []
        for tensor_id in ids:
            resolved = self.resolve_tensor(tensor_id)
            if resolved not in mapped:
                mapped.append(resolved)
        return mapped


def compact_ids(graph: Graph) -> None:
    """Renumber modules ``m0, m1, ...`` in walk order, nodes ``n0, ...`` in call order (the
    order of their old numbers) and tensors ``t0, ...`` in order of first use."""
    order = graph.walk_modules()
    module_ids = {call.id: f"m{i}" for i, call in enumerate(order)}
    node_order = sorted((c for call in order for c in call.children if c in graph.nodes),
                        key=_number)
    node_ids = {old: f"n{i}" for i, old in enumerate(node_order)}
    tensor_ids: dict[str, str] = {}

    def tensor(old: str) -> str:
        new = tensor_ids.get(old)
        if new is None:
            new = tensor_ids[old] = f"t{len(tensor_ids)}"
        return new

    nodes: dict[str, Node] = {}
    for old in node_order:
        node = graph.nodes[old]
        node.id = node_ids[old]
        node.parent = module_ids[node.parent]
        node.inputs = [tensor(t) for t in node.inputs]
        node.outputs = [tensor(t) for t in node.outputs]
        nodes[node.id] = node
    modules: dict[str, ModuleCall] = {}
    for call in order:
        call.id = module_ids[call.id]
        call.parent = module_ids[call.parent] if call.parent is not None else None
        call.children = [module_ids.get(c) or node_ids[c] for c in call.children]
        call.inputs = [tensor(t) for t in call.inputs]
        call.outputs = [tensor(t) for t in call.outputs]
        modules[call.id] = call
    edges = [Edge(node_ids[e.src], node_ids[e.dst], tensor(e.tensor)) for e in graph.edges]
    tensors = {}
    for old, new in tensor_ids.items():  # numbered as they were met: t0, t1, ...
        value = graph.tensors[old]
        value.id = new
        value.producer = node_ids.get(value.producer) if value.producer is not None else None
        tensors[new] = value
    graph.root = module_ids[graph.root]
    graph.modules, graph.nodes, graph.tensors, graph.edges = modules, nodes, tensors, edges


def _number(item_id: str) -> tuple[int, str]:
    digits = item_id.lstrip("abcdefghijklmnopqrstuvwxyz")
    return (int(digits), item_id) if digits.isdigit() else (1 << 62, item_id)
