"""Mutation score of the core modules: how many small bugs the fast tests notice.

    python benchmarks/mutation.py                       # 100 (or 60) mutants of each target
    python benchmarks/mutation.py folding routing       # some of the modules
    python benchmarks/mutation.py --sample 0            # every mutant (about 4x longer)
    python benchmarks/mutation.py --sample 40 --seed 1  # another choice of 40 per module
    python benchmarks/mutation.py --list spec           # the mutants, without running them

(from the repository root; the package and the tests are taken from this checkout.)

Each mutant changes one spot of one module: a comparison flipped (``<`` -> ``<=``, ``==`` ->
``!=``, ``in`` -> ``not in``), an arithmetic or boolean operator swapped, a number off by
one, a ``True``/``False`` flipped, a name-like string changed, a condition negated, a
statement dropped (a call, an ``+=``, a ``raise``, a ``continue``...), ``min``/``max`` or
``any``/``all`` swapped, a sort removed, two arguments swapped. The mutant is written into a
private copy of ``plugin/`` and the fast tests that run the mutated line are run against it
(``pytest -x``); a failing test or a timeout (or memory past ``MEMORY_CAP``) kills it, a
passing run lets it survive. The tests that killed most of the module's mutants so far run
first, then the quickest, so a killed mutant usually costs one test.

Which tests run a line is measured by a baseline run that records the lines each test (and
each fixture it uses) executes, once for all the modules of a run that share their tests (the
tracer's modules do); a mutant outside any function (a constant, a default argument) or on
a line run while the tests are collected (a table a function builds at import) runs every
mapped test. "Fast" leaves out tests that use a fixture in ``SLOW_FIXTURES`` or carry a
marker in ``SLOW_MARKERS``.

The viewer's layout and rendering (``assets/viewer/2-layout.js``, ``3-render.js``) are
mutated too: ``js_mutants.py`` finds token-level mutants of the same kinds, and the figure
tests (which run the engine in mini-racer's V8) judge them. Their baseline runs the engine
on an instrumented copy of the file, in which every block of statements (a function's body,
an ``if``'s branch, a loop's body...) notes that it ran, so a mutant runs only the tests
that run its innermost block, as a Python mutant runs those that run its line.

The mutants are chosen deterministically: each has a stable name (its function, operator and
text, not its line number), and ``--sample N`` keeps the N whose seeded hash is smallest, so
two runs on the same code run the same mutants and an unrelated edit does not reshuffle them.
Survivors listed in ``EQUIVALENT`` (mutants that cannot change behaviour) are shown with the
reason and left out of the score; those in ``FREE_CHOICES`` (another output nothing promised
tells apart) are shown with the reason and stay in it.

The parent process imports torch, pytest and hypothesis once and forks one child per run, so
a mutant does not pay torch's import time; children run one at a time (``--jobs`` for more).
"""

from __future__ import annotations

import argparse
import ast
import bisect
import contextlib
import dataclasses
import gc
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import js_mutants
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "plugin/model_trace"


@dataclass(frozen=True)
class Target:
    """A module to mutate and the test files (or folders) that cover it."""

    path: str
    """Below ``plugin/model_trace``."""
    tests: tuple[str, ...]
    """Test files or folders, relative to the repository root; globs allowed."""
    sample: int | None = None
    """Mutants chosen by default, where not ``DEFAULT_SAMPLE`` (0: all of them)."""

    @property
    def javascript(self) -> bool:
        return self.path.endswith(".js")


FIGURE_TESTS = ("tests/model_trace/test_layout.py", "tests/model_trace/test_layout_properties.py",
                "tests/model_trace/test_render.py",
                "tests/model_trace/test_figure_integrity.py", "tests/model_trace/test_exports.py",
                "tests/model_trace/test_annotate.py", "tests/model_trace/test_compare.py",
                "tests/model_trace/test_render_svg.py", "tests/model_trace/test_marks.py")
"""The fast tests that run the figure engine (the viewer's JavaScript, in mini-racer's V8)."""

# The one table to update as modules move: name -> module and the tests that cover it.
TARGETS: dict[str, Target] = {
    "spec": Target("spec.py", ("tests/model_trace/test_spec*.py",)),
    "folding": Target("tracing/folding.py", ("tests/model_trace/tracing",)),
    "routing": Target("tracing/routing.py", ("tests/model_trace/tracing",)),
    "stats": Target("tracing/stats.py", ("tests/model_trace/tracing",)),
    "recorder": Target("tracing/recorder.py", ("tests/model_trace/tracing",), sample=60),
    "op_table": Target("tracing/op_table.py", ("tests/model_trace/tracing",), sample=60),
    "concrete": Target("tracing/concrete.py", ("tests/model_trace/tracing",), sample=60),
    "replay": Target("tracing/replay.py", ("tests/model_trace/tracing",), sample=60),
    "builder": Target("tracing/builder.py", ("tests/model_trace/tracing",), sample=60),
    "execution": Target("tracing/execution.py", ("tests/model_trace/tracing",), sample=60),
    "route_rule": Target("tracing/route_rule.py", ("tests/model_trace/tracing",), sample=60),
    **{name: Target(f"tracing/{name}.py", ("tests/model_trace/tracing",), sample=30)
       for name in ("flops", "meta_cache", "stacked", "selections", "sharing", "widening",
                    "summary", "source", "arguments", "model_index", "backward",
                    "known_values", "assumptions")},
    "api": Target("tracing/api.py", ("tests/model_trace/tracing",), sample=60),
    "op_runner": Target("tracing/op_runner.py", ("tests/model_trace/tracing",), sample=60),
    "op_info": Target("tracing/op_info.py", ("tests/model_trace/tracing",), sample=60),
    **{name: Target(f"tracing/{name}.py", ("tests/model_trace/tracing",), sample=30)
       for name in ("options", "structures")},
    **{name: Target(f"tracing/{name}.py", ("tests/model_trace/tracing",), sample=0)
       for name in ("threads", "distributed")},
    "view_tree": Target("view_tree.py", ("tests/model_trace/test_view_tree*.py",
                                         "tests/model_trace/test_layout.py",
                                         "tests/model_trace/test_render.py")),
    "naming": Target("naming.py", ("tests/model_trace/test_naming.py",
                                   "tests/model_trace/test_view_tree*.py",
                                   "tests/model_trace/test_render.py")),
    "integrity": Target("integrity.py", ("tests/model_trace/test_integrity.py",)),
    "view_data": Target("view_data.py", ("tests/model_trace/test_view_data.py",
                                         "tests/model_trace/test_render.py")),
    "layout_js": Target("assets/viewer/2-layout.js", FIGURE_TESTS, sample=60),
    "render_js": Target("assets/viewer/3-render.js", FIGURE_TESTS, sample=60),
    "marks_js": Target("assets/viewer/3-marks.js", FIGURE_TESTS, sample=60),
    "render_html": Target("render_html.py", FIGURE_TESTS, sample=60),
}

SLOW_FIXTURES = frozenset({"traced_671b", "browser", "open_page", "build_site"})
"""Tests using these are not fast (a 671B trace, Chromium, a whole MkDocs build)."""
SLOW_MARKERS = frozenset({"browser"})

# Survivors that do change the output, to another one that nothing the module promises tells
# apart from it (a heuristic's free choice), with the reason. They stay in the score as
# survivors; the report prints why no test can kill them.
FREE_CHOICES: dict[str, str] = {
    "layout_js:layoutGroup:arithmetic:+ -> -#14":
        "where each rank's boxes start, before eight sweeps move each to where its links "
        "pull it: parts of a group that share no link (a box and the out-port only it "
        "feeds, beside the rest) keep a trace of where they started, as nothing pulls them "
        "toward each other; linked boxes end within the 2 px eight sweeps leave unsettled. "
        "Starting overlapped draws some groups a few px tighter and a few with one more "
        "jog; both hold every check of layout_properties",
}

