"""Early folding: repeated calls replayed while tracing give the graph a full trace folds to."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch

from model_trace.errors import TraceError
from model_trace.tracing import replay, trace
from model_trace.tracing.model_index import NO_KEY, ModelIndex
from model_trace.tracing.routing import RoutingPolicy
from model_zoo.deepseek_v3 import RuntimeOptions, Transformer, load_config

POLICIES = ["balanced", "random", "first", "fixed"]


def _fixed_list(config: str) -> list[int]:
    """Experts of two groups (each token keeps 2 of 4 groups in tiny, 4 of 8 in 671B)."""
    return [0, 1, 4, 5] if config == "tiny" else [4, 6, 9, 11, 40, 41, 42, 43]


def _replayed(model: torch.nn.Module, *inputs: torch.Tensor, **options: object
              ) -> tuple[str, int]:
    """The graph's JSON and how many calls its trace replayed."""
    replayed = []
    original = replay.Replayer._replay

    def counting(self: replay.Replayer, *args: object) -> object:
        result = original(self, *args)  # type: ignore[arg-type]
        replayed.append(result is not replay._NOT_REPLAYED)
        return result

    replay.Replayer._replay = counting  # type: ignore[method-assign]
    try:
        graph = trace(model, *inputs, **options).to_json(indent=1)
    finally:
        replay.Replayer._replay = original  # type: ignore[method-assign]
    return graph, sum(replayed)


def _both_ways(build: Callable[[], torch.nn.Module], *inputs: torch.Tensor,
               **options: object) -> tuple[str, str, int]:
    """The folded graph's JSON with early folding off and on, and how many calls the second
    trace replayed. A fresh model each time: a forward fills attention caches."""
    full = trace(build(), *inputs, early_fold=False, **options).to_json(indent=1)
    early, replayed = _replayed(build(), *inputs, **options)
    return full, early, replayed


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("config", ["tiny", "671B"])
def test_every_routing_policy_folds_to_the_same_graph(config: str, policy: str) -> None:
    overrides = {"n_layers": 6} if config == "671B" else {}
    tokens = (1, 128) if config == "671B" else (2, 8)

    def build() -> torch.nn.Module:
        with torch.device("meta"):
            return Transformer(load_config(config, **overrides),
                               RuntimeOptions(world_size=1, rank=0))

    routing = _fixed_list(config) if policy == "fixed" else policy
    full, early, replayed = _both_ways(build, torch.empty(*tokens, dtype=torch.int64,
                                                          device="meta"), routing=routing)
    assert early == full
    assert replayed > 0


def test_the_multi_token_prediction_block_is_recorded_not_dropped() -> None:
    """mtp.block repeats a MoE layer but is no member of a folded run: it must be drawn."""

    def build() -> torch.nn.Module:
        with torch.device("meta"):
            return Transformer(load_config("tiny", mtp=True), RuntimeOptions())

    full, early, _ = _both_ways(build, torch.empty(2, 8, dtype=torch.int64, device="meta"))
    assert early == full
    assert '"path": "mtp.block.ffn.experts.0"' in early


class Pair(torch.nn.Module):
    """Two layers of each of two kinds, in a pattern a fold loops over: [a, a, b] x 3."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(8, 8) if i % 3 < 2 else torch.nn.Sequential(
                torch.nn.Linear(8, 8), torch.nn.ReLU()) for i in range(9))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class InPlace(torch.nn.Module):
    """Siblings that write into their input: the next one reads the new version."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = torch.nn.ModuleList(Scale() for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 1
        for step in self.steps:
            step(y)
        return y


