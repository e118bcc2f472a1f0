"""``trace``: run a model once and return its ``Graph``."""

from __future__ import annotations

import contextlib
import inspect
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from model_trace.errors import TraceError
from model_trace.graph import Graph, SourceLocation
from model_trace.tracing.concrete import ConcreteValues
from model_trace.tracing.execution import attach_measurements, measure
from model_trace.tracing.folding import collector_paused, fold_repeats, surviving_stubs
from model_trace.tracing.options import OpObserver, ParameterDrawing, TraceOptions
from model_trace.tracing.recorder import Recorder
from model_trace.tracing.replay import ReplayedCalls, record_survivors
from model_trace.tracing.route_rule import ForcedRouting
from model_trace.tracing.routing import RoutingPolicy, routing_policy
from model_trace.tracing.sharing import (
    draw_shared_per_use,
    leading_shared_names,
    plan_shared_uses,
)
from model_trace.tracing.stats import add_uncalled_modules, assign_statistics
from model_trace.tracing.structures import map_structure, named_tensors
from model_trace.tracing.threads import one_thread


def trace(
    model: torch.nn.Module | Callable[..., Any],
    *args: Any,
    routing: str | Sequence[int] | RoutingPolicy | None = None,
    force_routing: bool = False,
    fold: bool = True,
    early_fold: bool = True,
    trace_depth: int = 0,
    module_depth: int | None = None,
    aten: bool = False,
    execute: str | None = None,
    parameters: ParameterDrawing = "attach",
    observe: OpObserver | None = None,
    **kwargs: Any,
) -> Graph:
    """Run ``model(*args, **kwargs)`` once and return the recorded ``Graph``.

    ``model`` is any ``nn.Module`` or plain function; tensors may be on the meta device, where
    float tensors keep only their shapes and integer tensors (token ids, expert indices) are
    made concrete so data-dependent code (mixture-of-experts routing) runs. The keyword-only
    options are those of ``TraceOptions``; every other keyword goes to the model.

    An exception in the forward is re-raised as ``TraceError`` naming the module path and op,
    with the partial graph attached as ``error.graph``.
    """
    options = TraceOptions(routing=routing, force_routing=force_routing, fold=fold,
                           early_fold=early_fold, trace_depth=trace_depth,
                           module_depth=module_depth, aten=aten, execute=execute,
                           parameters=parameters, observe=observe)
    return trace_with_options(model, args, kwargs, options)


def trace_with_options(model: torch.nn.Module | Callable[..., Any], args: tuple[Any, ...],
                       kwargs: dict[str, Any], options: TraceOptions) -> Graph:
    """``trace`` with its options as one value and the model's inputs as a tuple and a dict."""
    with collector_paused():
        return _trace(model, args, kwargs, options)


def _trace(model: torch.nn.Module | Callable[..., Any], args: tuple[Any, ...],
           kwargs: dict[str, Any], options: TraceOptions) -> Graph:
    root_module = model if isinstance(model, torch.nn.Module) else None
    on_meta = _on_meta(root_module, args, kwargs)
    measurements = None
    if options.execute is not None:
        if on_meta:
            raise TraceError(
                f"execute={options.execute!r} runs the model for real, but its weights or "
                "inputs are on the meta device; build it on a real device (and load or "
                "initialise its weights), or trace without execute")
        measurements, args, kwargs = measure(model, args, kwargs, options.execute)
    policy = routing_policy(options.routing)
    policy.reset()
    values: ConcreteValues | ForcedRouting | None = None
    stand_ins: set[int] = set()
    if on_meta:
        values = ConcreteValues(policy)
        args, kwargs = _concrete_integers((args, kwargs), stand_ins)
    elif options.force_routing:
        values = ForcedRouting(policy)
    root_name = type(model).__name__ if root_module is not None else _function_name(model)
    recorder = Recorder(root_module, root_name, options, values,
                        early_fold=_replays(options, on_meta))
    for name, value in _input_labels(model, args, kwargs):
        for label, tensor in named_tensors(value, name):
            recorder.record_input(label, tensor, assumed=id(tensor) in stand_ins)
    try:
        with recorder.recording(), one_thread() if on_meta else contextlib.nullcontext():
            result = model(*args, **kwargs)
    except Exception as error:
        message = _failure_message(recorder, error)
        partial = _finish(recorder, model, options, values, on_meta, complete=False)
        recorder.release(())
        raise TraceError(message, graph=partial) from error
    recorder.record_outputs(result)
    graph = _finish(recorder, model, options, values, on_meta, complete=True,
                    measurements=measurements)
    recorder.release((args, kwargs, result))
    return graph