# Survivors that cannot change behaviour, by the mutant's name as the report prints it
# ("target:function:operator:original -> mutated#occurrence"), with the reason.
EQUIVALENT: dict[str, str] = {
    "spec:_check_events:constant:1 -> (2)#0":
        "last_line only clamps the line of an event past the text's end; a text with no lines "
        "has no values, so no line is ever reported from it",
    "spec:_check_events:drop:raise _yaml_error(error, text) from error -> pass#0":
        "the loader that runs next parses the same text, meets the same syntax error at the "
        "same mark (the events before it passed the checks) and raises the same SpecError",
    "spec:<module>:constant:False -> True#1":
        "_plain_data_problem's integer_keys default: callers that allow integer keys say so, "
        "args and overrides check their keys are names first, and a fence's YAML events refuse "
        "integer keys anywhere else before values are built",
    "spec:_plain_data_problem:flow:continue -> break#0":
        "only a fence's YAML reaches it with integer keys (dims), and after _check_events the "
        "values left unchecked by the break are plain data (dates, tags, odd keys are refused)",
    "naming:_in_units:constant:1000 -> (999)#0":
        "the number is already rounded to three digits, so the only one in [999, 1000) is 999, "
        "which both formats print as 999",
    "naming:relative_name:constant:1 -> (2)#1":
        "rsplit('.', 1) and rsplit('.', 2) end with the same last part",
    "stats:add_uncalled_modules:flow:break -> continue#0":
        "a path joins above_called with all its ancestors, so walking on past one already there "
        "adds nothing: the break only saves time",
    "routing:BalancedRouting._spread:constant:1 -> (2)#2":
        "counting each pick twice doubles every load: the costs keep their order (the load "
        "term is a multiple of the stride, the round robin below it), so the picks are the same",
    "routing:BalancedRouting._spread:compare:len(positions) < k -> len(positions) <= k#0":
        "with exactly k allowed both branches take the allowed choices in order (no extra "
        "ones; one offset, slots 0..k-1)",
    "routing:FixedRouting.choose:constant:1 -> (0)#0":
        "one more repeat of the table is cut off by [:rows]",
    "routing:FixedRouting.choose:arithmetic:(rows + len(table) - 1) // len(table) -> "
    "(rows + len(table) - 1) * len(table)#0":
        "more repeats of the table than rows need are cut off by [:rows]",
    "sharing:plan_shared_uses:swap:replayed.node(graph.nodes, producer) -> "
    "replayed.node(producer, graph.nodes)#0":
        "unreachable: a producer missing from graph.nodes is an id a replayed call reserved, "
        "whose home is that call (stub_of), and every consumer the graph holds lies outside "
        "it (what a replayed call holds is not recorded): no group of calls forms, so the "
        "loop has gone on before this line",
    "stats:_gathered:boolean:node is None and producer is not None and replayed -> "
    "node is None or producer is not None and replayed#0":
        "every tensor the tracer records has a producer, and replayed.node returns a node "
        "found in graph.nodes as it is: the extra lookups find the node already found, and a "
        "producer missing from graph.nodes is a replay's reserved id (so replayed is set)",
    "stats:_named_modules:compare:index is not None -> index is None#0":
        "its one caller always passes the model's index, a cache of root.named_modules() that "
        "leaves out the same skipped paths: both branches list the same modules",
    "view_tree:ViewItem:constant:\"module\" -> 'module_x'#0":
        "the default category is never used: every ViewItem the tree makes names its category",
    "view_tree:_through:call:sorted(through, key=position.__getitem__) -> list(through)#0":
        "through is filled in walk order, which is the items' pre-order: already sorted",
    "view_tree:_through:compare:position[flow.src] < at < position[flow.dst] -> "
    "position[flow.src] < at <= position[flow.dst]#0":
        "a pass-through call is never a flow's end before it is rewritten (tensor flows join "
        "nodes; flows from boxes carry param: keys, which no call passes on)",
    "view_tree:_through:compare:position[flow.src] < at < position[flow.dst] -> "
    "position[flow.src] <= at < position[flow.dst]#0":
        "a pass-through call is never a flow's end before it is rewritten (tensor flows join "
        "nodes; flows from boxes carry param: keys, which no call passes on)",
    "view_tree:_chunk_label:constant:1 -> (2)#1":
        "the first part of a split is the same whatever its maxsplit",
    "integrity:_owner:constant:1 -> (2)#0":
        "the first part of a split is the same whatever its maxsplit",
    "integrity:_flow_pairs.producers:drop:seen.add(src) -> pass#0":
        "without it a hidden node reached twice is walked twice: a graph's edges have no "
        "cycle, so the walk still ends, and the pairs it finds are deduplicated",
    "integrity:_reachable:constant:\":\" -> ':_x'#1":
        "ports added to the reached set change nothing: it is only asked about items, whose "
        "ids have no colon",
    "folding:find_runs:flow:break -> continue#1":
        "periods only grow as j moves right: once one does not fit twice before the end, "
        "none after it does, so continuing only tries them in vain until index() stops",
    "folding:_Folder.fold_children:compare:len(items) > 1 -> len(items) >= 1#0":
        "find_runs finds no run in a single item, so the guard only saves the call",
    "folding:_Folder.without_shared:constant:True -> False#0":
        "zip's strict check: the items and their signatures are built together, one for one",
    "folding:_Folder.resolve_tensor:compare:0 <= index < len(theirs) -> "
    "0 <= index <= len(theirs)#0":
        "a member's producer and the node standing for it have the same signature, which "
        "counts outputs, so an index found among one's outputs is always below the other's",
    "folding:_Folder.shared_sequence:constant:0 -> (1)#0":
        "the dry pass runs before draw_shared_per_use, so the graph has no shared nodes yet: "
        "these signatures, all made with the same constants, are compared only with each "
        "other (and a dry pass has its own signature table)",
    "folding:_Folder.shared_sequence:boolean:c in nodes and nodes[c].kind == \"shared\" -> "
    "c in nodes or nodes[c].kind == \"shared\"#0":
        "outside the dry pass it is asked only for replayed calls, whose children are the "
        "shared nodes drawn for them and nothing else (no op, no uncalled submodule)",
    "folding:_Folder.rewrite:constant:2 -> (1)#0":
        "a resolved edge whose tensor its representative reads is the representative's own "
        "edge (members read alike, from the same producer), recorded earlier: skipping it "
        "too leaves the same edges in the same order",
    "folding:_number:constant:\"abcdefghijklmnopqrstuvwxyz\" -> "
    "'abcdefghijklmnopqrstuvwxyz_x'#0":
        "ids are a letter and digits (a member adds ~k), never an underscore: stripping '_' "
        "as well changes no id's number",
    "folding:_number:constant:62 -> (63)#0":
        "the key of an id without a number only has to sort after every real number: 2**62 "
        "and 2**63 both do",
    "concrete:ConcreteValues.run:flow:break -> continue#0":
        "the loop only saves a call: compute_known starts with the same check (a meta input "
        "without known values) and returns None, as the break leaves values",
    "concrete:ConcreteValues._concretise:constant:True -> False#0":
        "the numbers of outputs and values are compared just before: zip's strict check "
        "never fires",
    "concrete:ConcreteValues.run:constant:True -> False#2":
        "unreachable with this torch: no indexing op that raises a device error takes a "
        "CPU bool mask (x[mask], setitem, index_put_ take one beside meta tensors as it "
        "is; index_add_, index_fill, index_copy and take_along_dim, which do raise, take "
        "integer indices): the mask's conversion to positions is kept for a torch whose "
        "indexing refuses it",
    "concrete:ConcreteValues._like_on_cpu.stand_in:constant:0 -> (1)#0":
        "a stand-in not shaped like its template is one for a new_* op (new_zeros, new_ones, "
        "new_full, new_tensor), whose size and values come from its other arguments, none of "
        "them on meta (checked before): the template lends only its dtype, whatever its size",
    "concrete:ConcreteValues._to_meta.move:constant:True -> False#0":
        "unreachable with this torch: no indexing op that raises a device error takes a "
        "CPU bool mask (x[mask], setitem, index_put_ take one beside meta tensors as it "
        "is; index_add_, index_fill, index_copy and take_along_dim, which do raise, take "
        "integer indices): the mask's conversion to positions is kept for a torch whose "
        "indexing refuses it",
    "recorder:Recorder.__torch_function__:drop:raise -> pass#0":
        "a query op that raised (.item() of a meta tensor) then falls through to the op "
        "runner, which runs it again and raises the same error; the failure was already "
        "noted at the first raise, so the message names the same op and line",
    "execution:_OpTimer.__init__:drop:super().__init__() -> pass#0":
        "TorchFunctionMode.__init__ does nothing (its body is pass); the call is kept for a "
        "torch that gives it work",
    "execution:_Meter.exit:swap:_higher(parent[3], peak) -> _higher(peak, parent[3])#0":
        "_higher is symmetric: the larger of two readings, None if either is None",
    "route_rule:ForcedRouting.run:boolean:info.role == \"routing\" and tensors -> "
    "info.role == \"routing\" or tensors#0":
        "route() changes only ops it names, and every name it handles has the routing role; "
        "any other op falls through to its last line and comes back as it ran",
    "flops:FlopCounter.__init__:drop:super().__init__() -> pass#0":
        "TorchDispatchMode sets up its state lazily on __enter__ when __init__ was not called",
    "flops:_triangular_solve_flops:constant:-1 -> (-2)#0":
        "a triangular matrix is square: its last two dimensions are the same n",
    "meta_cache:_key:constant:\"slice\" -> 'slice_x'#0":
        "the tag only keeps a slice's description apart from a tuple of three values; any "
        "other string does that as well",
    "selections:_routed:drop:seen.add(tensor_id) -> pass#0":
        "tensors and their producers form no cycle (an in-place write makes a new version), "
        "so without it a tensor reached twice is only walked twice: the answer is the same",
    "recorder:Recorder.release:drop:self.values.release() -> pass#0":
        "only frees memory sooner: the meta-result cache holds output metadata, no tensors, "
        "and nothing reads it once the trace is over",
    "recorder:Recorder._record_aten:constant:False -> True#0":
        "the default is never used: a dispatch mode is handed OpOverloads, which all have "
        "is_view",
    "replay:Replayer._find_candidates:call:reversed(module._modules.values()) -> "
    "list(module._modules.values())#0":
        "the order only decides the order the overrides are installed and removed in; each "
        "candidate gets its own, and which modules are candidates is the same",
    "replay:Replayer._find_candidates:constant:1 -> (2)#0":
        "it makes every module a candidate, also one alone with its structure key: a call "
        "key holds the parent call and the structure key, and a later call of the same "
        "module has call_index > 0 (no key), so no call ever matches its template",
    "replay:Replayer._forward:drop:self._windows.pop() -> pass#0":
        "closed windows left on the stack are never read again; they have smaller tensor "
        "bases than every window opened after them, so the open ones are marked impure "
        "exactly as before",
    "replay:Replayer._replay:constant:0 -> (1)#1":
        "a template's uncounted ops were counted when it was recorded, before any replay "
        "of it: the name is always there",
    "replay:_count_call:constant:0 -> (1)#1":
        "a template is kept only when every first index is 0; calls of a path are visited "
        "latest first and a nested replay's entry (first 0) comes after them, so the last "
        "value folded in is 0 exactly when one is: min(count, 0) is 0 as min(first, 0) is",
    "replay:_same_tensor:compare:0 <= offset < count -> 0 <= offset <= count#0":
        "it only maps the outputs of a template's nodes, which were made during the "
        "template (offset < count) or handed to it; the first id after it never reaches it",
    "replay:record_survivors:swap:builder.calls_per_path.get(path, first + count) -> "
    "builder.calls_per_path.get(first + count, path)#0":
        "the count restored after a kept replay is recorded is read by no later step: the "
        "paths below a replayed call are its own (a replay is its module's first call and "
        "each recording sets the counts of its own paths first), and after the forward "
        "nothing else numbers calls",
    "replay:record_survivors:arithmetic:first + count -> first - count#0":
        "the count restored after a kept replay is recorded is read by no later step: the "
        "paths below a replayed call are its own (a replay is its module's first call and "
        "each recording sets the counts of its own paths first), and after the forward "
        "nothing else numbers calls",
    "replay:record_survivors:drop:chain.reverse() -> pass#0":
        "while a kept replay is recorded only the top of the stack (the call it pushes on "
        "it) and the stack's length are read; the order of its ancestors below is not",
    "builder:GraphBuilder.replayed_at:constant:0 -> (1)#0":
        "it only differs for a dot at index 0, and a module path never starts with one",
    "builder:GraphBuilder.register_source:constant:-1 -> (0)#0":
        "its one caller, record_input, runs before the forward, while the stack holds only "
        "the root",
    "builder:GraphBuilder._unknown_tensor:constant:-1 -> (0)#0":
        "where the search for a tensor's name starts is a shortcut: a tensor held by one "
        "module has one name wherever it starts (those held by several are looked up by id "
        "first), and from the root it covers the whole tree",
    "builder:GraphBuilder._unknown_tensor:constant:\"constant\" -> 'constant_x'#3":
        "a constant's name is always \"constant\" (tensor_name names only parameters and "
        "buffers), whose last dotted part is itself",
    "builder:GraphBuilder._unknown_tensor:compare:kind != \"constant\" -> "
    "kind == \"constant\"#2":
        "register has already marked the tensor with its id (or keyed it by object id if "
        "it takes no attribute), so the next read finds it either way",
    "model_index:ModelIndex.__init__:constant:-1 -> (0)#0":
        "the place of the last module found starts beside a fresh object() that no module "
        "is: the place is never read",
    "model_index:ModelIndex.add_module:constant:False -> True#0":
        "a module inside the added one at two paths keeps its first either way (setdefault): "
        "leaving the second out of the walk changes nothing",
    "widening:run_widened:swap:zip(outputs, expected, strict=True) -> "
    "zip(expected, outputs, strict=True)#0":
        "the pairs are compared with != only, which does not care about the order",
    "widening:run_widened:constant:True -> False#0":
        "the shapes are compared only when the numbers of outputs are equal (the `or` before "
        "stops at a difference), so zip's strict check never fires",
    "widening:run_widened:constant:True -> False#1":
        "the outputs and the expected tensors are of the same number (checked just before)",
    "backward:_gradient_into:constant:\"AccumulateGrad\" -> 'AccumulateGrad_x'#0":
        "an AccumulateGrad node's one input metadata is its leaf's shape and dtype: the "
        "general branch reads the same gradient shape",
    "backward:_gradient_into:compare:input_nr < len(metadata) -> input_nr <= len(metadata)#0":
        "unreachable: an edge's input_nr is the number autograd gave that input of its node "
        "when the forward made the output (Node::add_input_metadata returns the list's size, "
        "then appends), so it is always below len(_input_metadata); the fallback is kept for "
        "a node a later torch builds otherwise",
    "backward:_Charges.__init__:drop:super().__init__() -> pass#0":
        "TorchDispatchMode sets up its state lazily on __enter__ when __init__ was not called "
        "(its one other field, _dispatch_key, is set only when given)",
    "backward:_Builder._forward_node:call:max(1, len(fn._input_metadata)) -> "
    "min(1, len(fn._input_metadata))#0":
        "the recorder registers every tensor an op returns and the watcher notes each with "
        "its autograd node and output number, so an autograd node's output 0 is always "
        "found first: looking further only matters for outputs never recorded",
    "known_values:<module>:constant:\"_model_trace_known\" -> '_model_trace_known_x'#0":
        "the attribute's name only has to be one no tensor has; every reader and writer uses "
        "the constant",
    "known_values:attach:swap:contextlib.suppress(AttributeError, RuntimeError) -> "
    "contextlib.suppress(RuntimeError, AttributeError)#0":
        "suppress() catches any of its exceptions whatever their order",
    "flops:_on_meta:negate:tensor.is_meta -> not (tensor.is_meta)#0":
        "a decomposition's FLOPs depend on shapes alone: running it on the real tensors "
        "instead of meta copies only does the arithmetic too",
    "stats:_parameter_sizes.size_of:boolean:param is None and root is not None -> "
    "param is None or root is not None#0":
        "the extra lookups change nothing: with no root, None.get_parameter raises the "
        "AttributeError that is suppressed; with a root, a module of the graph at path P is "
        "the module root.get_submodule(P) finds (the index names a module by its first "
        "path), and a module outside the tree has a path no module of root has "
        "(ModelIndex.name), so get_parameter finds the same parameter or raises",
    "meta_cache:_key:constant:-1 -> (-2)#2":
        "its callers only ask whether the count is below 0",
    "widening:run_widened:constant:False -> True#0":
        "out= holds one tensor per output, and the widened run returned as many outputs as "
        "the meta kernel (checked above): zip's strict check never fires",
    "layout_js:layoutGroup:drop:maxU = 0 -> #0":
        "minU stays infinite only in a group with no nodes; only open groups are laid out and "
        "a group opens only with children (isOpenable), so every layout has a kid's node",
    "layout_js:Scene.visible:compare:< -> <=#0":
        "the root is item 0 (items are listed in pre-order) and the only item whose parent is "
        "0 or less besides it are its children: with the root open both branches answer the "
        "child itself; with it closed nothing but the root box is laid out",
    "layout_js:route:arithmetic:- -> +#0":
        "the two extra first steps read past the end of down: they add a port and links to a "
        "group keyed undefined, which no open group's layout reads",
    "layout_js:layoutGroup:constant:1 -> 2#2":
        "the last node of a topological order has no outgoing edge (back links are reversed, "
        "so the edges form a DAG): the loop that moves sources down skips it anyway",
    "layout_js:align:compare:< -> <=#0":
        "the extra fourth candidate is undefined, and it is only tried when the three real "
        "ones failed, that is when some dummy of the run has a neighbour in the way: every "
        "comparison with undefined is false, so it fails too and the run stays as it was",
    "layout_js:straighten:constant:1 -> 0#0":
        "chain[0] is the link's own source (a box, port or label), never a dummy: starting at "
        "it only empties a run of dummies that is still empty",
    "layout_js:closeUp:compare:> -> >=#0":
        "with no slack the move is by 0 px: the same positions",
    "render_js:decorate:constant:1 -> 2#1":
        "the scale when no box has a value: overlay values are never negative, so every box "
        "then has 0, and log1p(0) / 1 = log1p(0) / 2 = 0",
    "render_js:group:constant:8 -> 9#0":
        "a closed box is its label's width plus 2 * padX (20 px) wide at least (2-layout.js), "
        "so a bar never reaches the room w - 8 or w - 9: it is as wide as the text",
    "render_js:initialState:constant:1 -> 2#0":
        "no selection: every reader of ViewState.selected asks selected >= 0, so -2 and -1 "
        "mean the same",
    "render_js:edge:constant:0 -> 1#1":
        "key 0 is never a weight's: view_tree._flows lists a graph's edges before the weights "
        "read from outside, and a graph that reads a weight has an edge (into its output), so "
        "keys[0] >= 1 and >= 0 tell the same edges dashed",
    "marks_js:shownMarks:swap:false -> true#0":
        "an entry's held flag is read only beside a colour (markSVG), and the one branch that "
        "gives an entry its colour sets its held flag too",
    "marks_js:shownMarks:drop:placed.marks = shown -> #0":
        "a cache: without it each item's call works out the same marks again from the same "
        "model and placed state",
    "render_html:<module>:constant:True -> False#1":
        "select_autoescape's choice for templates made from a string: the one template here "
        "is loaded by name (figure.html.j2), whose escaping `default` decides",
    "render_html:<module>:constant:True -> False#2":
        "trim_blocks only drops the newline after each block tag: without it the figure gains "
        "blank lines between its <p>, <ol> and <figcaption>, whitespace HTML does not render "
        "and no script reads (the viewer finds the figure's parts by class); every front end "
        "hands the figure on as raw HTML (SuperFences' stash, Sphinx's raw node, a notebook's "
        "_repr_html_), never through Markdown's block parser",
    "render_html:ViewOptions.draw_options:constant:\"light\" -> 'light_x'#0":
        "the engine draws every theme but \"dark\" in the light palette (drawFigure, "
        "3-render.js)",
    "render_html:FigureData:constant:True -> False#0":
        "frozen only forbids assigning to a FigureData's fields, which no code does; none is "
        "ever hashed (its ViewTree is unhashable either way)",
    "render_html:<module>:constant:\"model-trace\" -> 'model-trace_x'#0":
        "export_svg's default prefix only names the exported file's own marker and gradient "
        "ids, which its own references use: any name draws the same file (callers that put "
        "several drawings in one file pass prefixes of their own)",
    "op_runner:OpRunner.__init__:constant:0 -> (1)#0":
        "run() sets flops to 0 before it runs an op, and nothing reads them before a run",
    "op_runner:OpRunner.run:constant:False -> True#0":
        "every way values.run hands back new tensors runs call() first (which sets "
        "from_cache itself); the others hand back the op's input as it is (a meta tensor's "
        "device move), and the recorder asks from_cache only about new outputs",
    "op_runner:OpRunner.__init__:constant:False -> True#0":
        "run() sets from_cache to False before it runs an op, and nothing reads it before a "
        "run",
    "op_info:OpInfo.of:constant:\"gather\" -> 'gather_x'#0":
        "no op of the gather role writes in place (no such row of the table ends in '_'), so "
        "none is left out of the in-place cache by it",
    "op_info:op_name:unary:-2 -> (2)#0":
        "every property getter torch hands a mode is a tensor's, named "
        "torch.Tensor.<name>.__get__: its third part is its second from the end",
    "api:_on_meta:swap:itertools.chain(model.parameters(), model.buffers()) -> "
    "itertools.chain(model.buffers(), model.parameters())#0":
        "whether any weight is on meta does not depend on the order they are looked at in "
        "(parameters first only stops sooner for a model built on meta)",
    "api:_trace:drop:recorder.release(()) -> pass#0":
        "on a failure no tensor is handed back: release then only lets go of the recorder's "
        "tables sooner (memory); the partial graph is already built",
    "op_runner:AtenRecording.__init__:drop:super().__init__() -> pass#0":
        "TorchDispatchMode sets up its state lazily on __enter__ when __init__ was not called",
    "structures:_rebuild:constant:True -> False#0":
        "zip's strict check: the parts are made from the dictionary's values, one for one",
    "structures:_rebuild:constant:True -> False#1":
        "zip's strict check: the parts are made from the dataclass's fields, one for one",
    "structures:named_tensors:constant:True -> False#0":
        "zip's strict check: a named tuple has one item per field",
    "view_data:<module>:constant:2 -> (3)#0":
        "VERSION is only written, for other readers of a page's data: the viewer and "
        "decode_graph read the columns and never the number, so no behaviour changes; "
        "raising it is a format decision a test could only copy",
    "view_data:_encode_view_part:constant:-1 -> (-2)#0":
        "every reader of the items' parents (the viewer's state, layout and interaction "
        "code, decode_graph for modules) tests `>= 0`: any negative number marks the root",
    "view_data:_encode_tensors:negate:e := _extra(t, _KNOWN_TENSOR) -> "
    "not (e := _extra(t, _KNOWN_TENSOR))#0":
        "Tensor has no field the encoder does not know, so every tensor's extra is empty: "
        "kept or not, the decoder adds nothing",
}