class Scale(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul_(2)


class Cached(torch.nn.Module):
    """Siblings that keep a cache buffer, set on their first call."""

    def __init__(self) -> None:
        super().__init__()
        self.cells = torch.nn.ModuleList(Cell() for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for cell in self.cells:
            x = cell(x)
        return x + self.cells[1].cache  # read after the calls, from outside


class Cell(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)
        self.register_buffer("cache", None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.cache = self.proj(x) * 2
        return self.cache.relu()


class Counting(torch.nn.Module):
    """Siblings whose forward changes an attribute: they cannot be replayed."""

    def __init__(self) -> None:
        super().__init__()
        self.cells = torch.nn.ModuleList(Counter() for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for cell in self.cells:
            x = cell(x)
        return x


class Counter(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * self.calls


class _Sub(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)
        self.unused = torch.nn.Linear(8, 8)  # never called: listed as such

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * scale


class _Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.subs = torch.nn.ModuleList(_Sub() for _ in range(3))

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        for sub in self.subs:
            x = sub(x, scale)
        return x


class Nested(torch.nn.Module):
    """Replayed calls inside replayed calls, each with a submodule it never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(_Block() for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.ones(8)
        for block in self.blocks:
            x = block(x, scale)
        return x


class Masked(torch.nn.Module):
    """Layers given a causal mask, whose values are known on the meta device; with
    ``shifted`` each layer's mask has another diagonal (equal metadata, other values)."""

    def __init__(self, shifted: bool = False) -> None:
        super().__init__()
        self.shifted = shifted
        self.layers = torch.nn.ModuleList(Attend() for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            diagonal = 1 + index if self.shifted else 1
            mask = torch.full((x.shape[1], x.shape[1]), float("-inf")).triu(diagonal)
            x = layer(x, mask)
        return x


class Attend(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = (x @ x.transpose(-1, -2) + mask.unsqueeze(0)).softmax(-1)
        return x + self.proj(scores @ x)


class Layers(torch.nn.Module):
    """``count`` layers made by ``make``, each fed the one before's output."""

    def __init__(self, make: Callable[[], torch.nn.Module], count: int = 3) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(make() for _ in range(count))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class _MaskedProj(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.proj(x).masked_fill(mask, 0.0)


class BigMask(torch.nn.Module):
    """Layers given a concrete mask of ``rows`` x 256 booleans: a call key compares masks up
    to ``replay.MAX_CONCRETE_ELEMENTS`` by value, larger ones not at all."""

    def __init__(self, rows: int) -> None:
        super().__init__()
        self.rows = rows
        self.layers = torch.nn.ModuleList(_MaskedProj(256) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.ones(self.rows, 256, dtype=torch.bool).triu(1)
        for layer in self.layers:
            x = layer(x, mask)
        return x


class _TakesPair(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, pair: tuple[torch.Tensor, list[torch.Tensor]]) -> torch.Tensor:
        x, (scale, shift) = pair
        return self.proj(x) * scale + shift


class Pairs(torch.nn.Module):
    """Layers given a tuple holding a list: described item by item in the call key."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(_TakesPair() for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = x.mean(), x.std()
        for layer in self.layers:
            x = layer((x, [scale, shift]))
        return x


class Reuses(Layers):
    """A submodule of a replayed layer called again from outside: its second call."""

    def __init__(self) -> None:
        super().__init__(lambda: torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[2][0](super().forward(x))


class _Spectral(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.fft.fft(x).real)  # no FLOP formula for the FFT


class _Residual(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, skip: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proj(x) + skip, skip  # hands back its second argument


class PassesOn(torch.nn.Module):
    """Layers returning one of their arguments as it is, beside a new tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(_Residual() for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x * 2
        for layer in self.layers:
            x, skip = layer(x, skip)
        return x * skip


class _Twice(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.proj(x).relu())


class Warmed(Layers):
    """Layers whose submodule is called twice before them (so no layer is replayed: a
    replay stands for a module's first calls, whose statistics count its parameters)."""

    def __init__(self) -> None:
        super().__init__(_Twice)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer.proj(layer.proj(x))
        return super().forward(x)


class _Mixer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.proj(x) + context


class SharedFromReplayed(torch.nn.Module):
    """A tensor every layer receives, made by a replayed call (the last of a folded run)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoders = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))
        self.layers = torch.nn.ModuleList(_Mixer() for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = x
        for encoder in self.encoders:  # folded: the last one's output is the first's
            context = encoder(context)
        for layer in self.layers:
            x = layer(x, context)
        return x


class _Picker(torch.nn.Module):
    """Picks the rows routed to one expert (a module of its own, as some dispatchers are)."""

    def forward(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return x[rows]


class PickedByModules(torch.nn.Module):
    """Every token goes to every expert (top 4 of 4): each picker gets the same rows, so
    pickers 1-3 replay picker 0, and the experts' inputs are made inside replayed calls
    (still rows picked by an index: the experts are a routed group)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = torch.nn.Linear(8, 4)
        self.pickers = torch.nn.ModuleList(_Picker() for _ in range(4))
        self.experts = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chosen = self.gate(x).topk(4, dim=-1).indices
        out = torch.zeros_like(x)
        for index, (picker, expert) in enumerate(zip(self.pickers, self.experts, strict=True)):
            rows = torch.where(chosen == index)[0]
            out = out.index_add(0, rows, expert(picker(x, rows)))
        return out


class _Experts(torch.nn.Module):
    """Top 2 of 4 experts, each fed the rows routed to it: a routed group."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = torch.nn.Linear(8, 4)
        self.experts = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(4))

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        x = x * scale
        chosen = self.gate(x).topk(2, dim=-1).indices
        out = torch.zeros_like(x)
        for index, expert in enumerate(self.experts):
            rows = torch.where(chosen == index)[0]
            out = out.index_add(0, rows, expert(x[rows]))
        return x + out


class _Stage(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(_Experts() for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.new_ones(x.shape[-1])  # every layer gets it: a shared node in each
        for layer in self.layers:
            x = layer(x, scale)
        return x


class StagedExperts(torch.nn.Module):
    """Stages of expert layers: stages 1 and 2 replay stage 0, inside which layers 1 and 2
    replay layer 0, so the routed groups of those layers are found in nested replays, and
    the shared nodes a stage gives its layers lie inside the calls a stage replays."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = torch.nn.ModuleList(_Stage() for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


class _Project(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class _Relu(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.relu()


class _Tanh(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.tanh()


class _Edge(_Project):
    """Called first and last: the last call replays the first, and no run holds it."""


class _Alternating(torch.nn.Module):
    def __init__(self, between: type[torch.nn.Module]) -> None:
        super().__init__()
        self.first, self.last = _Edge(), _Edge()
        self.parts = torch.nn.ModuleList(
            module() for _ in range(3) for module in (_Project, between))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        for part in self.parts:
            x = part(x)
        return self.last(x)


class LoopsAlike(torch.nn.Module):
    """Two layers of one class, each a loop of three pairs that start alike (a projection)
    but end differently, between a first and a last call of one class (the last replays
    the first, and the fold keeps it): the layers are no run."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([_Alternating(_Relu), _Alternating(_Tanh)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def test_layers_whose_loops_begin_alike_but_differ_are_no_run() -> None:
    """A loop's signature is its whole pattern, not its first item and count."""
    for early_fold in (False, True):
        with torch.device("meta"):
            model = LoopsAlike()
        graph = trace(model, torch.empty(2, 8, device="meta"), early_fold=early_fold)
        layers = [(c.path, c.repeat) for c in graph.modules.values() if c.cls == "_Alternating"]
        assert layers == [("layers.0", None), ("layers.1", None)]
        loops = [c.repeat.count for c in graph.modules.values() if c.cls == "loop"]
        assert loops == [3, 3]


@pytest.mark.parametrize(("model", "shape", "replays"), [
    (Masked, (2, 3, 4), True),  # the same known mask: layers 1 and 2 repeat layer 0
    (functools.partial(Masked, shifted=True), (2, 3, 4), False),  # masks of other values
    (Pair, (2, 8), True),  # layers 1, 4, 7 repeat 0 inside the loop's kept iteration
    (InPlace, (3,), False),  # writes into a tensor made before it
    (Cached, (2, 4), True),  # the buffer is replayed, and read from outside
    (Counting, (3,), False),  # changes its own attribute
    (Nested, (2, 8), True),  # the unfolded sizes count uncalled modules in nested replays
    (functools.partial(BigMask, 256), (256, 256), True),  # a mask of the largest size compared
    (functools.partial(BigMask, 257), (257, 256), False),  # one row more: not compared
    (Pairs, (2, 8), True),
    (Reuses, (2, 8), True),
    (functools.partial(Layers, _Spectral), (2, 8), True),  # replays count uncounted ops
    (PassesOn, (2, 8), True),
    (functools.partial(Layers, _Twice), (2, 8), True),  # a replay stands for both calls
    (Warmed, (2, 8), False),  # not the first calls
    (SharedFromReplayed, (2, 8), True),
    (PickedByModules, (6, 8), True),
    (StagedExperts, (6, 8), True),  # the expert load of layers replayed in a replay
    (LoopsAlike, (2, 8), True),
])
def test_replayed_calls_fold_like_recorded_ones(model: Callable[[], torch.nn.Module],
                                                shape: tuple[int, ...], replays: bool) -> None:
    def build() -> torch.nn.Module:
        with torch.device("meta"):
            return model()

    full, early, replayed = _both_ways(build, torch.empty(*shape, device="meta"))
    assert early == full
    assert (replayed > 0) == replays


def test_671b_blocks_are_replayed() -> None:
    """Each block reads the causal mask, whose values are known: blocks 1, 2 and 4, 5 repeat
    blocks 0 and 3 (with their experts), not only experts."""
    replayed: list[str] = []
    original = replay.Replayer._replay

    def noting(self: replay.Replayer, template: replay.Template, call: object,
               *args: object) -> object:
        result = original(self, template, call, *args)  # type: ignore[arg-type]
        if result is not replay._NOT_REPLAYED:
            replayed.append(call.path)  # type: ignore[attr-defined]
        return result

    model = Transformer(load_config("671B", n_layers=6), RuntimeOptions(device="meta"))
    replay.Replayer._replay = noting  # type: ignore[method-assign]
    try:
        trace(model, torch.empty(1, 128, dtype=torch.int64, device="meta"))
    finally:
        replay.Replayer._replay = original  # type: ignore[method-assign]
    assert [p for p in replayed if p.count(".") == 1] == [
        "layers.1", "layers.2", "layers.4", "layers.5"]


def test_structure_keys_tell_modules_built_alike() -> None:
    with torch.device("meta"):
        shared = torch.nn.Linear(4, 4)
        model = torch.nn.ModuleDict({
            "a": torch.nn.Linear(4, 4), "b": torch.nn.Linear(4, 4), "wide": torch.nn.Linear(4, 8),
            "tied": torch.nn.Sequential(shared, shared), "hooked": torch.nn.Linear(4, 4),
            "stateful": torch.nn.BatchNorm1d(4)})
    model["hooked"].register_forward_hook(lambda *_: None)
    index = ModelIndex(model)
    assert index.key(model["a"]) == index.key(model["b"]) != index.key(model["wide"])
    for name in ("tied", "hooked", "stateful"):  # a shared module, a hook, tensor buffers
        assert index.key(model[name]) == NO_KEY
    assert index.key(model) == NO_KEY
    assert index.path_of(shared) == "tied.0"
    assert [index.path_of(m) for m in index.subtree(model["tied"])] == ["tied", "tied.0"]
    assert index.tensor_name(shared.weight) == ("parameter", "tied.0.weight")
    assert index.tensor_name(model["stateful"].running_mean, model["a"]) == (
        "buffer", "stateful.running_mean")
    assert [name for name, _ in index.named_modules({"tied"})] == [
        "", "a", "b", "wide", "tied", "hooked", "stateful"]


class Failing(torch.nn.Module):
    """Replayed layers, then a forward that fails: the partial graph is complete."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(4))

    def forward(self, x: torch.Tensor) -> float:
        for layer in self.layers:
            x = layer(x)
        return x.sum().item()  # no value on the meta device


def test_a_failed_trace_keeps_every_replayed_call_in_its_partial_graph() -> None:
    graphs = []
    for early_fold in (False, True):
        with torch.device("meta"):
            model = Failing()
        with pytest.raises(TraceError) as failure:
            trace(model, torch.empty(2, 8, device="meta"), early_fold=early_fold)
        graphs.append(failure.value.graph)
    assert graphs[1].to_json() == graphs[0].to_json()
    assert [n.name for n in graphs[1].nodes.values()].count("linear") == 4


class Twice(Layers):
    """Exactly two layers built alike: the second repeats the first."""

    def __init__(self) -> None:
        super().__init__(lambda: torch.nn.Linear(8, 8), count=2)


class _Again(torch.nn.Module):
    """Calls itself once more from inside its forward: its layers are set up for replay by
    a call that is already inside one that set them up."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(2))

    def forward(self, x: torch.Tensor, again: bool = True) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self(x, again=False) if again else x


class Recursive(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = _Again()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize(("model", "shape"), [(Twice, (2, 8)), (Recursive, (2, 8)),
                                           (Nested, (2, 8)), (Cached, (2, 4)),
                                           (Failing, (2, 8))])
def test_a_traced_model_is_left_as_it_was(model: Callable[[], torch.nn.Module],
                                          shape: tuple[int, ...]) -> None:
    """Replaying swaps in a forward on the modules that may repeat a sibling; after the
    trace (and after a failed one) every module runs its class's forward again."""
    with torch.device("meta"):
        built = model()
    before = {name: dict(m.__dict__) for name, m in built.named_modules()}
    try:
        trace(built, torch.empty(*shape, device="meta"))
    except TraceError:
        assert model is Failing
    for name, module in built.named_modules():
        assert "forward" not in module.__dict__, name
        assert module.__dict__.keys() == before[name].keys(), name


@pytest.mark.parametrize(("options", "replays"), [
    ({}, True), ({"fold": False}, False), ({"early_fold": False}, False),
    ({"aten": True}, False), ({"trace_depth": 1}, False), ({"module_depth": 2}, False),
    ({"parameters": "nodes"}, False), ({"observe": lambda *_: None}, False),
    ({"device": "cpu"}, False), ({"device": "cpu", "force_routing": True}, False)])
def test_calls_are_replayed_only_in_a_meta_trace_that_folds_and_draws_modules_as_recorded(
        options: dict[str, object], replays: bool) -> None:
    """A replay stands for a call's torch-level ops: not where the graph shows each call
    (no fold), ATen ops, the ops inside torch functions or parameter nodes, where modules
    below a depth are drawn as one op, where an observer is shown every op, nor in a real
    run (whose values a replay could not repeat)."""
    options = dict(options)
    device = options.pop("device", "meta")
    with torch.device(device):
        model, x = Twice(), torch.randn(2, 8)
    _, replayed = _replayed(model, x, **options)
    assert (replayed > 0) == replays


@pytest.mark.parametrize("model", [Twice, Recursive])
def test_small_repeats_are_replayed_too(model: Callable[[], torch.nn.Module]) -> None:
    def build() -> torch.nn.Module:
        with torch.device("meta"):
            return model()

    full, early, replayed = _both_ways(build, torch.empty(2, 8, device="meta"))
    assert early == full
    assert replayed > 0


class Alternating(RoutingPolicy):
    """Picks the first choices, then the next ones, then the first again: its state (whose
    turn) decides its next answer, and a call of two decisions leaves it as it was."""

    name = "alternating"

    def __init__(self) -> None:
        self.turn = 0

    def reset(self) -> None:
        self.turn = 0

    def choose(self, rows: int, choices: int, k: int, allowed: torch.Tensor | None
               ) -> torch.Tensor:
        picked = (torch.arange(k) + self.turn * k) % choices
        self.turn = 1 - self.turn
        return picked.expand(rows, k).clone()

    def replay_state(self) -> int:
        return self.turn

    def restore_state(self, state: int) -> None:
        self.turn = state


class _Router(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(2):  # the width summed is the choice made
            pick = int(self.gate(x).topk(1, dim=-1).indices[0, 0, 0])
            x = x + x[..., :pick + 1].sum(-1, keepdim=True)
        return x


class RoutedPairs(torch.nn.Module):
    """Routed layers in Pair's pattern (layer 1, kept by the fold, is a replay of layer 0),
    then one more decision: the state at the end is not the one layer 1 began in."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(
            _Router() if i % 3 < 2 else torch.nn.Sequential(torch.nn.Linear(8, 8),
                                                             torch.nn.ReLU())
            for i in range(9))
        self.final = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        pick = int(self.final(x).topk(1, dim=-1).indices[0, 0, 0])
        return x[..., :pick + 1]


def test_a_kept_replay_is_recorded_under_the_routing_state_of_its_own_time() -> None:
    def build() -> torch.nn.Module:
        with torch.device("meta"):
            return RoutedPairs()

    full, early, replayed = _both_ways(build, torch.empty(1, 2, 8, device="meta"),
                                       routing=Alternating())
    assert early == full
    assert replayed > 0