def _replays(options: TraceOptions, on_meta: bool) -> bool:
    """Whether repeated calls may be replayed (``replay``): a meta trace that folds, records
    each module call as one group of torch-level ops, and shows no one the ops it runs."""
    return (options.fold and options.early_fold and on_meta and not options.aten
            and options.trace_depth == 0 and options.module_depth is None
            and options.parameters == "attach" and options.execute is None
            and options.observe is None)


def _on_meta(model: torch.nn.Module | None, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> bool:
    """Whether this is a meta trace: any input, or any weight of the model, is on meta (a
    model built on meta may hold a weight a legacy constructor put on the CPU, such as
    XLNet's ``torch.FloatTensor`` parameters; it cannot run for real all the same). The first
    weight decides at once for a model built on meta."""
    if any(t.is_meta for _, t in named_tensors((args, kwargs), "")):
        return True
    if model is None:
        return False
    return any(tensor.is_meta for tensor in itertools.chain(model.parameters(),
                                                            model.buffers()))


def _concrete_integers(value: Any, stand_ins: set[int]) -> Any:
    """Inputs with every integer or boolean meta tensor replaced by CPU zeros (token ids);
    the ids of the zeros go into ``stand_ins``."""

    def concrete(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.is_meta and not (tensor.dtype.is_floating_point or tensor.dtype.is_complex):
            zeros = torch.zeros(tensor.shape, dtype=tensor.dtype)
            stand_ins.add(id(zeros))
            return zeros
        return tensor

    return map_structure(value, concrete)


def _input_labels(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> list[tuple[str, Any]]:
    """(name, value) of each input: the forward's parameter names where they can be bound."""
    function = model.forward if isinstance(model, torch.nn.Module) else model
    try:
        bound = inspect.signature(function).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return [(f"input {i}", a) for i, a in enumerate(args)] + sorted(kwargs.items())
    labels: list[tuple[str, Any]] = []
    for name, value in bound.arguments.items():
        kind = inspect.signature(function).parameters[name].kind
        if kind == inspect.Parameter.VAR_POSITIONAL:
            labels += [(f"{name}[{i}]", v) for i, v in enumerate(value)]
        elif kind == inspect.Parameter.VAR_KEYWORD:
            labels += sorted(value.items())
        else:
            labels.append((name, value))
    return labels


def _function_name(function: Any) -> str:
    return getattr(function, "__qualname__", None) or type(function).__name__


def _failure_message(recorder: Recorder, error: Exception) -> str:
    failure = recorder.failure()
    call, op, source = failure.call, failure.op, failure.source
    where = (call.path or "<root>") if call is not None else "<root>"
    cls = f" ({call.cls})" if call is not None else ""
    if recorder.failed:
        at = f" at op '{op}'"
    else:  # raised by Python code between ops (the model's own check, a bad key...)
        at = f" after op '{op}'" if op != "?" else " before its first op"
        source = _raised_at(recorder, error)
    if source is not None:
        at += f" at {source.file}:{source.line} `{source.code}`"
    hint = ""
    if "meta tensor" in str(error):
        hint = ("; on the meta device float tensors have shapes but no values, so code that "
                "reads them (.item(), .tolist(), float(x)) cannot run: trace the model on the "
                "CPU with real weights and inputs instead")
    assumed = recorder.assumptions.entries.values()
    if assumed:
        made = "; ".join(f"{a.kind} at '{a.op}'" + (f" ({a.source.file}:{a.source.line})"
                                                  if a.source else "") for a in assumed)
        hint += (f"; before it failed, the trace assumed values it did not have ({made}): "
                 "give real ones, e.g. integer inputs (token ids, image sizes) as CPU tensors "
                 "rather than on the meta device (in a fence, an `inputs:` factory that "
                 "returns them)")
    return (f"forward failed in module '{where}'{cls}{at}: "
            f"{type(error).__name__}: {error}{hint}")


def _raised_at(recorder: Recorder, error: Exception) -> SourceLocation | None:
    """The line of model code where ``error`` was raised (or the innermost one it passed)."""
    frames = error.__traceback__
    while frames is not None and frames.tb_next is not None:
        frames = frames.tb_next
    return recorder.sources.call_site(frames.tb_frame) if frames is not None else None


def _finish(recorder: Recorder, model: Any, options: TraceOptions,
            values: ConcreteValues | ForcedRouting | None, on_meta: bool, complete: bool,
            measurements: Any = None) -> Graph:
    """The graph of what was recorded; ``complete``: the forward returned (a partial graph
    is neither folded nor given the modules it never reached, which were not "never
    called")."""
    builder = recorder.builder
    fold = complete and options.fold
    graph = builder.graph()
    replayed = _replayed_calls(recorder, graph, options, fold)
    graph.meta = _meta(graph, model, options, values, on_meta)
    graph.meta["assumptions"] = recorder.assumptions.describe()
    graph.meta["flops_without_formula"] = dict(sorted(recorder.uncounted.items()))
    root_module = model if isinstance(model, torch.nn.Module) else None
    call_modules = builder.call_modules
    if complete:
        add_uncalled_modules(graph, call_modules, root_module, recorder.sources,
                             frozenset(recorder.opaque_paths), builder.index, replayed)
    state = frozenset(filter(None, map(builder.ref, builder.index.buffers()))) \
        if root_module is not None else frozenset()
    assign_statistics(graph, call_modules, root_module, state, replayed)
    draw_shared_per_use(graph, builder.input_names, options.shared_min_uses, replayed,
                        builder.next_node)
    if measurements is not None:
        attach_measurements(graph, measurements)
    if fold:
        fold_repeats(graph, replayed)
    return graph


def _replayed_calls(recorder: Recorder, graph: Graph, options: TraceOptions, fold: bool
                    ) -> ReplayedCalls | None:
    """The replayed calls a fold drops; those it would keep (or all of them, without a fold)
    are recorded now."""
    replayer = recorder.replayer
    if replayer is None or not replayer.stubs:
        return None
    if fold:
        replayed = ReplayedCalls(replayer.stubs)
        uses = plan_shared_uses(graph, recorder.builder.input_names, options.shared_min_uses,
                                replayed)
        kept = surviving_stubs(graph, replayed, leading_shared_names(uses))
    else:
        kept = {stub.call for stub in replayer.stubs}
    if kept:
        record_survivors(recorder, [s for s in replayer.stubs if s.call in kept])
    return ReplayedCalls(replayer.stubs) if replayer.stubs else None


def _meta(graph: Graph, model: Any, options: TraceOptions,
          values: ConcreteValues | ForcedRouting | None, on_meta: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "model": graph.modules[graph.root].cls,
        "torch": torch.__version__.split("+")[0],
        "device": "meta" if on_meta else _device_of(graph),
        "options": options.describe(),
    }
    if values is not None:
        meta["routing"] = values.describe()
    else:
        meta["routing"] = {"policy": "real"}
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        meta["tensor_parallel"] = {"rank": torch.distributed.get_rank(),
                                   "world_size": torch.distributed.get_world_size()}
    return meta


def _device_of(graph: Graph) -> str:
    for tensor in graph.tensors.values():
        return tensor.device
    return "cpu"