DEFAULT_SAMPLE = 100
"""Mutants per module by default (60 for the tracer's later modules and the JavaScript, 30 for
its smaller helpers, see ``Target.sample``). A module takes seconds to six minutes. All 39
targets (2,086 mutants) took 35 minutes with ``--jobs 2`` on an otherwise idle two-core
machine (3,084 s of CPU time, 1.5 cores busy on average), on 2026-12-02. Run it from a
checkout that does not change meanwhile (the tests are read from it as each mutant runs);
while working, name the modules you changed, and after adding tests rerun only the survivors
(``--killed-before``)."""

PREIMPORTS = ("torch", "numpy", "yaml", "hypothesis", "jinja2", "markdown",
              "mkdocs.commands.build", "mkdocs.config", "cairosvg", "trio", "triton",
              "pytest_benchmark.plugin", "transformers.models.gpt2.modeling_gpt2")
"""Imported once by the parent so that forked children start warm (nothing of ours): what
the tests' modules and fixtures import (GPT-2 alone takes seconds), where installed."""


@dataclass(frozen=True)
class Mutant:
    """One change to one module: the text span replaced and what replaces it."""

    target: str
    operator: str
    function: str
    """Qualified name of the enclosing function or class ("<module>" outside any)."""
    at_import: bool
    """Runs when the module is imported (outside any function body)."""
    line: int
    end_line: int
    start: int
    """Character offsets into the source."""
    end: int
    original: str
    replacement: str
    occurrence: int = 0
    """How many mutants before this one share its function, operator and text."""
    block: int = -1
    """JavaScript: the innermost block of statements it lies in (``js_mutants.block_finder``),
    which the baseline maps to the tests that run it (-1: outside every block)."""

    @property
    def name(self) -> str:
        """Stable across unrelated edits: no line numbers."""
        return (f"{self.target}:{self.function}:{self.operator}:{self.change}"
                f"#{self.occurrence}")

    @property
    def change(self) -> str:
        return f"{_one_line(self.original)} -> {_one_line(self.replacement)}"

    def apply(self, source: str) -> str:
        return source[:self.start] + self.replacement + source[self.end:]


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- making mutants ------------------------------------------------------------------------
_COMPARE_SWAP: dict[type, tuple[str, str]] = {
    ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
    ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="), ast.In: ("in", "not in"),
    ast.NotIn: ("not in", "in"), ast.Is: ("is", "is not"), ast.IsNot: ("is not", "is"),
}
_COMPARE_PATTERNS = {"<": r"<(?!=)", "<=": "<=", ">": r">(?!=)", ">=": ">=", "==": "==",
                     "!=": "!=", "in": r"\bin\b", "not in": r"\bnot\s+in\b",
                     "is": r"\bis\b(?!\s+not\b)", "is not": r"\bis\s+not\b"}
