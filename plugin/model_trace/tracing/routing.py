"""Routing policies: which experts a gate picks when its scores have no values.

On the meta device a gate's scores are shapes without numbers, yet a mixture of experts needs
concrete expert indices to run its own code (``bincount(...).tolist()``, ``where(indices ==
i)``, Python branches on counts). The tracer asks a routing policy for every index-producing
op (``topk``, ``argmax``, ``max(dim)``, ``sort``...) whose input is on the meta device, and
the policy answers with concrete CPU indices. With real tensors the real routing is used,
unless the trace forces the policy (``trace(..., force_routing=True)``).

A policy is deterministic: the same model, inputs and policy give the same routing. What each
one stands for:

- ``balanced``: a trained gate whose load balancing has done its job (DeepSeek-V3's bias
  update): every expert gets the same number of tokens, and a token of a group-limited gate
  spreads its experts over all the groups it kept, as the gate's group score (the sum of a
  group's best experts) favours;
- ``random``: a gate with no balancing at all, uniform random choices (seeded): the load
  varies from expert to expert by chance and some experts may get no token;
- ``first``: a collapsed router, every token to the same first experts, the failure that
  load balancing exists to prevent;
- a fixed list: one scenario chosen by hand; it must respect the gate's group limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

ROUTING_NAMES = ("balanced", "random", "first")
"""Names ``routing_policy`` accepts (``uniform`` is an alias of ``random``)."""


class RoutingPolicy:
    """Chooses ``k`` distinct indices out of ``choices`` for each of ``rows`` rows.

    ``allowed`` (rows, choices) bool, when given, marks the choices a row may take (the
    groups its gate kept); a policy honours it where it can.
    """

    name = ""
    """How the figure's caption names the policy; a policy of the user's own without one is
    named by its class."""

    def reset(self) -> None:
        """Called at the start of every trace, so each trace routes the same way."""

    def choose(self, rows: int, choices: int, k: int, allowed: torch.Tensor | None
               ) -> torch.Tensor:
        """(rows, k) int64 indices, distinct within each row."""
        raise NotImplementedError(f"the routing policy {type(self).__name__} defines no "
                                  "choose(rows, choices, k, allowed)")

    def describe(self) -> dict[str, Any]:
        """What goes into ``graph.meta["routing"]``."""
        return {"policy": self.name or type(self).__name__}

    def replay_state(self) -> Any:
        """A hashable value that, with its arguments, decides every later answer, or None
        when answers depend on the history of requests (a seeded generator). A trace replays
        a repeated module call that routes (``replay``) only under a policy with a state,
        restoring the state the call left; the default is None (never replayed)."""
        return None

    def restore_state(self, state: Any) -> None:
        """Go back to a state ``replay_state`` returned."""


class BalancedRouting(RoutingPolicy):
    """Least-loaded first, and spread over the allowed groups.

    Without ``allowed``, the rows take the choices in turn (row ``r`` takes ``r * k`` to
    ``r * k + k - 1``, modulo ``choices``): always the ``k`` taken least often so far, so
    every choice gets the same load when rows * k is a multiple of ``choices``. With
    ``allowed`` (a group-limited gate's experts), each row takes ``k`` choices evenly spaced
    over its allowed ones (with 4 allowed groups of 32 and k = 8: two in each group), at the
    offset whose choices are least loaded: every allowed group gets k / (allowed groups) of
    the row's experts, and the load stays as even as the group choice allows."""

    name = "balanced"

    def __init__(self) -> None:
        # A choice depends on nothing but its arguments, and a model asks the same question
        # in every layer (116 times for 671B): each is answered once.
        self._answers: dict[tuple[int, int, int, bytes | None], torch.Tensor] = {}

    def choose(self, rows: int, choices: int, k: int, allowed: torch.Tensor | None
               ) -> torch.Tensor:
        key = (rows, choices, k, allowed.numpy().tobytes() if allowed is not None else None)
        answer = self._answers.get(key)
        if answer is None:
            answer = (torch.arange(rows * k) % choices).view(rows, k) if allowed is None \
                else self._spread(rows, choices, k, allowed)
            self._answers[key] = answer
        return answer.clone()

    def replay_state(self) -> Any:
        return ()  # an answer depends on its arguments only

    @staticmethod
    def _spread(rows: int, choices: int, k: int, allowed: torch.Tensor) -> torch.Tensor:
        load = torch.zeros(choices, dtype=torch.int64)
        chosen = torch.empty(rows, k, dtype=torch.int64)
        for row in range(rows):
            positions = allowed[row].nonzero().flatten()  # the row's allowed choices, in order
            if len(positions) < k:  # too few allowed: a gate's top-k then takes masked ones
                outside = (~allowed[row]).nonzero().flatten()
                extra = outside[load[outside].argsort(stable=True)[:k - len(positions)]]
                picked = torch.cat([positions, extra])
            else:
                count = len(positions)
                stride = -(-count // k)
                offsets = torch.arange(stride)
                slots = torch.arange(k) * count // k  # evenly spaced over the allowed ones
                candidates = positions[(slots + offsets[:, None]) % count]  # (stride, k)
                loads = load[candidates]
                # least total load, then least peak load (a load is below rows, so the
                # total decides first), then round robin over offsets
                cost = (loads.sum(1) * rows + loads.amax(1)) * stride + (offsets - row) % stride
                picked = candidates[cost.argmin()]
            chosen[row] = picked
            load[picked] += 1
        return chosen


class RandomRouting(RoutingPolicy):
    """Uniformly random distinct choices per row, from a generator seeded with ``seed``."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    def reset(self) -> None:
        self._generator.manual_seed(self.seed)

    def choose(self, rows: int, choices: int, k: int, allowed: torch.Tensor | None
               ) -> torch.Tensor:
        scores = torch.rand(rows, choices, generator=self._generator)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, -1.0)
        return scores.topk(k, dim=1).indices

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, "seed": self.seed}


class FixedRouting(RoutingPolicy):
    """Every row takes the same experts: ``experts[:k]`` (``None``: the first ``k``).

    ``experts`` may also be a list of per-row lists, used in turn (row ``r`` takes list
    ``r % len(experts)``). A request the list cannot answer (more choices than it names, or
    an index out of range, such as a gate's group choice) takes the first ``k`` choices.

    Under a group-limited gate (``allowed`` given, after a choice of ``k'`` groups among
    ``G``) a list whose experts fall in more than ``k'`` groups of ``choices / G`` is refused
    with a ``ValueError``: no gate could route a token so.
    """

    def __init__(self, experts: Sequence[int] | Sequence[Sequence[int]] | None = None) -> None:
        if experts is None:
            self.table: list[list[int]] | None = None
        elif all(isinstance(e, int) for e in experts):
            self.table = [list(experts)]  # type: ignore[arg-type]
        elif all(isinstance(e, Sequence) for e in experts):
            self.table = [list(row) for row in experts]  # type: ignore[arg-type,union-attr]
        else:
            raise ValueError(f"FixedRouting experts {list(experts)} must be a list of expert "
                             "indices or a list of such lists, one per row, not a mix")
        if self.table is not None:
            for row in self.table:
                if len(set(row)) != len(row) or any(e < 0 for e in row):
                    raise ValueError(f"FixedRouting experts {row} must be distinct indices >= 0")
        self.name = "first" if experts is None else "fixed"
        self._previous: tuple[int, int] | None = None  # (choices, k) of the last request

    def reset(self) -> None:
        self._previous = None

    def replay_state(self) -> Any:
        return ("previous", self._previous)  # answers depend on the arguments only; the
        # previous request only decides whether a list is refused

    def restore_state(self, state: Any) -> None:
        self._previous = state[1]

    def choose(self, rows: int, choices: int, k: int, allowed: torch.Tensor | None
               ) -> torch.Tensor:
        table, previous = self.table, self._previous
        self._previous = (choices, k)
        if (table is None or any(len(row) < k for row in table)
                or max(max(row[:k]) for row in table) >= choices):
            return torch.arange(k, dtype=torch.int64).expand(rows, k).clone()
        if allowed is not None and previous is not None:
            for row in table:
                self._check_group_limit(row[:k], choices, *previous)
        chosen = torch.tensor([row[:k] for row in table], dtype=torch.int64)
        return chosen.repeat((rows + len(table) - 1) // len(table), 1)[:rows]

    @staticmethod
    def _check_group_limit(experts: list[int], choices: int, groups: int, limit: int) -> None:
        """Refuse experts spread over more than ``limit`` of ``groups`` equal groups."""
        if groups >= choices or choices % groups:
            return
        size = choices // groups
        spanned = list(dict.fromkeys(e // size for e in experts))
        if len(spanned) <= limit:
            return
        kept = spanned[:limit]
        example = [e for e in experts if e // size in kept]
        example += [e for g in kept for e in range(g * size, (g + 1) * size)
                    if e not in example][:len(experts) - len(example)]
        raise ValueError(
            f"routing {experts} sends a token to experts in {len(spanned)} groups, but the gate "
            f"keeps at most {limit} of its {groups} groups of {size} experts (experts "
            f"{', '.join(f'{g * size}-{g * size + size - 1}' for g in range(min(groups, 3)))}"
            f"{', ...' if groups > 3 else ''}) for each token; list experts of at most "
            f"{limit} groups, e.g. {example}")

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"policy": self.name}
        if self.table is not None:
            described["experts"] = self.table[0] if len(self.table) == 1 else self.table
        return described


def routing_policy(spec: str | Sequence[int] | RoutingPolicy | None) -> RoutingPolicy:
    """A policy from a name (``balanced``, ``random``/``uniform``, ``first``), a list of expert
    indices (fixed routing), a policy object, or None (balanced)."""
    if spec is None:
        return BalancedRouting()
    if isinstance(spec, RoutingPolicy):
        return spec
    if isinstance(spec, str):
        name, colon, seed = spec.partition(":")
        if name in ("random", "uniform") and (not colon or seed.isdigit()):
            return RandomRouting(int(seed) if seed else 0)
        if name == "balanced" and not colon:
            return BalancedRouting()
        if name == "first" and not colon:
            return FixedRouting(None)
        raise ValueError(f"unknown routing policy {spec!r}; use one of {', '.join(ROUTING_NAMES)}"
                         " (random:SEED for another seed), or a list of expert indices")
    return FixedRouting(list(spec))
