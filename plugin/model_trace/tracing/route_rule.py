"""The routing rule: index-producing ops (``topk``, ``argmax``, ``max(dim)``, ``sort``...)
take their indices from the routing policy.

On the meta device a gate's scores have no values, so this rule is what makes a mixture of
experts run at all; with real tensors it applies only when the trace forces the policy
(``force_routing``), to compare a real run with a meta trace routed the same way. After a
top-k over (N, G) groups, the next top-k over (N, E) experts keeps to the groups chosen, as
a group-limited gate does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from model_trace.tracing.op_info import OpInfo
from model_trace.tracing.routing import RoutingPolicy

Call = Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]
"""Runs an op: ``call(func, args, kwargs)`` (the recorder's, which counts FLOPs)."""


def argument(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str,
             default: Any = None) -> Any:
    """An op's argument by position or by name."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


class RoutingRule:
    """Answers routing ops from ``policy``; counts its decisions."""

    def __init__(self, policy: RoutingPolicy) -> None:
        self.policy = policy
        self.decisions = 0
        self._groups: tuple[int, int, torch.Tensor] | None = None
        self._groups_digest: tuple[Any, tuple[int, int, bytes]] | None = None
        """The pending group choice and its digest (made once per choice)."""

    # -- what early folding (``replay``) needs to replay a call's routing ----------------
    def state(self) -> tuple[Any, Any]:
        """What decides the next decisions besides their own arguments: the policy's state
        (None if its answers depend on its history, see ``RoutingPolicy``) and the group
        choice a group-limited gate's next top-k would keep to."""
        groups = self._groups
        if groups is None:
            return self.policy.replay_state(), None
        if self._groups_digest is None or self._groups_digest[0] is not groups:
            self._groups_digest = (groups, (groups[0], groups[1], groups[2].numpy().tobytes()))
        return self.policy.replay_state(), self._groups_digest[1]

    def saved(self) -> tuple[Any, Any]:
        """The policy's state and the pending group choice, for ``restore``."""
        return self.policy.replay_state(), self._groups

    def restore(self, saved: tuple[Any, Any]) -> None:
        self.policy.restore_state(saved[0])
        self._groups = saved[1]
        self._groups_digest = None

    def describe(self) -> dict[str, Any]:
        """What goes into ``graph.meta["routing"]``."""
        return {**self.policy.describe(), "decisions": self.decisions}

    def route(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
              result: Any) -> Any:
        """``result`` of routing op ``name`` with its indices (and, for real scores, the
        values at them) replaced by the policy's choice."""
        source = argument(args, kwargs, 0, "input")
        if name in ("topk", "sort", "argsort"):
            dim = argument(args, kwargs, 2 if name == "topk" else 1, "dim", -1)
            if name == "topk":
                k = argument(args, kwargs, 1, "k")
            else:
                k = source.shape[dim] if source.dim() else 1
            if source.dim() == 0:
                indices = torch.zeros((), dtype=torch.int64)
            else:
                indices = self.indices(source.shape, dim, k)
            if name == "argsort":
                return self._on(indices, source)
            return type(result)((self._values(source, dim, indices, result[0]),
                                 self._on(indices, source)))
        if name in ("argmax", "argmin", "max", "min"):
            dim = argument(args, kwargs, 1, "dim")
            if not isinstance(dim, int) or isinstance(dim, bool):
                if name in ("max", "min"):
                    return result  # the value of the whole tensor, or an elementwise max
                if dim is not None:
                    return result
                indices = self.indices((source.numel(),), 0, 1).view(())
                return self._on(indices, source)
            keepdim = argument(args, kwargs, 2, "keepdim", False)
            if source.dim() == 0:
                indices = torch.zeros((), dtype=torch.int64)
                return indices if name in ("argmax", "argmin") else \
                    type(result)((result[0], indices))
            kept = self.indices(source.shape, dim, 1)  # (..., 1, ...), keepdim's shape
            indices = kept if keepdim else kept.squeeze(dim)
            if name in ("argmax", "argmin"):
                return self._on(indices, source)
            values = result[0]
            if not source.is_meta:
                values = self._values(source, dim, kept, values)
                values = values if keepdim else values.squeeze(dim)
            return type(result)((values, self._on(indices, source)))
        if name == "multinomial":
            samples = argument(args, kwargs, 1, "num_samples")
            choices = source.shape[-1]
            if samples > choices:
                return result
            indices = self.indices(source.shape, -1, samples)
            return self._on(indices, source)
        return result  # kthvalue, mode, median: indices become assumed zeros

    def indices(self, shape: torch.Size | tuple[int, ...], dim: int, k: int) -> torch.Tensor:
        """Policy-chosen indices of shape ``shape`` with ``dim`` replaced by ``k``."""
        dim = dim % len(shape)
        choices = shape[dim]
        rows = 1
        for i, size in enumerate(shape):
            if i != dim:
                rows *= size
        allowed = self._allowed(rows, choices)
        chosen = self.policy.choose(rows, choices, k, allowed)
        self.decisions += 1
        if len(shape) == 2 and dim == 1 and allowed is None:  # a choice that kept to groups
            self._groups = (rows, choices, chosen)  # is no group choice itself
        kept = [size for i, size in enumerate(shape) if i != dim]
        return chosen.reshape(*kept, k).movedim(-1, dim)

    def _allowed(self, rows: int, choices: int) -> torch.Tensor | None:
        """The experts of the groups the previous top-k chose, if it chose groups of these."""
        if self._groups is None:
            return None
        group_rows, groups, chosen = self._groups
        if group_rows != rows or choices <= groups or choices % groups:
            return None
        self._groups = None
        kept = torch.zeros(rows, groups, dtype=torch.bool).scatter_(1, chosen, True)
        return kept.repeat_interleave(choices // groups, dim=1)

    @staticmethod
    def _values(source: torch.Tensor, dim: int, indices: torch.Tensor, computed: Any) -> Any:
        if source.is_meta:
            return computed
        return source.gather(dim, indices.to(source.device))

    @staticmethod
    def _on(indices: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        return indices if source.is_meta else indices.to(source.device)


class ForcedRouting:
    """The op rules of a real run with ``force_routing``: every op runs as it is, and only
    routing ops take the policy's indices (tensors stay where the model put them)."""

    results = None  # no meta outputs to cache
    assumed = ""  # nothing is assumed on real tensors

    def __init__(self, policy: RoutingPolicy) -> None:
        self.routing = RoutingRule(policy)

    def run(self, info: OpInfo, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
            tensors: list[torch.Tensor], call: Call) -> Any:
        result = call(func, args, kwargs)
        if info.role == "routing" and tensors:
            return self.routing.route(info.name, args, kwargs, result)
        return result

    def describe(self) -> dict[str, Any]:
        return self.routing.describe()

    def release(self) -> None:
        """Nothing to let go of: no cache."""