_BINARY_SWAP: dict[type, tuple[str, str]] = {
    ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "+"), ast.Div: ("/", "*"),
    ast.FloorDiv: ("//", "*"), ast.Mod: ("%", "//"), ast.BitAnd: ("&", "|"),
    ast.BitOr: ("|", "&"),
}
_CALL_SWAP = {"min": "max", "max": "min", "any": "all", "all": "any"}
_DROPPED_CALLS = {"sorted": "list", "reversed": "list"}
_ORDERLESS_CALLS = frozenset({"isinstance", "issubclass", "getattr", "setattr", "hasattr",
                              "max", "min"})
"""Builtins whose swapped arguments only raise TypeError (or, for max and min of two, give
the same answer): not worth a mutant."""
_NAME_LIKE = re.compile(r"^[A-Za-z_#.:][A-Za-z0-9_.:#/-]{0,30}$")


class _Positions:
    """Character offsets of (line, UTF-8 column) positions, as ``ast`` reports them."""

    def __init__(self, source: str) -> None:
        self.lines = source.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, line: int, column: int) -> int:
        text = self.lines[line - 1].encode("utf-8")[:column].decode("utf-8")
        return self.starts[line - 1] + len(text)

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (self.offset(node.lineno, node.col_offset),  # type: ignore[attr-defined]
                self.offset(node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]


class _MutantFinder(ast.NodeVisitor):
    """Walks a module and collects mutants, skipping docstrings, annotations and f-strings."""

    def __init__(self, target: str, source: str) -> None:
        self.target = target
        self.source = source
        self.positions = _Positions(source)
        self.scope: list[str] = []
        self.in_function = 0
        self.found: list[Mutant] = []

    # -- recording -----------------------------------------------------------------------
    def add(self, operator: str, node: ast.AST, start: int, end: int, replacement: str) -> None:
        original = self.source[start:end]
        # keep the line count, so every other line keeps its number
        extra = original.count("\n") - replacement.count("\n")
        if extra > 0:
            replacement = (f"({replacement}{chr(10) * extra})" if operator != "drop"
                           else replacement + "\n" * extra)
        self.found.append(Mutant(
            target=self.target, operator=operator,
            function=".".join(self.scope) or "<module>", at_import=not self.in_function,
            line=node.lineno, end_line=node.end_lineno,  # type: ignore[attr-defined]
            start=start, end=end, original=original, replacement=replacement))

    def segment(self, node: ast.AST) -> str:
        start, end = self.positions.span(node)
        return self.source[start:end]

    def replace_between(self, operator: str, node: ast.AST, left: ast.AST, right: ast.AST,
                        pattern: str, new: str) -> None:
        """Swap an operator token that sits between two operands."""
        _, gap_start = self.positions.span(left)
        gap_end, _ = self.positions.span(right)
        gap = self.source[gap_start:gap_end]
        changed, count = re.subn(pattern, new, gap, count=1)
        if count:
            start, end = self.positions.span(node)
            text = self.source[start:gap_start] + changed + self.source[gap_end:end]
            self.add(operator, node, start, end, text)

    # -- scopes and what is never mutated --------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self.scope.append(node.name)
        self.in_function += 1
        self.visit_body(node.body)
        self.in_function -= 1
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.visit_body(node.body)
        self.scope.pop()

    def visit_Module(self, node: ast.Module) -> None:
        self.visit_body(node.body)

    def visit_body(self, body: list[ast.stmt]) -> None:
        for statement in body:
            if _is_docstring(statement) or isinstance(statement, ast.ImportFrom | ast.Import):
                continue
            self.visit(statement)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_arguments(self, node: ast.arguments) -> None:
        pass  # annotations and defaults are handled by visit_FunctionDef

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        pass  # f-string positions are not reliable before Python 3.12

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.value, ast.Name) and node.value.id == "Literal":
            return  # a type: its strings change nothing at run time
        self.generic_visit(node)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            return
        self.negate(node.test)
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self.negate(node.test)
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self.negate(node.test)
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        for condition in node.ifs:
            self.negate(condition)
        self.generic_visit(node)

    def negate(self, test: ast.expr) -> None:
        if (isinstance(test, ast.Compare) and len(test.ops) == 1
                and not isinstance(test.ops[0], ast.Lt | ast.LtE | ast.Gt | ast.GtE)):
            return  # flipping its operator is the same mutant
        start, end = self.positions.span(test)
        self.add("negate", test, start, end, f"not ({self.source[start:end]})")

    # -- expressions -----------------------------------------------------------------------
    def visit_Compare(self, node: ast.Compare) -> None:
        operands = [node.left, *node.comparators]
        for index, op in enumerate(node.ops):
            swap = _COMPARE_SWAP.get(type(op))
            if swap is None:
                continue
            old, new = swap
            self.replace_between("compare", node, operands[index], operands[index + 1],
                                 _COMPARE_PATTERNS[old], new)
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        swap = _BINARY_SWAP.get(type(node.op))
        if swap is not None:
            old, new = swap
            self.replace_between("arithmetic", node, node.left, node.right,
                                 re.escape(old) + r"(?![=/*])", new)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        swap = _BINARY_SWAP.get(type(node.op))
        if swap is not None:
            old, new = swap
            self.replace_between("arithmetic", node, node.target, node.value,
                                 re.escape(old + "="), new + "=")
        self.drop(node)
        self.visit(node.value)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        self.replace_between("boolean", node, node.values[0], node.values[1],
                             rf"\b{old}\b", new)
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not | ast.USub):
            start, end = self.positions.span(node)
            self.add("unary", node, start, end, f"({self.segment(node.operand)})")
        if not (isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)):
            self.generic_visit(node)
        else:
            self.constant(node.operand, negative=True, whole=node)

    def visit_Constant(self, node: ast.Constant) -> None:
        self.constant(node)

    def constant(self, node: ast.Constant, negative: bool = False,
                 whole: ast.AST | None = None) -> None:
        value = node.value
        start, end = self.positions.span(whole or node)
        if isinstance(value, bool):
            self.add("constant", node, start, end, str(not value))
        elif isinstance(value, int):
            number = -value if negative else value
            self.add("constant", node, start, end, f"({number + 1})")
            if number != 0:
                self.add("constant", node, start, end, f"({number - 1})")
        elif isinstance(value, str) and _NAME_LIKE.match(value):
            self.add("constant", node, start, end, repr(value + "_x"))

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        if isinstance(function, ast.Name):
            start, end = self.positions.span(node)
            if function.id in _CALL_SWAP:
                fstart, fend = self.positions.span(function)
                self.add("call", node, start, end, self.source[start:fstart]
                         + _CALL_SWAP[function.id] + self.source[fend:end])
            if function.id in _DROPPED_CALLS and node.args:
                self.add("call", node, start, end,
                         f"{_DROPPED_CALLS[function.id]}({self.segment(node.args[0])})")
        positional = node.args
        if (len(positional) >= 2 and _callee(node) not in _ORDERLESS_CALLS
                and not any(isinstance(a, ast.Starred) for a in positional[:2])
                and self.segment(positional[0]) != self.segment(positional[1])):
            first, second = positional[0], positional[1]
            start, end = self.positions.span(node)
            a_start, a_end = self.positions.span(first)
            b_start, b_end = self.positions.span(second)
            text = (self.source[start:a_start] + self.source[b_start:b_end]
                    + self.source[a_end:b_start] + self.source[a_start:a_end]
                    + self.source[b_end:end])
            self.add("swap", node, start, end, text)
        self.generic_visit(node)

    # -- statements ------------------------------------------------------------------------
    def drop(self, node: ast.stmt) -> None:
        if not self.in_function:
            return
        start, end = self.positions.span(node)
        self.add("drop", node, start, end, "pass")

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Call):
            self.drop(node)
        self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        self.drop(node)
        # the exception's arguments are messages: not mutated

    def visit_Continue(self, node: ast.Continue) -> None:
        start, end = self.positions.span(node)
        self.add("flow", node, start, end, "break")

    def visit_Break(self, node: ast.Break) -> None:
        start, end = self.positions.span(node)
        self.add("flow", node, start, end, "continue")


