"""Meta traces with concrete integers: the same graph as a real run routed the same way, and
the rules that let data-dependent code run with float tensors that have no values."""

from __future__ import annotations

from typing import Any

import numpy
import pytest
import torch
from torch.overrides import TorchFunctionMode

from model_trace.caveats import assumption_messages
from model_trace.errors import TraceError
from model_trace.graph import Graph
from model_trace.tracing import trace
from model_trace.tracing.builder import REF_ATTRIBUTE
from model_trace.tracing.known_values import MAX_KNOWN_ELEMENTS

ROUTING = [1, 4, 6, 2]  # experts of groups 0 and 1: within the tiny gate's limit of 2


def _without_devices(graph: Graph) -> dict[str, Any]:
    data = graph.to_dict()
    for tensor in data["tensors"]:
        tensor.pop("device")
    data["meta"].pop("device")
    data["meta"]["options"].pop("force_routing")
    return data


class TensorsSeen(TorchFunctionMode):
    """Below the tracer's own mode: every tensor an op reads, by the trace id it has when the
    op runs (the id of the edge into that op), with the real tensor's shape."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: dict[str, list[int]] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        for value in [*args, *(kwargs or {}).values()]:
            for tensor in value if isinstance(value, list | tuple) else [value]:
                ref = getattr(tensor, REF_ATTRIBUTE, None)
                if isinstance(tensor, torch.Tensor) and ref is not None:
                    self.shapes.setdefault(ref[1], list(tensor.shape))
        return func(*args, **(kwargs or {}))


def test_a_meta_trace_equals_a_real_run_routed_the_same_way(build_tiny, tiny_tokens) -> None:
    real_model = build_tiny("cpu")
    seen = TensorsSeen()
    boundaries: dict[tuple[str, int], list[list[int]]] = {}
    calls: dict[str, int] = {}

    def capture(module: torch.nn.Module, args: Any, output: Any) -> None:
        path = names[module]
        index = calls[path] = calls.get(path, -1) + 1
        tensors = output if isinstance(output, tuple) else (output,)
        boundaries[(path, index)] = [list(t.shape) for t in tensors]

    names = {module: name for name, module in real_model.named_modules()}
    handles = [m.register_forward_hook(capture) for m in names]
    try:
        with seen:
            real = trace(real_model, tiny_tokens, routing=ROUTING, force_routing=True,
                         fold=False)
    finally:
        for handle in handles:
            handle.remove()
    meta = trace(build_tiny("meta"), tiny_tokens, routing=ROUTING, fold=False)

    assert real.meta["device"] == "cpu" and meta.meta["device"] == "meta"
    # the real run stays real: forcing the routing moves nothing to the meta device
    assert {t.device for t in real.tensors.values()} == {"cpu"}
    assert meta.meta["assumptions"] == real.meta["assumptions"] == []  # nothing guessed
    assert _without_devices(meta) == _without_devices(real)  # nodes, edges, shapes, stats

    # every shape in the graph is the real tensor's: at each module's output ...
    outputs = {(c.path, c.call_index): [real.tensors[t].shape for t in c.outputs]
               for c in real.modules.values() if c.called}
    assert outputs == boundaries
    # ... and on every edge into an op (the edges into the output node carry the logits)
    checked = 0
    for edge in real.edges:
        if real.nodes[edge.dst].kind == "output":
            assert real.tensors[edge.tensor].shape == [2, 256]
            continue
        if edge.tensor in seen.shapes:
            assert real.tensors[edge.tensor].shape == seen.shapes[edge.tensor]
            checked += 1
        else:  # a buffer at its first read gets its id only then
            assert real.nodes[edge.src].kind in ("buffer", "constant", "input")
    assert checked > 0.9 * len(real.edges)


def test_routing_decides_the_rows_each_expert_runs_on(build_tiny, tiny_tokens) -> None:
    graph = trace(build_tiny(), tiny_tokens.to("meta"), routing=ROUTING, fold=False)
    experts = [m for m in graph.modules.values() if ".experts." in m.path and m.cls == "Expert"]
    called = {m.path: graph.tensors[m.inputs[0]].shape for m in experts if m.called}
    assert called == {f"layers.{layer}.ffn.experts.{i}": [16, 128] for layer in (1, 2)
                      for i in ROUTING}  # every one of the 2 x 8 tokens
    assert sum(1 for m in experts if not m.called) == 2 * (16 - len(ROUTING))
    # the token ids had no values: taken as zeros, a note on the input (no branch read them)
    (tokens,) = graph.meta["assumptions"]
    assert (tokens["kind"], tokens["op"], tokens["warning"]) == ("input", "tokens", False)
    assert [n.assumed for n in graph.nodes.values() if n.assumed] == ["input"]


class Branchy(torch.nn.Module):
    """Data-dependent code of every kind the rules cover."""

    def __init__(self) -> None:
        super().__init__()
        self.scores = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        index = self.scores(x).argmax(-1)  # (N,): from the routing policy
        counts = torch.bincount(index, minlength=4).tolist()
        picked = x[torch.where(index == counts.index(max(counts)))]  # rows of one choice
        positive = (x > 0).all()  # booleans made from float values: unknowable
        buffer = torch.zeros(1024, 1024)  # would be a real 4 MB buffer
        steps = torch.arange(x.shape[0]).to(x.device)
        return picked, positive, buffer, steps, torch.ones_like(index)


def test_integer_results_are_concrete_and_floats_stay_on_meta() -> None:
    with torch.device("meta"):
        model, x = Branchy(), torch.empty(6, 8)
    graph = trace(model, x, routing="first")
    outputs = {n.name: graph.tensors[n.inputs[0]] for n in graph.nodes.values()
               if n.kind == "output"}
    assert outputs["output[0]"].shape == [6, 8]  # "first": every row chose 0
    assert outputs["output[1]"].device == "cpu" and outputs["output[1]"].dtype == "bool"
    assert outputs["output[2]"].device == "meta"  # the factory made no real memory
    assert outputs["output[3]"].device == "cpu"  # .to(meta) of integers stays concrete
    assert outputs["output[4]"].device == "cpu"  # ones_like of indices: computed, not guessed
    assert graph.meta["routing"] == {"policy": "first", "decisions": 1}
    # x > 0 of meta floats: assumed zeros, marked, but no warning (no branch read them)
    (assumed,) = graph.meta["assumptions"]
    assert (assumed["kind"], assumed["op"], assumed["warning"]) == ("zeros", "gt", False)
    assert assumed["code"].startswith("positive = (x > 0).all()")
    (gt,) = (n for n in graph.nodes.values() if n.assumed)
    assert (gt.name, gt.assumed) == ("gt", "zeros")


def test_integer_ops_without_a_cpu_kernel_for_their_dtype_run_widened() -> None:
    """transformers sorts tokens by expert with histc on int32 when its hidden states are
    not on the CPU; the CPU kernels lack that (and topk on bool, floor division on uint16)."""

    seen: dict[str, Any] = {}  # what the model's own code got

    def grouped(x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        seen["histc"] = torch.histc(experts.int(), bins=4, min=0, max=3)
        seen["topk"] = (experts == 2).topk(2, dim=0)
        seen["floordiv"] = experts.to(torch.uint16) // 2
        return x * 2

    experts = torch.tensor([0, 2, 2, 3, 1, 2])
    missing = (lambda: torch.histc(experts.int(), bins=4), lambda: (experts == 2).topk(2),
               lambda: experts.to(torch.uint16) // 2)
    for run_on_cpu in missing:  # the premise: the CPU kernels lack these dtypes
        with pytest.raises((RuntimeError, NotImplementedError), match=r"not .*for|not support"):
            run_on_cpu()
    graph = trace(grouped, torch.empty(6, 8, device="meta"), experts)
    assert seen["histc"].tolist() == [1, 1, 3, 1] and seen["histc"].dtype == torch.int32
    assert seen["topk"].values.tolist() == [True, True]
    assert seen["topk"].values.dtype == torch.bool and seen["topk"].indices.dtype == torch.int64
    assert seen["floordiv"].tolist() == [0, 1, 1, 1, 0, 1]
    assert seen["floordiv"].dtype == torch.uint16
    assert graph.meta["assumptions"] == []  # computed, not assumed


def test_a_widened_op_that_fails_for_another_reason_names_that_reason() -> None:
    """``uint16 // 0``: the CPU lacks the uint16 kernel, and on int64 the division by zero
    is the model's own error, reported as it is (not retried, not hidden)."""

    def divide(x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        experts.to(torch.uint16) // torch.zeros(len(experts), dtype=torch.uint16)
        return x * 2

    with pytest.raises(TraceError,
                       match=r"at op 'floordiv' at .*`: RuntimeError: ZeroDivisionError$"):
        trace(divide, torch.empty(6, 8, device="meta"), torch.tensor([0, 2, 2, 3, 1, 2]))


def test_an_op_with_no_kernel_at_all_is_assumed_and_marked() -> None:
    library = torch.library.Library("model_trace_nokernel", "DEF")
    library.define("bucket(Tensor x) -> Tensor")
    library.impl("bucket", lambda x: torch.empty_like(x), "Meta")  # no CPU kernel
    op = torch.ops.model_trace_nokernel.bucket

    def bucketed(x: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x + 1, op(ids)

    graph = trace(bucketed, torch.empty(3, device="meta"), torch.tensor([4, 5, 6]))
    (assumed,) = graph.meta["assumptions"]
    assert (assumed["kind"], assumed["op"], assumed["warning"]) == ("kernel", "bucket", False)
    (node,) = (n for n in graph.nodes.values() if n.name == "bucket")
    assert node.assumed == "kernel" and graph.tensors[node.outputs[0]].device == "cpu"


def test_floats_known_without_data_give_exact_integers() -> None:
    """JetMoE counts tokens per expert from a one-hot made of float zeros and concrete
    indices: those floats have values even on the meta device."""

    def expert_sizes(x: torch.Tensor, experts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        gates = torch.zeros(x.shape[0], 4, dtype=x.dtype, device=x.device)
        gates = gates.scatter(1, experts, 1)
        sizes = gates.long().sum(0).tolist()  # [tokens of expert 0, 1, 2, 3]
        return x.repeat(2, 1).split(sizes)

    experts = torch.tensor([[0, 2], [2, 3], [1, 2]])
    graph = trace(expert_sizes, torch.empty(3, 8, device="meta"), experts)
    outputs = [graph.tensors[n.inputs[0]].shape for n in graph.nodes.values()
               if n.kind == "output"]
    assert outputs == [[1, 8], [1, 8], [3, 8], [1, 8]]
    assert graph.meta["assumptions"] == []


class Gated(torch.nn.Module):
    """A branch on meta floats: which way it goes is unknowable."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if (h > 0).any():
            return torch.relu(h)
        return h * 2


def test_a_branch_on_assumed_values_is_a_warning_at_its_line() -> None:
    graph = trace(Gated(), torch.empty(4, device="meta"))
    zeros, branch = graph.meta["assumptions"]
    assert (zeros["kind"], zeros["op"], zeros["warning"]) == ("zeros", "gt", False)
    assert (branch["kind"], branch["op"], branch["warning"]) == ("branch", "__bool__", True)
    assert branch["code"] == "if (h > 0).any():"
    assert branch["origin"].startswith("zeros at 'gt' (") and branch["line"] == zeros["line"]
    marks = {n.name: n.assumed for n in graph.nodes.values() if n.assumed}
    assert marks == {"gt": "zeros", "any": "branch"}  # the value read is marked too
    (message,) = assumption_messages(graph)
    assert "op '__bool__'" in message and "`if (h > 0).any():`" in message
    assert "the branch it took may not be the model's" in message


def test_a_failure_after_assumed_values_says_how_to_give_real_ones() -> None:
    class CountsImageTokens(torch.nn.Module):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            images = int((ids == 7).sum())
            if images != 4:
                raise ValueError(f"tokens: {images}, features: 4")
            return ids

    with pytest.raises(TraceError) as failure:
        trace(CountsImageTokens(), torch.empty(1, 8, dtype=torch.int64, device="meta"))
    message = str(failure.value)
    assert "tokens: 0, features: 4" in message
    assert "assumed values it did not have (input at 'ids'" in message
    assert "as CPU tensors rather than on the meta device" in message
    assert "an `inputs:` factory" in message
    ids = torch.full((1, 8), 7)
    ids[0, 4:] = 1
    assert trace(CountsImageTokens(), ids).meta["assumptions"] == []  # real ids: fine


class _ThreadsSeen(torch.nn.Module):
    """Remembers how many threads torch's CPU ops had while its forward ran."""

    def __init__(self) -> None:
        super().__init__()
        self.threads = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.threads = torch.get_num_threads()
        return x + 1


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_meta_trace_runs_its_cpu_work_on_one_thread_and_restores_the_count(
        device: str) -> None:
    """Concrete values of a meta trace are a few thousand indices at most, where starting
    torch's worker threads costs more than the work; a real run keeps its threads."""
    threads = torch.get_num_threads()
    model = _ThreadsSeen()
    trace(model, torch.zeros(2, 3, device=device))
    assert model.threads == (1 if device == "meta" else threads)
    assert torch.get_num_threads() == threads


def test_floats_made_or_moved_from_real_tensors_go_to_meta() -> None:
    """Rule 1 holds for floats that start real: a float moved ``.to("meta")`` is on meta,
    and so is ``zeros_like`` of a real float (no memory made); their integer counterparts
    stay concrete, values and all."""
    def mixed(x: torch.Tensor, real: torch.Tensor, counts: torch.Tensor
              ) -> tuple[torch.Tensor, ...]:
        return (real.to("meta"), torch.zeros_like(real), counts.to("meta") + 1,
                torch.zeros_like(counts), x * 2)

    graph = trace(mixed, torch.empty(3, 4, device="meta"), torch.randn(3, 4),
                  torch.tensor([1, 2]))
    devices = [graph.tensors[n.inputs[0]].device for n in graph.nodes.values()
               if n.kind == "output"]
    assert devices == ["meta", "meta", "cpu", "cpu", "meta"]


def test_a_real_mask_picks_meta_rows_by_its_values() -> None:
    """Indexing ops take their real indices as they are: a mask's count of True values is the
    number of rows, not an assumption."""
    def pick(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x[mask]

    graph = trace(pick, torch.empty(4, 8, device="meta"),
                  torch.tensor([True, False, True, True]))
    (output,) = (graph.tensors[n.inputs[0]] for n in graph.nodes.values() if n.kind == "output")
    assert output.shape == [3, 8] and not graph.meta["assumptions"]


def test_real_indices_and_values_meet_a_meta_target() -> None:
    """An indexing op with a meta target and real indices and values runs on meta (the
    values moved there) instead of failing on mixed devices."""
    def add_rows(x: torch.Tensor, index: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return x.index_add(0, index, rows)

    graph = trace(add_rows, torch.empty(4, 8, device="meta"), torch.tensor([0, 2]),
                  torch.randn(2, 8))
    (output,) = (graph.tensors[n.inputs[0]] for n in graph.nodes.values() if n.kind == "output")
    assert (output.shape, output.device) == ([4, 8], "meta")


def test_known_values_written_in_place_by_unknown_ones_are_forgotten() -> None:
    """``arange`` is known without data; multiplied in place by a meta float it is not: a
    later ``.item()`` must fail, not read the stale values."""
    def stale(x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(4.0)
        positions.mul_(x.sum())
        return x * positions.sum().item()

    with pytest.raises(TraceError, match="at op 'item'"):
        trace(stale, torch.empty(4, device="meta"))


def test_routing_ops_on_real_scores_are_run_not_chosen_by_the_policy() -> None:
    """The policy answers for meta scores only: real ones have their own top-k."""
    def top(x: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        best = scores.topk(2).indices
        return x[: int(best.max()) + 1]

    graph = trace(top, torch.empty(6, 8, device="meta"), torch.tensor([0.1, 0.9, 0.5, 0.7]),
                  routing="first")
    (output,) = (graph.tensors[n.inputs[0]] for n in graph.nodes.values() if n.kind == "output")
    assert output.shape == [4, 8]  # rows 1 and 3 won: x[:4]; the policy's 0 and 1: x[:2]


def test_ones_like_a_meta_tensor_is_known_without_data() -> None:
    """``ones_like`` takes a shape, not values: its values are known, so code that counts
    them runs (a small result; a large one stays unknown)."""
    def count(x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(int(torch.ones_like(x).sum().long()))

    graph = trace(count, torch.empty(3, 5, device="meta"))
    (output,) = (graph.tensors[n.inputs[0]] for n in graph.nodes.values() if n.kind == "output")
    assert output.shape == [15]


def test_a_copy_of_a_meta_tensors_values_is_assumed_as_they_are() -> None:
    """``new_tensor(x)`` is made from its arguments, but its argument is a meta tensor,
    whose values nobody has. The copy's values are unknown too: converting them to integers
    is an assumption, marked (never values of a stand-in)."""
    def count(x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(int(x.new_tensor(x * 2).long().sum()))

    graph = trace(count, torch.empty(1, device="meta"))
    (output,) = (graph.tensors[n.inputs[0]] for n in graph.nodes.values() if n.kind == "output")
    assert output.shape == [0]
    assert [a["kind"] for a in graph.meta["assumptions"]] == ["zeros", "branch"]


def test_random_factories_are_not_known_values() -> None:
    """``rand`` has a shape but no values anyone could cite: converting them to integers is
    an assumption, marked; ``ones`` next to it, made from its arguments alone, is known."""
    def count(x: torch.Tensor, factory: Any) -> torch.Tensor:
        return x.new_zeros(int(factory(4).sum().long()))

    for factory, size, assumed in ((torch.ones, 4, []), (torch.rand, 0, ["zeros", "branch"])):
        graph = trace(count, torch.empty(2, device="meta"), factory)
        (output,) = (graph.tensors[n.inputs[0]] for n in graph.nodes.values()
                     if n.kind == "output")
        assert output.shape == [size]
        assert [a["kind"] for a in graph.meta["assumptions"]] == assumed


def test_widened_ops_write_into_their_target_or_out_tensor() -> None:
    """An in-place op and an ``out=`` op run widened write their answer where the model's
    code expects it, in its own dtype."""
    seen: dict[str, Any] = {}

    def grouped(x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        counts = torch.empty(4, dtype=torch.int32)
        seen["out"] = (counts, torch.histc(experts.int(), bins=4, min=0, max=3, out=counts))
        halves = experts.to(torch.uint16)
        seen["in place"] = (halves, halves.floor_divide_(2))
        return x * 2

    graph = trace(grouped, torch.empty(6, 8, device="meta"), torch.tensor([0, 2, 2, 3, 1, 2]))
    for target, returned in seen.values():
        assert returned is target
    assert seen["out"][0].tolist() == [1, 1, 3, 1] and seen["out"][0].dtype == torch.int32
    assert seen["in place"][0].tolist() == [0, 1, 1, 1, 0, 1]
    assert seen["in place"][0].dtype == torch.uint16
    assert graph.meta["assumptions"] == []


def test_an_integer_op_on_concrete_tensors_that_fails_reports_the_model_s_error() -> None:
    """Concrete int8 counts filled with 300: torch refuses the overflow, and so does the
    trace; no kernel was missing, so it is not computed on int64 (where 300 fits, and whose
    copy back would wrap it silently)."""

    def count(x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        experts.to(torch.int8).fill_(300)
        return x * 2

    with pytest.raises(TraceError, match=r"at op 'fill_' at .*`: RuntimeError: value cannot "
                                         r"be converted to type int8_t without overflow$"):
        trace(count, torch.empty(6, 8, device="meta"), torch.tensor([0, 2, 3]))


def _branch_assumed(graph: Graph) -> bool:
    return any(a["kind"] == "branch" and a["warning"] for a in graph.meta["assumptions"])


def test_a_routing_op_s_values_are_unknown_even_when_its_scores_are_known() -> None:
    """The policy, not the known scores, chose the indices: the values returned beside them
    are not the scores' top values, so a branch on them is an assumption."""

    def route(x: torch.Tensor) -> torch.Tensor:
        scores = torch.linspace(0, 1, 4, device=x.device)  # known on the meta device
        if scores.topk(2).values.sum() > 1:  # true of the scores' own top two
            return x * 2
        return x * 3

    assert _branch_assumed(trace(route, torch.empty(4, device="meta")))


def test_an_in_place_write_of_unknown_values_forgets_the_known_ones() -> None:
    def shift(x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(0, 1, 4, device=x.device)  # known on the meta device
        ramp.add_(x)  # x has no values: neither has ramp now
        if ramp.sum() > 100:
            return x * 2
        return x * 3

    assert _branch_assumed(trace(shift, torch.empty(4, device="meta")))
    known = trace(lambda x: x * 2 if torch.linspace(0, 1, 4, device=x.device).sum() > 1
                  else x * 3, torch.empty(4, device="meta"))
    assert not _branch_assumed(known)  # the premise: known values decide a branch


def test_a_concrete_mask_picks_rows_of_a_meta_tensor() -> None:
    def pick(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x[mask] * 2

    graph = trace(pick, torch.empty(4, 8, device="meta"),
                  torch.tensor([True, False, True, True]))
    (getitem,) = (n for n in graph.nodes.values() if n.name == "getitem")
    assert [graph.tensors[t].shape for t in getitem.outputs] == [[3, 8]]


def test_integer_outputs_beside_float_ones_are_made_concrete() -> None:
    """``frexp`` of meta floats: the mantissas stay on meta, the int32 exponents are assumed
    zeros on the CPU (and marked), as a lone integer result would be."""
    graph = trace(lambda x: torch.frexp(x), torch.empty(4, device="meta"))
    (frexp,) = (n for n in graph.nodes.values() if n.name == "frexp")
    assert [(graph.tensors[t].device, graph.tensors[t].dtype) for t in frexp.outputs] == [
        ("meta", "float32"), ("cpu", "int32")]
    assert [(a["kind"], a["op"]) for a in graph.meta["assumptions"]] == [("zeros", "frexp")]


def test_concrete_indices_gather_along_a_dimension_of_a_meta_tensor() -> None:
    """``take_along_dim`` refuses tensors on two devices ("Expected tensor to have meta
    Device"): the concrete indices are moved to meta and the op runs again."""
    indices = torch.tensor([[0] * 8, [3] * 8])
    graph = trace(lambda x: torch.take_along_dim(x, indices, 0) * 2,
                  torch.empty(4, 8, device="meta"))
    (taken,) = (n for n in graph.nodes.values() if n.name == "take_along_dim")
    assert [graph.tensors[t].shape for t in taken.outputs] == [[2, 8]]


def _outputs(graph: Graph) -> list[tuple[str, str, list[int]]]:
    """Each output of a traced function: where its tensor lives, its dtype and shape."""
    return [(graph.tensors[n.inputs[0]].device, graph.tensors[n.inputs[0]].dtype,
             graph.tensors[n.inputs[0]].shape) for n in graph.nodes.values()
            if n.kind == "output"]


def test_meta_tensors_asked_onto_the_cpu_stay_on_meta() -> None:
    """Code written for a real device (``logits.float().cpu()``) runs: the float tensor stays
    on the meta device, where it has no data to copy, with the dtype it asked for."""
    graph = trace(lambda x: (x.cpu(), x.to("cpu"), x.to("cpu", torch.float64)),
                  torch.empty(2, 3, device="meta"))
    assert _outputs(graph) == [("meta", "float32", [2, 3]), ("meta", "float32", [2, 3]),
                               ("meta", "float64", [2, 3])]


def test_concrete_integers_cast_like_a_meta_tensor_keep_their_values() -> None:
    """``ids.to(x.device, x.dtype)`` onto the meta device: the dtype changes, the values
    stay concrete (rule 5)."""
    seen: dict[str, torch.Tensor] = {}

    def cast(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        seen["ids"] = ids.to(x.device, x.dtype)
        return x * 2

    graph = trace(cast, torch.empty(3, 8, dtype=torch.float16, device="meta"),
                  torch.tensor([4, 0, 7]))
    assert (seen["ids"].device.type, seen["ids"].dtype) == ("cpu", torch.float16)
    assert seen["ids"].tolist() == [4.0, 0.0, 7.0]
    assert graph.meta["assumptions"] == []


def test_a_routing_op_called_with_keywords_is_routed_by_the_policy() -> None:
    def top(x: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        best = torch.topk(input=scores, k=2).indices
        return x[: int(best.max()) + 1]

    graph = trace(top, torch.empty(6, 8, device="meta"), torch.empty(4, device="meta"),
                  routing="first")
    assert _outputs(graph) == [("meta", "float32", [2, 8])]  # experts 0 and 1: x[:2]
    assert graph.meta["routing"] == {"policy": "first", "decisions": 1}
    assert graph.meta["assumptions"] == []


@pytest.mark.parametrize(("elements", "counted"), [(MAX_KNOWN_ELEMENTS, MAX_KNOWN_ELEMENTS),
                                                   (MAX_KNOWN_ELEMENTS + 1, 0)])
def test_ones_like_is_known_up_to_the_limit_of_known_values(elements: int, counted: int) -> None:
    """A tensor of ``MAX_KNOWN_ELEMENTS`` values is the largest whose values are carried;
    one more element and the count is an assumption (zeros), marked."""
    def count(x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(int(torch.ones_like(x).sum().long()))

    graph = trace(count, torch.empty(1, elements, device="meta"))
    assert _outputs(graph) == [("meta", "float32", [counted])]
    assert bool(graph.meta["assumptions"]) == (counted == 0)


def test_known_values_travel_with_a_cast() -> None:
    """A known float cast to another float stays on meta and known; cast to integers it
    becomes concrete with those values (``mask.to(torch.bool)``)."""
    seen: dict[str, torch.Tensor] = {}

    def cast(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ramp = torch.linspace(0, 3, 4, device=x.device)  # known on the meta device
        wide = ramp.to(torch.float64)
        seen["counts"] = ramp.to(torch.int64)
        return wide, x.new_zeros(int(wide.sum().long()))

    graph = trace(cast, torch.empty(2, device="meta"))
    assert _outputs(graph) == [("meta", "float64", [4]), ("meta", "float32", [6])]
    assert seen["counts"].device.type == "cpu" and seen["counts"].tolist() == [0, 1, 2, 3]
    assert graph.meta["assumptions"] == []


def test_an_integer_output_beside_a_number_is_made_concrete() -> None:
    """An op returning a tensor and a plain number: its integer tensor of meta inputs is
    assumed zeros on the CPU (and marked), as a lone one would be."""
    library = torch.library.Library("model_trace_concrete_mixed", "DEF")
    library.define("bucketed(Tensor x) -> (Tensor, int)")
    library.impl("bucketed", lambda x: (x.new_empty(x.shape[0], dtype=torch.int64), 4),
                 "Meta")
    graph = trace(lambda x: torch.ops.model_trace_concrete_mixed.bucketed(x)[0],
                  torch.empty(3, 8, device="meta"))
    assert _outputs(graph) == [("cpu", "int64", [3])]
    assert [(a["kind"], a["op"]) for a in graph.meta["assumptions"]] == [("zeros", "bucketed")]


def test_a_model_s_own_indexing_error_names_the_shapes_its_code_made() -> None:
    """A mask and an index that do not broadcast together: the error is the op's own,
    naming the mask's three rows, not that of a second try with the mask made into
    positions, which would name a shape the model never made ([1, 3])."""
    mask, index = torch.tensor([True, False, True, True]), torch.tensor([0, 1])
    with pytest.raises(TraceError, match=r"at op 'getitem' at .*broadcastable to \[3\]$"):
        trace(lambda x: x[mask, index], torch.empty(4, 8, device="meta"))


def test_an_op_reading_only_shapes_runs_on_stand_ins_and_its_result_is_exact() -> None:
    """``_nested_tensor_from_mask_left_aligned`` has no meta kernel and reads only the float
    tensor's shape: its answer, whether each row of the mask is left-aligned, is the real
    one, and a full-size input allocates nothing (a stand-in holds one element)."""
    def branch(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x * 2 if torch._nested_tensor_from_mask_left_aligned(x, mask) else x + 1

    huge = torch.empty(64, 100_000, 4096, device="meta")  # 100 GB as floats
    left = torch.arange(100_000).expand(64, -1) < 1000
    for mask, op in ((left, "mul"), (left.flip(-1), "add")):
        graph = trace(branch, huge, mask)
        assert [n.name for n in graph.nodes.values() if n.kind == "op"] == [op]
        assert not graph.meta["assumptions"]


@pytest.mark.parametrize("cast", [lambda m, x: m.type_as(x), lambda m, x: m.to(x)],
                         ids=["type_as", "to"])
def test_a_concrete_mask_cast_like_a_meta_tensor_keeps_its_values(cast: Any) -> None:
    """``mask.type_as(scores)``: the mask stays concrete in the scores' dtype, as with
    ``mask.to(scores.device, scores.dtype)`` (rule 5), so the comparison that follows is
    exact, not assumed."""
    seen: dict[str, torch.Tensor] = {}

    def masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        seen["mask"] = cast(mask, x)
        return x.masked_fill(seen["mask"] == 0, -1e4)

    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])[:, None, :]
    graph = trace(masked, torch.empty(2, 4, 4, dtype=torch.float16, device="meta"), mask)
    assert (seen["mask"].device.type, seen["mask"].dtype) == ("cpu", torch.float16)
    assert seen["mask"].tolist() == mask.tolist()
    compared = next(n for n in graph.nodes.values() if n.name == "eq")
    assert [graph.tensors[t].device for t in compared.outputs] == ["cpu"]
    assert not graph.meta["assumptions"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_a_grouped_product_of_any_float_dtype_traces_on_meta(dtype: torch.dtype) -> None:
    """torch's meta kernel of ``grouped_mm`` refuses all but bfloat16 (its CPU kernel takes
    any float): on meta it runs on bfloat16 casts and hands on the dtype, shape and FLOPs
    of a trace on the CPU."""
    def experts(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.grouped_mm(x, w, offs=offsets) * 2

    offsets = torch.tensor([2, 6], dtype=torch.int32)
    on_cpu = trace(experts, torch.randn(6, 16, dtype=dtype), torch.randn(2, 16, 8, dtype=dtype),
                   offsets)
    on_meta = trace(experts, torch.empty(6, 16, dtype=dtype, device="meta"),
                    torch.empty(2, 16, 8, dtype=dtype, device="meta"), offsets)
    for graph in (on_cpu, on_meta):
        product = next(n for n in graph.nodes.values() if n.name == "_grouped_mm")
        (out,) = (graph.tensors[t] for t in product.outputs)
        assert (out.shape, out.dtype, product.stats.flops) == (
            [6, 8], str(dtype).removeprefix("torch."), 2 * 6 * 16 * 8)
        assert [n.name for n in graph.nodes.values() if n.kind == "op"] == ["_grouped_mm", "mul"]
    assert not on_meta.meta["assumptions"]


def test_a_float32_mixture_of_experts_from_transformers_traces_on_meta() -> None:
    """transformers runs experts with ``grouped_mm`` by default: a float32 model built from
    its config on meta traces, with the logits and FLOPs of a trace of the same model with
    real weights on the CPU."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GraniteMoeConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=64, num_local_experts=4,
        num_experts_per_tok=2)
    torch.manual_seed(0)
    model = transformers.GraniteMoeForCausalLM(config).eval()
    ids = torch.randint(0, 100, (1, 16))
    on_cpu = trace(model, input_ids=ids)
    on_meta = trace(model.to("meta"), input_ids=ids)
    for graph in (on_cpu, on_meta):
        (logits,) = (n for n in graph.nodes.values() if n.kind == "output")
        assert graph.tensors[logits.inputs[0]].shape == [1, 16, 100]
        assert list(graph.meta["experts"]) == ["model.layers.0.block_sparse_moe.experts"]
    assert on_meta.meta["totals"]["flops"] == on_cpu.meta["totals"]["flops"]
    assert not on_meta.meta["assumptions"]


def test_python_reads_floats_whose_values_are_known_without_data() -> None:
    """A float made from its arguments stays on meta with a copy of its values: ``.tolist()``,
    ``.item()`` and ``float()`` read that copy, where they would fail on a meta tensor."""
    def scaled(x: torch.Tensor) -> torch.Tensor:
        steps = torch.full((2,), 2.0).tolist()
        total = torch.arange(3, dtype=torch.float32).sum().item()
        return x * steps[0] * total * float(torch.ones(()) * 4)

    graph = trace(scaled, torch.empty(4, 3, device="meta"))
    assert [n.args.get("arg1") for n in graph.nodes.values() if n.name == "mul"] == [
        "2.0", "3.0", "4", "4.0"]  # x * 2.0 * 3.0, ones * 4 (its node), then * 4.0
    assert not graph.meta["assumptions"]


def test_tensors_of_given_data_keep_their_values_when_made_on_meta() -> None:
    """``torch.tensor(data, device=x.device)`` (BigBird's random blocks, from numpy) and
    ``tril_indices``: integers on the CPU with their values, floats on meta with a copy."""
    def picked(x: torch.Tensor) -> torch.Tensor:
        rows = torch.tensor(numpy.array([[2, 0], [1, 3]]), device=x.device, dtype=torch.long)
        scale = torch.tensor([0.5, 2.0], device=x.device)
        below, _ = torch.tril_indices(3, 3, device=x.device)
        return x[rows.unsqueeze(0)[0, 0]] * scale.sum().item() + below.sum()

    graph = trace(picked, torch.empty(4, 3, device="meta"))
    made = [(n.name, graph.tensors[n.outputs[0]].device) for n in graph.nodes.values()
            if n.name in ("tensor", "tril_indices")]
    assert made == [("tensor", "cpu"), ("tensor", "meta"), ("tril_indices", "cpu")]
    (gathered,) = (n for n in graph.nodes.values() if n.name == "getitem"
                   and graph.tensors[n.outputs[0]].device == "meta")
    assert graph.tensors[gathered.outputs[0]].shape == [2, 3]
    assert [n.args.get("arg1") for n in graph.nodes.values() if n.name == "mul"] == ["2.5"]
    assert not graph.meta["assumptions"]


_MASK = [True, False, True, True]


@pytest.mark.parametrize(("write", "rows"), [
    (lambda y, v: y.__setitem__(torch.tensor(_MASK), v), (3, 8)),
    (lambda y, v: y.__setitem__(torch.tensor([0, 2]), v), (2, 8)),
    (lambda y, v: y.__setitem__((slice(None), torch.tensor([1, 2])), v), (4, 2)),
    (lambda y, v: y.index_put_((torch.tensor(_MASK),), v, accumulate=True), (3, 8)),
], ids=["mask", "indices", "indices-in-dim-1", "index_put_"])
def test_a_write_through_concrete_indices_checks_its_values_shape_as_a_real_run(
        write: Any, rows: tuple[int, int]) -> None:
    """Meta kernels write through an index without looking at the values' shape: a write a
    real run refuses fails the meta trace too, with the real run's words, and one whose
    values broadcast (a row for every row written, or exactly as many) traces."""
    def model(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        write(y, v)
        return y

    wrong = (rows[0] + 1, rows[1])
    with pytest.raises(RuntimeError, match="shape mismatch"):
        model(torch.randn(4, 8), torch.randn(wrong))
    with pytest.raises(TraceError, match=rf"shape mismatch: value tensor of shape "
                                         rf"\[{wrong[0]}, {wrong[1]}\] cannot be broadcast to "
                                         rf"indexing result of shape \[{rows[0]}, {rows[1]}\]"):
        trace(model, torch.empty(4, 8, device="meta"), torch.empty(wrong, device="meta"))
    for fits in (rows, rows[1:]):
        graph = trace(model, torch.empty(4, 8, device="meta"), torch.empty(fits, device="meta"))
        assert [n.name for n in graph.nodes.values() if n.kind == "op"][-1] in (
            "setitem", "index_put_")


def _ctc(log_probs: torch.Tensor, targets: torch.Tensor, reduction: str) -> torch.Tensor:
    """The CTC loss of ``targets`` (batch, 5) under ``log_probs`` (time, batch, classes)."""
    time_steps, batch = log_probs.shape[:2]
    return torch.nn.functional.ctc_loss(log_probs, targets, torch.full((batch,), time_steps),
                                        torch.full((batch,), 5), reduction=reduction)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_the_ctc_loss_runs_on_stand_ins_and_hands_on_a_meta_loss(reduction: str) -> None:
    """The CTC loss has no meta kernel: it runs on one-element stand-ins of its
    log-probabilities (80 GB as floats: a copy would fail) and its loss, of the shape a real
    run gives, moves to the meta device, its values being the stand-ins'. Nothing is
    assumed: the shape depends on the batch and the reduction alone."""
    targets = torch.randint(1, 10, (2, 5))
    expected = _ctc(torch.randn(50, 2, 10).log_softmax(-1), targets, reduction)
    graph = trace(lambda x, t: _ctc(x, t, reduction) * 2,
                  torch.empty(100_000, 2, 100_000, device="meta"), targets)
    loss = next(n for n in graph.nodes.values() if n.name == "ctc_loss")
    (tensor,) = (graph.tensors[t] for t in loss.outputs)
    assert (tensor.shape, tensor.dtype, tensor.device) == (list(expected.shape), "float32",
                                                           "meta")
    assert [n.name for n in graph.nodes.values() if n.kind == "op"] == ["full", "full",
                                                                          "ctc_loss", "mul"]
    assert loss.category == "reduce" and not loss.uncounted_flops
    assert not graph.meta["assumptions"]


def test_a_speech_model_with_labels_traces_its_ctc_loss_on_meta() -> None:
    """transformers' ``Wav2Vec2ForCTC`` given labels computes the CTC loss over the frames
    its convolutions leave: on meta, the loss and the logits have a real run's shapes."""
    transformers = pytest.importorskip("transformers")
    config = transformers.Wav2Vec2Config(
        vocab_size=12, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 2), conv_kernel=(10, 3),
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    labels = torch.randint(1, 12, (2, 6))
    torch.manual_seed(0)
    model = transformers.Wav2Vec2ForCTC(config).eval()
    with torch.no_grad():
        expected = model(torch.randn(2, 800), labels=labels)
    graph = trace(model.to("meta"), torch.empty(2, 800, device="meta"), labels=labels)
    shapes = {n.name: graph.tensors[n.inputs[0]].shape for n in graph.nodes.values()
              if n.kind == "output"}
    assert shapes == {"output['loss']": list(expected.loss.shape),
                      "output['logits']": list(expected.logits.shape)}
    assert not graph.meta["assumptions"]


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")  # the real run's
def test_a_transformer_encoder_in_eval_mode_traces_with_a_padding_mask() -> None:
    """PyTorch's own encoder checks the padding mask before its fast path (the check above):
    traced on meta it runs every layer, with the FLOPs of the hand count."""
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0)
    model = torch.nn.TransformerEncoder(layer, 2).eval()
    mask = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    with torch.no_grad():
        expected = model(torch.randn(2, 5, 16), src_key_padding_mask=mask)
    graph = trace(model.to("meta"), torch.empty(2, 5, 16, device="meta"),
                  src_key_padding_mask=mask)
    (output,) = (node for node in graph.nodes.values() if node.kind == "output")
    assert graph.tensors[output.inputs[0]].shape == list(expected.shape)
    # per layer: the projections in, out and of the feed-forward on 10 tokens, and the
    # two products of attention (2 x 2 x 5 x 5 x 16)
    linears = 2 * 10 * (16 * 48 + 16 * 16 + 16 * 32 + 32 * 16)
    assert graph.meta["totals"]["flops"] == 2 * (linears + 4 * 2 * 5 * 5 * 16)
    assert not graph.meta["assumptions"]


def test_an_integer_scalar_tensor_beside_meta_tensors_keeps_its_value() -> None:
    """Longformer sizes its chunks with ``torch.div(n, 2 * w, rounding_mode="trunc")``, a 0-d
    CPU tensor: moved to meta with the other arguments of ``view`` it would lose its value,
    and ``view`` reads it (``.item()``). Meta kernels take an integer scalar as a number."""
    def chunks(x: torch.Tensor) -> torch.Tensor:
        count = torch.div(x.size(1), 4, rounding_mode="trunc")
        return x.view(x.size(0), count, 4, x.size(2)) * count

    graph = trace(chunks, torch.empty(2, 16, 8, device="meta"), fold=False)
    shapes = {n.name: graph.tensors[n.outputs[0]].shape for n in graph.nodes.values()
              if n.kind == "op"}
    assert shapes == {"div": [], "view": [2, 4, 4, 8], "mul": [2, 4, 4, 8]}
    assert not graph.meta["assumptions"]