def _callee(node: ast.Call) -> str:
    function = node.func
    return function.id if isinstance(function, ast.Name) else ""


def _is_docstring(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str))


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def find_mutants(target: str, source: str) -> list[Mutant]:
    """Every mutant of a Python module, in source order, each with its occurrence number."""
    finder = _MutantFinder(target, source)
    finder.visit(ast.parse(source))
    return [m for m in _numbered(finder.found, source) if _compiles(m.apply(source))]


def find_js_mutants(target: str, source: str) -> list[Mutant]:
    """Every mutant of a JavaScript file that V8 parses. Tests map to its blocks of
    statements (``js_mutants.instrument``): a mutant outside every block (``at_import``) runs
    every test of its target."""
    changes = js_mutants.find_js_changes(source)
    block_at = js_mutants.block_finder(source)
    starts = [0, *(i + 1 for i, c in enumerate(source) if c == "\n")]

    def line(offset: int) -> int:
        return bisect.bisect_right(starts, offset)

    found = [Mutant(target=target, operator=c.operator, function=c.function,
                    at_import=block_at(c.start) < 0, line=line(c.start), end_line=line(c.end),
                    start=c.start, end=c.end, original=source[c.start:c.end],
                    replacement=c.replacement, block=block_at(c.start))
             for c in changes]
    numbered = _numbered(found, source)
    parsed = js_mutants.parses(source, [js_mutants.JsChange(m.operator, m.function, m.start,
                                                            m.end, m.replacement)
                                        for m in numbered])
    return [m for m, ok in zip(numbered, parsed, strict=True) if ok]


def _numbered(found: list[Mutant], source: str) -> list[Mutant]:
    """The mutants in source order with their occurrence numbers, one per distinct text."""
    seen: dict[tuple[str, str, str], int] = {}
    numbered = []
    for mutant in sorted(found, key=lambda m: (m.start, m.end, m.operator, m.replacement)):
        key = (mutant.function, mutant.operator, mutant.change)
        numbered.append(dataclasses.replace(mutant, occurrence=seen.get(key, 0)))
        seen[key] = seen.get(key, 0) + 1
    unique: dict[str, Mutant] = {}
    for mutant in numbered:
        unique.setdefault(mutant.apply(source), mutant)  # two ways to the same text: one
    return [m for text, m in unique.items() if text != source]


def _compiles(source: str) -> bool:
    try:
        compile(source, "<mutant>", "exec")
    except SyntaxError:
        return False
    return True


def sample(mutants: list[Mutant], limit: int | None, seed: int) -> list[Mutant]:
    """The ``limit`` mutants with the smallest seeded hash of their names, in source order."""
    if limit is None or len(mutants) <= limit:
        return mutants

    def rank(mutant: Mutant) -> str:
        return hashlib.sha256(f"{seed}:{mutant.name}".encode()).hexdigest()

    kept = set(sorted(mutants, key=rank)[:limit])
    return [m for m in mutants if m in kept]


# -- running tests in forked children ------------------------------------------------------
Line = tuple[str, int]
"""A line of a traced file: (file name, line number); in a JavaScript file, the number of a
block of statements (``js_mutants.block_finder``)."""


class _FastOnly:
    """pytest plugin: deselects slow tests and records what each test runs: the lines of
    Python modules (``traced_files``), the blocks of a JavaScript file that the engine loads
    instrumented (``js_file``)."""

    def __init__(self, traced_files: frozenset[str] = frozenset(),
                 js_file: str | None = None) -> None:
        self.traced_files = traced_files
        self.js_file = js_file
        self.active: list[set[Line]] = []
        self.by_test: dict[str, set[Line]] = {}
        self.by_fixture: dict[str, set[Line]] = {}
        self.fixtures: dict[str, list[str]] = {}
        self.durations: dict[str, float] = {}
        self.failed: list[str] = []
        self.at_collection: set[Line] = set()
        """Lines run before the first test (conftest and test imports: tables that
        functions build at import, figures drawn at import)."""
        if traced_files or js_file:
            self.active.append(self.at_collection)
        if traced_files:
            sys.settrace(self._global_trace)

    def pytest_collection_modifyitems(self, config: Any, items: list[Any]) -> None:
        slow = [item for item in items
                if SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
                or any(item.get_closest_marker(m) for m in SLOW_MARKERS)]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if item not in slow]

    def _global_trace(self, frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename in self.traced_files and self.active:
            return self._line_trace
        return None

    def _line_trace(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            line = (frame.f_code.co_filename, frame.f_lineno)
            for lines in self.active:
                lines.add(line)
        return self._line_trace

    def _take_js_blocks(self) -> None:
        """Note the JavaScript blocks run since the last call in every active set (V8 runs
        synchronously inside the calls of the hooks, so what ran in between belongs to the
        sets active then)."""
        engine = sys.modules.get("model_trace.engine")
        if (self.js_file is None or engine is None or engine._ENGINE is None
                or os.getpid() != engine._ENGINE_PID):
            return
        blocks = [(self.js_file, int(b)) for b in engine._ENGINE.call(js_mutants.TAKE_CALLED)]
        for lines in self.active:
            lines.update(blocks)

    def _traced(self, lines: set[Line]) -> Iterator[Any]:
        """A hook wrapper body: ``lines`` collects what runs inside the wrapped hook."""
        self._take_js_blocks()
        self.active.append(lines)
        if self.traced_files:
            sys.settrace(self._global_trace)
        try:
            return (yield)
        finally:
            self._take_js_blocks()
            self.active = [other for other in self.active if other is not lines]

    def pytest_collection_finish(self, session: Any) -> None:
        self._take_js_blocks()
        self.active = [lines for lines in self.active if lines is not self.at_collection]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: Any, nextitem: Any) -> Iterator[Any]:
        self.fixtures[item.nodeid] = list(item.fixturenames)
        return (yield from self._traced(self.by_test.setdefault(item.nodeid, set())))

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: Any) -> Iterator[Any]:
        return (yield from self._traced(self.by_fixture.setdefault(fixturedef.argname, set())))

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        if report.failed:
            self.failed.append(report.nodeid)

    def lines_of(self, nodeid: str) -> set[Line]:
        lines = set(self.by_test.get(nodeid, ()))
        for name in self.fixtures.get(nodeid, ()):
            lines |= self.by_fixture.get(name, set())
        return lines


@dataclass
class Workspace:
    """A private copy of ``plugin/`` that mutants are written into, one per parallel job,
    with its own bytecode cache (children write one, so each run does not compile every
    test and module again; the mutated module's entry is removed whenever it changes)."""

    folder: Path
    pycache: Path

    @classmethod
    def create(cls, parent: Path, index: int) -> Workspace:
        folder = parent / f"job{index}" / "plugin"
        shutil.copytree(ROOT / "plugin", folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return cls(folder, parent / f"job{index}" / "pycache")

    def module_file(self, target: Target) -> Path:
        return self.folder / "model_trace" / target.path

    def write(self, target: Target, source: str) -> None:
        path = self.module_file(target)
        path.write_text(source, encoding="utf-8")
        compiled = self.pycache / path.parent.relative_to("/") / (
            f"{path.stem}.{sys.implementation.cache_tag}.pyc")
        compiled.unlink(missing_ok=True)


@dataclass
class Child:
    pid: int
    deadline: float
    started: float


def start_pytest(workspace: Workspace, args: list[str], log: Path, timeout: float,
                 result_file: Path | None = None,
                 traced_files: frozenset[str] = frozenset(),
                 instrumented_js: tuple[str, str, str] | None = None) -> Child:
    """Fork a child running ``pytest args`` on the workspace's package. ``traced_files``:
    Python modules whose lines each test runs are noted; ``instrumented_js``: a JavaScript
    file's name, text and ``js_mutants.instrument``-ed text, which the engine's V8 loads
    instead, so that the blocks each test runs are noted."""
    started = time.monotonic()
    pid = os.fork()
    if pid:
        return Child(pid, started + timeout, started)
    code = 3
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.setpgid(0, 0)
        descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(descriptor, 1)
        os.dup2(descriptor, 2)
        os.chdir(ROOT)
        sys.path[:0] = [str(workspace.folder), str(ROOT)]
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(workspace.folder), str(ROOT), os.environ.get("PYTHONPATH", "")])
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # subprocesses always read the source
        sys.pycache_prefix = str(workspace.pycache)
        sys.dont_write_bytecode = False
        import hypothesis

        hypothesis.settings.register_profile("mutation", database=None, derandomize=True)
        hypothesis.settings.load_profile("mutation")
        plugin = _FastOnly(traced_files, instrumented_js[0] if instrumented_js else None)
        if instrumented_js is not None:
            _load_instrumented(*instrumented_js, at_load=plugin.at_collection)
        code = int(pytest.main(["-q", "-p", "no:cacheprovider", "--no-header",
                                "-W", "ignore::pytest.PytestAssertRewriteWarning", *args],
                               plugins=[plugin]))
        if result_file is not None:
            tests = sorted(plugin.durations)
            result_file.write_text(json.dumps({
                "code": code, "failed": plugin.failed,
                "at_collection": _by_file(plugin.at_collection),
                "tests": {t: {"duration": plugin.durations[t],
                              "lines": _by_file(plugin.lines_of(t))} for t in tests},
            }))
    except BaseException as error:  # the child must never return into the parent's loop
        print(f"mutation child failed: {error!r}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _load_instrumented(file: str, plain: str, instrumented: str, at_load: set[Line]) -> None:
    """Make every V8 context of this process evaluate ``instrumented`` where it is asked to
    evaluate ``plain`` (the engine loads its scripts with ``MiniRacer.eval``), and note in
    ``at_load`` the blocks that run while the engine loads its scripts (tables built at load,
    such as the palettes: every test depends on them, whichever loaded the engine)."""
    from py_mini_racer import MiniRacer

    from model_trace import engine

    evaluate, load = MiniRacer.eval, engine._Engine.__init__

    def swapped(self: MiniRacer, code: str, *args: Any, **kwargs: Any) -> Any:
        return evaluate(self, instrumented if code == plain else code, *args, **kwargs)

    def load_noting(self: Any) -> None:
        load(self)
        at_load.update((file, int(b)) for b in self.call(js_mutants.TAKE_CALLED))

    MiniRacer.eval = swapped  # type: ignore[method-assign]
    engine._Engine.__init__ = load_noting  # type: ignore[method-assign]


def _by_file(lines: set[Line]) -> dict[str, list[int]]:
    by_file: dict[str, list[int]] = {}
    for file, number in sorted(lines):
        by_file.setdefault(file, []).append(number)
    return by_file


MEMORY_CAP = 6 << 30
"""Resident bytes a child may hold: past them it is stopped as if past its deadline. A mutant
can make a structure grow without end (one child of a whole-core run reached 16 GB), and two
such children at once must not take a 24 GB machine's memory from everything else on it."""
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _resident_bytes(pid: int) -> int:
    """A process's resident set size (0 where /proc cannot tell)."""
    with contextlib.suppress(OSError, ValueError, IndexError), \
            open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE
    return 0


def finished(child: Child) -> int | None:
    """The child's exit status once it ended (killed past its deadline or its memory cap:
    -1), else None."""
    pid, status = os.waitpid(child.pid, os.WNOHANG)
    if pid:
        return os.waitstatus_to_exitcode(status)
    if time.monotonic() > child.deadline or _resident_bytes(child.pid) > MEMORY_CAP:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        os.waitpid(child.pid, 0)
        return -1
    return None


def wait(child: Child) -> int:
    while True:
        status = finished(child)
        if status is not None:
            return status
        time.sleep(0.05)


# -- one module ----------------------------------------------------------------------------
@dataclass
class Baseline:
    """What the mapped fast tests run, and how long each takes, on the unmutated module."""

    durations: dict[str, float]
    lines: dict[str, set[int]]
    failed: list[str]
    seconds: float
    at_collection: set[int] = field(default_factory=set)
    """Lines run when the tests are collected: every test depends on what they build."""
    shared_with: list[str] = field(default_factory=list)
    """The other targets whose lines the same run recorded (their tests are the same)."""


@dataclass
class Outcome:
    mutant: Mutant
    status: str
    """killed, timeout, survived or uncovered (no fast test runs the line)."""
    tests: int = 0
    seconds: float = 0.0
    equivalent: str = ""
    killer: str = ""
    """The test that failed (killed mutants)."""


@dataclass
class ModuleResult:
    name: str
    target: Target
    total_mutants: int
    outcomes: list[Outcome] = field(default_factory=list)
    baseline: Baseline | None = None
    seconds: float = 0.0

    def count(self, *statuses: str) -> int:
        return sum(1 for o in self.outcomes if o.status in statuses and not o.equivalent)

    @property
    def equivalent(self) -> int:
        return sum(1 for o in self.outcomes if o.equivalent)

    @property
    def score(self) -> float:
        scored = len(self.outcomes) - self.equivalent
        return self.count("killed", "timeout") / scored if scored else 1.0


def test_paths(target: Target) -> list[str]:
    paths: list[str] = []
    for pattern in target.tests:
        paths.extend(sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern)))
    return paths


def run_baselines(names: list[str], workspace: Workspace, scratch: Path
                  ) -> dict[str, Baseline]:
    """One baseline run of the tests the targets ``names`` share, recording the lines of
    each target's module: the tracer's modules share their tests, and a run of them all
    takes minutes. A JavaScript target runs alone, its blocks recorded instead of lines."""
    label = names[0] if len(names) == 1 else f"{names[0]}+{len(names) - 1}"
    result_file = scratch / f"{label}.baseline.json"
    log = scratch / f"{label}.baseline.log"
    files = {name: str(workspace.module_file(TARGETS[name])) for name in names}
    coverage: dict[str, Any] = {"traced_files": frozenset(files.values())}
    if TARGETS[names[0]].javascript:
        text = Path(files[names[0]]).read_text(encoding="utf-8")
        coverage = {"instrumented_js": (files[names[0]], text, js_mutants.instrument(text))}
    started = time.monotonic()
    child = start_pytest(workspace, test_paths(TARGETS[names[0]]), log, timeout=1800,
                         result_file=result_file, **coverage)
    wait(child)
    if not result_file.exists():
        raise SystemExit(f"{label}: the baseline run did not finish; see {log}")
    data = json.loads(result_file.read_text())
    if data["code"] not in (0, 1):  # 1: some tests fail; they are left out of every run
        raise SystemExit(f"{label}: pytest stopped with status {data['code']}; see {log}")
    seconds = time.monotonic() - started
    return {name: Baseline(durations={t: v["duration"] for t, v in data["tests"].items()},
                           lines={t: set(v["lines"].get(file, ())) for t, v in
                                  data["tests"].items()},
                           failed=data["failed"], seconds=seconds,
                           at_collection=set(data["at_collection"].get(file, ())),
                           shared_with=[n for n in names if n != name])
            for name, file in files.items()}


def tests_for(mutant: Mutant, baseline: Baseline, kills: dict[str, int]) -> list[str]:
    """The passing fast tests that run the mutated lines (in JavaScript, its block): those
    that killed the most of the module's mutants so far first, then the quickest."""
    span = ({mutant.block} if TARGETS[mutant.target].javascript
            else set(range(mutant.line, mutant.end_line + 1)))
    usable = [t for t in baseline.durations if t not in baseline.failed]
    if not mutant.at_import and not baseline.at_collection & span:
        usable = [t for t in usable if baseline.lines[t] & span]
    return sorted(usable, key=lambda t: (-kills.get(t, 0), baseline.durations[t], t))


def run_module(name: str, target: Target, source: str, mutants: list[Mutant], total: int,
               workspaces: list[Workspace], scratch: Path, verbose: bool,
               baselines: dict[str, Baseline], group: list[str]) -> ModuleResult:
    """Run the mutants of ``source`` (the module's text when they were made: a checkout that
    changes during a long run does not misplace them). ``baselines`` holds the baselines
    run so far; the first target of ``group`` (those of this run with the same tests) runs
    the group's, and its time counts as that target's."""
    result = ModuleResult(name, target, total)
    started = time.monotonic()
    if name not in baselines:
        workspaces[0].write(target, source)  # the text the mutants were made from
        baselines.update(run_baselines(group, workspaces[0], scratch))
        baseline = baselines[name]
        if verbose:
            shared = (f" (lines of {', '.join(baseline.shared_with)} recorded too)"
                      if baseline.shared_with else "")
            print(f"  {name}: baseline {len(baseline.durations)} fast tests in "
                  f"{baseline.seconds:.1f} s, {len(baseline.failed)} failing{shared}",
                  flush=True)
    baseline = result.baseline = baselines[name]
    pending = list(mutants)
    running: dict[int, tuple[Child, Mutant, Workspace, list[str]]] = {}
    free = list(workspaces)
    kills: dict[str, int] = {}
    """Mutants each test killed so far: a test that kills many runs first (``-x`` stops at
    the first failure), so a killed mutant usually costs one test."""
    try:
        while pending or running:
            while pending and free:
                mutant = pending.pop(0)
                tests = tests_for(mutant, baseline, kills)
                if not tests:
                    result.outcomes.append(Outcome(mutant, "uncovered"))
                    continue
                workspace = free.pop()
                workspace.write(target, mutant.apply(source))
                timeout = 20 + 3 * sum(baseline.durations[t] for t in tests)
                log = scratch / f"{name}.mutant.{workspaces.index(workspace)}.log"
                log.with_suffix(".json").unlink(missing_ok=True)
                child = start_pytest(workspace, ["-x", *tests], log, timeout,
                                     result_file=log.with_suffix(".json"))
                running[child.pid] = (child, mutant, workspace, tests)
            for pid, (child, mutant, workspace, tests) in list(running.items()):
                status = finished(child)
                if status is None:
                    continue
                del running[pid]
                workspace.write(target, source)
                free.append(workspace)
                verdict = ("timeout" if status == -1 else "survived" if status == 0
                           else "killed")
                killer = _first_failure(scratch / f"{name}.mutant."
                                        f"{workspaces.index(workspace)}.json")
                if verdict == "killed" and killer:
                    kills[killer] = kills.get(killer, 0) + 1
                result.outcomes.append(Outcome(mutant, verdict, len(tests),
                                               time.monotonic() - child.started,
                                               killer=killer))
                if verbose and verdict == "survived":
                    print(f"    survived {target.path}:{mutant.line} {mutant.change}",
                          flush=True)
            time.sleep(0.02)
    finally:
        for child, *_ in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
        for workspace in workspaces:
            workspace.write(target, source)
    for outcome in result.outcomes:
        if outcome.status in ("survived", "uncovered"):
            outcome.equivalent = EQUIVALENT.get(outcome.mutant.name, "")
    result.outcomes.sort(key=lambda o: (o.mutant.start, o.mutant.name))
    result.seconds = time.monotonic() - started
    return result


def _first_failure(result_file: Path) -> str:
    """The test that failed first in a child's run ("" if none, or if it wrote nothing)."""
    with contextlib.suppress(OSError, ValueError):
        failed = json.loads(result_file.read_text())["failed"]
        return failed[0] if failed else ""
    return ""


# -- report --------------------------------------------------------------------------------
def _summary_line(r: ModuleResult) -> str:
    sampled = f"{len(r.outcomes)}" + (f"/{r.total_mutants}"
                                     if r.total_mutants != len(r.outcomes) else "")
    return (f"{r.target.path:<24} {sampled:>7} {r.count('killed'):>6} "
            f"{r.count('timeout'):>7} {r.count('survived'):>8} {r.count('uncovered'):>9} "
            f"{r.equivalent:>6} {r.score:>6.0%} {r.seconds:>6.0f}s")


def report(results: list[ModuleResult], seconds: float, goal: float,
           cpu_seconds: float) -> str:
    lines = [f"{'module':<24} {'mutants':>7} {'killed':>6} {'timeout':>7} {'survived':>8} "
             f"{'uncovered':>9} {'equiv.':>6} {'score':>6} {'time':>7}"]
    lines += [_summary_line(r) for r in results]
    scored = sum(len(r.outcomes) - r.equivalent for r in results)
    killed = sum(r.count("killed", "timeout") for r in results)
    lines.append(f"{'all':<24} {sum(len(r.outcomes) for r in results):>7} "
                 f"{'':>6} {'':>7} {'':>8} {'':>9} {'':>6} "
                 f"{(killed / scored if scored else 1):>6.0%} {seconds:>6.0f}s")
    lines.append(f"CPU time of the run and its children: {cpu_seconds:.0f} s "
                 f"({cpu_seconds / max(seconds, 1e-9):.2f} cores busy on average; wall "
                 f"{seconds:.0f} s, load average {os.getloadavg()[0]:.1f} at the end)")
    below = [r.name for r in results if r.score < goal]
    lines.append(f"goal {goal:.0%} per module: " + ("met" if not below
                                                    else "missed by " + ", ".join(below)))
    for r in results:
        left = [o for o in r.outcomes if o.status in ("survived", "uncovered")]
        if not left:
            continue
        lines.append(f"\n{r.target.path}: {len(left)} not killed")
        for o in left:
            free = FREE_CHOICES.get(o.mutant.name)
            why = (f"  [equivalent: {o.equivalent}]" if o.equivalent
                   else f"  [a free choice: {free}]" if free
                   else "  [no fast test runs this line]" if o.status == "uncovered" else "")
            lines.append(f"  {PACKAGE}/{r.target.path}:{o.mutant.line} {o.mutant.function} "
                         f"{o.mutant.operator}: {o.mutant.change}{why}\n"
                         f"    {o.mutant.name}")
    return "\n".join(lines)


def _cpu_seconds() -> float:
    """User + system time of this process and of its children that have ended: the work a
    run needs, which, unlike its wall time, does not grow with other jobs on the machine."""
    own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                    resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"names from TARGETS: {', '.join(TARGETS)}")
    parser.add_argument("--sample", type=int,
                        help=f"at most this many mutants per module, chosen by --seed "
                             f"(default {DEFAULT_SAMPLE}, or the target's own; 0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once")
    parser.add_argument("--goal", type=float, default=0.8)
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--json", type=Path, help="also write every outcome here")
    parser.add_argument("--killed-before", type=Path, metavar="JSON",
                        help="a --json file of an earlier run: its killed mutants are taken "
                             "over, only the others run (after adding tests, not changing "
                             "the modules)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch folder (pytest logs of each run)")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)}; use {', '.join(TARGETS)}")
    names = args.modules or list(TARGETS)
    missing = [n for n in names if not (ROOT / PACKAGE / TARGETS[n].path).exists()]
    for name in missing:
        print(f"{TARGETS[name].path}: not in this checkout; skipped (update TARGETS)")
    names = [n for n in names if n not in missing]
    chosen: dict[str, tuple[list[Mutant], int]] = {}
    sources: dict[str, str] = {}
    for name in names:
        source = sources[name] = (ROOT / PACKAGE / TARGETS[name].path).read_text(
            encoding="utf-8")
        target = TARGETS[name]
        mutants = (find_js_mutants if target.javascript else find_mutants)(name, source)
        limit = (DEFAULT_SAMPLE if target.sample is None else target.sample) \
            if args.sample is None else args.sample
        chosen[name] = (sample(mutants, limit or None, args.seed), len(mutants))
    if args.list:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head
        for name, (mutants, total) in chosen.items():
            print(f"{TARGETS[name].path}: {len(mutants)} of {total} mutants")
            for m in mutants:
                print(f"  {m.line}: {m.name}")
        return 0
    before = _killed_before(args.killed_before) if args.killed_before else {}
    signal.signal(signal.SIGTERM, _stop)  # so the scratch folder and children are cleaned up
    for module in PREIMPORTS:
        with contextlib.suppress(ImportError):
            __import__(module)
    assert "model_trace" not in sys.modules, "the parent must not import the package"
    gc.freeze()  # children's collections skip what the parent made
    started = time.monotonic()
    results: list[ModuleResult] = []
    scratch = Path(tempfile.mkdtemp(prefix="mutation-"))
    try:
        workspaces = [Workspace.create(scratch, i) for i in range(max(1, args.jobs))]
        baselines: dict[str, Baseline] = {}
        for name in names:
            mutants, total = chosen[name]
            if not args.quiet:
                print(f"{TARGETS[name].path}: {len(mutants)} of {total} mutants", flush=True)
            carried = [Outcome(m, *before[m.name]) for m in mutants if m.name in before]
            group = [n for n in names if n not in baselines
                     and TARGETS[n].tests == TARGETS[name].tests
                     and not TARGETS[n].javascript]
            results.append(run_module(name, TARGETS[name], sources[name],
                                      [m for m in mutants if m.name not in before], total,
                                      workspaces, scratch, not args.quiet, baselines,
                                      group if not TARGETS[name].javascript else [name]))
            results[-1].outcomes = sorted([*carried, *results[-1].outcomes],
                                          key=lambda o: (o.mutant.start, o.mutant.name))
            if not args.quiet:
                print(f"  {_summary_line(results[-1])}", flush=True)
            if args.json:  # after every module: a stopped run keeps what it measured
                _write_json(args.json, results)
    finally:
        if args.keep:
            print(f"logs kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
        print(report(results, time.monotonic() - started, args.goal, _cpu_seconds()),
              flush=True)
    return 0


def _killed_before(path: Path) -> dict[str, tuple[str, int, float, str, str]]:
    """Mutant name -> (status, tests, seconds, "", killer) of the mutants an earlier run
    killed."""
    return {o["name"]: (o["status"], o["tests"], o["seconds"], "", o.get("killer", ""))
            for module in json.loads(path.read_text()) for o in module["outcomes"]
            if o["status"] in ("killed", "timeout")}


def _write_json(path: Path, results: list[ModuleResult]) -> None:
    path.write_text(json.dumps([
        {"module": r.target.path, "score": r.score, "seconds": r.seconds,
         "outcomes": [{"line": o.mutant.line, "function": o.mutant.function,
                       "operator": o.mutant.operator, "change": o.mutant.change,
                       "name": o.mutant.name,
                       "status": o.status, "equivalent": o.equivalent, "killer": o.killer,
                       "tests": o.tests, "seconds": round(o.seconds, 2)}
                      for o in r.outcomes]} for r in results], indent=1))


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # skips the teardown, where preimported native modules report leaks
