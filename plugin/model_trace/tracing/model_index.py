"""One walk over a model's module tree: paths, parameter and buffer names, structure keys.

The tracer names every module call by its path and every parameter an op reads by its
qualified name; early folding (``replay``) needs to know which modules are built alike. All
three come from one pre-order walk, done once per trace (60,486 modules for DeepSeek-V3 671B)
and kept lean: a path or a name is made when asked for, as ``named_modules`` would give it.

A module's *structure key* is a small integer, equal for two modules exactly when they have the
same class, the same plain attributes (numbers, strings, dtypes...), parameters of the same
shapes, strides and dtypes on the meta device, and children with equal keys under the same
names. A module whose behaviour could depend on more than that has no key (``NO_KEY``): one
with module hooks, a tensor buffer, a parameter or submodule shared with another module, an
attribute holding a mutable object, or a parameter with values (not on the meta device).
"""

from __future__ import annotations

import dataclasses
import enum
import types
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

import numpy
import torch

NO_KEY = -1
"""The structure key of a module that cannot be compared with others."""

_MODULE_INTERNALS = frozenset(torch.nn.Module().__dict__)
"""Attributes every ``nn.Module`` has (parameters, buffers, submodules, hooks...)."""
_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), torch.dtype, torch.device,
              torch.Size, type, types.FunctionType, types.BuiltinFunctionType, enum.Enum)
_PLAIN = frozenset({int, float, str, bool, type(None), torch.dtype})
_NAMES: dict[tuple[type, int], tuple[str, ...]] = {}
"""Each class's own attribute names, by class and number of attributes: two modules of a
class with as many attributes have the same names unless one lacks a name (a KeyError)."""


class ModelIndex:
    """Paths, names and structure keys of the modules under ``root`` (None: no model)."""

    def __init__(self, root: torch.nn.Module | None) -> None:
        self.order: list[torch.nn.Module] = []
        """Every module once, in pre-order (a shared module where it is first found)."""
        self._ids = array("q")  # the modules' ids, sorted (searched with bisect: a quarter
        self._places = array("q")  # of numpy's time for one value); the place of each
        self._parent = array("i")  # place of each module's parent (-1: the root)
        self._name: list[str] = []  # its name in its parent
        self._end = array("i")  # where its subtree ends in order
        self._shared_tensors: dict[int, int] = {}  # id -> place of the first module holding
        # a parameter or buffer that several modules hold
        self._paths: dict[int, str] = {}
        self._outside: dict[int, str] = {}  # modules outside the tree, by id
        self._outside_tensors: dict[int, tuple[str, str]] = {}  # their parameters and
        # buffers, by id: (kind, qualified name)
        self._outside_held: list[torch.nn.Module] = []  # the modules named outside, kept
        # alive so that no other module takes an id they were named by
        self._outside_names: set[str] = set()
        self._shared: set[int] = set()  # places of modules holding something shared
        self._keys: list[int] | None = None
        self._last: tuple[Any, int] = (object(), -1)  # the last module _place found, and where
        self._all_owners: dict[int, int] | None = None  # made on the first name not found
        if root is not None:
            self._walk(root)

    def _walk(self, root: torch.nn.Module) -> None:
        order, parents, names = self.order, self._parent, self._name
        at: dict[int, int] = {}  # id(module) -> place, while walking (a sorted array after)
        held = array("q")  # the id of every parameter and buffer, to find shared ones
        stack: list[tuple[torch.nn.Module, int, str]] = [(root, -1, "")]
        while stack:
            module, parent, name = stack.pop()
            found = at.get(id(module))
            if found is not None:  # a module in two places
                self._shared.update((found, parent))
                continue
            place = len(order)
            at[id(module)] = place
            order.append(module)
            parents.append(parent)
            names.append(name)
            for tensors in (module._parameters, module._buffers):
                for tensor in tensors.values():
                    if tensor is not None:
                        held.append(id(tensor))
            stack.extend((child, place, child_name)
                         for child_name, child in reversed(module._modules.items())
                         if child is not None)
        ends = array("i", range(1, len(order) + 1))
        for place in range(len(order) - 1, 0, -1):  # a subtree ends where its last child's does
            parent = parents[place]
            if ends[place] > ends[parent]:
                ends[parent] = ends[place]
        self._end = ends
        ids = numpy.fromiter(at, dtype=numpy.int64, count=len(at))
        by_id = numpy.argsort(ids)
        self._ids.frombytes(memoryview(ids[by_id]).cast("B"))
        self._places.frombytes(memoryview(
            numpy.fromiter(at.values(), dtype=numpy.int64, count=len(at))[by_id]).cast("B"))
        del at, by_id
        ids = numpy.sort(numpy.frombuffer(held, dtype=numpy.int64))  # no Python int per id
        twice = set(ids[1:][ids[1:] == ids[:-1]].tolist())
        if twice:
            self._find_shared_tensors(twice)

    def _find_shared_tensors(self, twice: set[int]) -> None:
        """Note the modules holding a tensor held by several, and its first holder."""
        for place, module in enumerate(self.order):
            for tensors in (module._parameters, module._buffers):
                for tensor in tensors.values():
                    if tensor is not None and id(tensor) in twice:
                        self._shared_tensors.setdefault(id(tensor), place)
                        self._shared.update((self._shared_tensors[id(tensor)], place))

    def _place(self, module: torch.nn.Module) -> int | None:
        """Where a module is in ``order`` (None: not in the tree). The last module found is
        remembered: the tracer names a module call, then the parameters it reads."""
        if module is self._last[0]:
            return self._last[1]
        ids = self._ids
        at = bisect_left(ids, id(module))
        if at < len(ids) and ids[at] == id(module):
            place = self._places[at]
            self._last = (module, place)
            return place
        return None

    # -- names -------------------------------------------------------------------------
    def path_of(self, module: torch.nn.Module) -> str | None:
        """A module's path in the tree (None: not in it, nor added with ``add_module``)."""
        place = self._place(module)
        if place is None:
            return self._outside.get(id(module))
        return self._path(place)

    def _path(self, place: int) -> str:
        path = self._paths.get(place)
        if path is None:
            parent = self._parent[place]
            if parent < 0:
                path = ""
            else:
                above = self._path(parent)
                path = f"{above}.{self._name[place]}" if above else self._name[place]
            self._paths[place] = path
        return path

    def name(self, module: torch.nn.Module) -> str:
        """A module's path in the tree or, outside it (a plain function's module, or one the
        forward makes), a path of its own given at first sight: its class name, numbered
        from the second object of a class on (``Linear``, ``Linear#2``), never a path of
        the tree (a child called ``Linear`` makes it ``Linear#2``). The trace and a
        measured run name modules alike, so their calls are matched by name."""
        path = self.path_of(module)
        if path is not None:
            return path
        cls = type(module).__name__
        path, number = cls, 1
        while path in self._outside_names or self._in_tree(path):
            number += 1
            path = f"{cls}#{number}"
        self._outside_names.add(path)
        self._outside_held.append(module)
        self.add_module(module, path)
        return path

    def _in_tree(self, path: str) -> bool:
        """Whether ``path`` names a module of the tree (a child called ``Linear``)."""
        if not self.order:
            return False
        try:
            self.order[0].get_submodule(path)
        except AttributeError:
            return False
        return True

    def add_module(self, module: torch.nn.Module, path: str) -> None:
        """Name a module outside the root's tree (and its submodules) under ``path``, and
        the parameters and buffers they hold: a function's modules, or one the forward
        makes, read weights as the model's own do."""
        for name, sub in module.named_modules(remove_duplicate=False):
            if self._place(sub) is not None or id(sub) in self._outside:
                continue
            sub_path = self._outside[id(sub)] = f"{path}.{name}" if name else path
            for kind, tensors in (("parameter", sub._parameters), ("buffer", sub._buffers)):
                for own_name, tensor in tensors.items():
                    if tensor is not None:
                        self._outside_tensors.setdefault(id(tensor),
                                                         (kind, f"{sub_path}.{own_name}"))

    def tensor_name(self, tensor: torch.Tensor, near: torch.nn.Module | None = None
                    ) -> tuple[str, str] | None:
        """("parameter" or "buffer", qualified name) of a tensor the tree holds (named at the
        first module holding it) or a module added outside it holds, or None. It is looked
        for below ``near`` (the module running) first, then everywhere."""
        place = self._shared_tensors.get(id(tensor))
        if place is None:
            start = self._place(near) if near is not None else None
            if start is not None:  # usually the running module's own, or a child's
                for place in range(start, self._end[start]):
                    found = self._name_in(place, tensor)
                    if found is not None:
                        return found
            if self._all_owners is None:  # held elsewhere, or a constant: look it up
                self._all_owners = {id(t): place for place, module in enumerate(self.order)
                                    for tensors in (module._parameters, module._buffers)
                                    for t in tensors.values() if t is not None}
            place = self._all_owners.get(id(tensor))
            if place is None:
                return self._outside_tensors.get(id(tensor))
        return self._name_in(place, tensor)

    def _name_in(self, place: int, tensor: torch.Tensor) -> tuple[str, str] | None:
        module = self.order[place]
        for kind, tensors in (("parameter", module._parameters), ("buffer", module._buffers)):
            for name, held in tensors.items():
                if held is tensor:
                    path = self._path(place)
                    return kind, f"{path}.{name}" if path else name
        return None

    def buffers(self) -> list[torch.Tensor]:
        """Every buffer of the tree (as ``root.buffers()``: each once, in pre-order)."""
        found: dict[int, torch.Tensor] = {}
        for module in self.order:
            for buffer in module._buffers.values():
                if buffer is not None:
                    found.setdefault(id(buffer), buffer)
        return list(found.values())

    # -- subtrees ------------------------------------------------------------------------
    def subtree(self, module: torch.nn.Module) -> list[torch.nn.Module]:
        """The module and every module below it, in pre-order."""
        place = self._place(module)
        assert place is not None, "a module of the tree"
        return self.order[place:self._end[place]]

    def named_modules(self, skipped: set[str] = frozenset()) -> Iterator[  # type: ignore[assignment]
            tuple[str, torch.nn.Module]]:
        """``root.named_modules()``, without the modules below the paths ``skipped``."""
        place = 0
        while place < len(self.order):
            path = self._path(place)
            yield path, self.order[place]
            place = self._end[place] if path in skipped else place + 1

    # -- structure keys ------------------------------------------------------------------
    def key(self, module: torch.nn.Module) -> int:
        """The module's structure key (``NO_KEY`` if it has none or is outside the tree)."""
        place = self._place(module)
        if place is None:
            return NO_KEY
        if self._keys is None:
            self._keys = self._structure_keys()
        return self._keys[place]

    def _structure_keys(self) -> list[int]:
        """Keys of every module, children before parents (reverse pre-order)."""
        order, parents = self.order, self._parent
        interned: dict[tuple[Any, ...], int] = {}
        keys = [NO_KEY] * len(order)
        below: dict[int, list[int]] = {}  # place -> its children's keys, the last child first
        for place in range(len(order) - 1, -1, -1):
            children_keys = below.pop(place, [])
            own = None if place in self._shared else _own_state(order[place])
            if own is not None:
                children = []
                for name, child in order[place]._modules.items():
                    child_key = children_keys.pop() if child is not None else None
                    if child_key == NO_KEY:
                        break
                    children.append((name, child_key))
                else:
                    state = (own, tuple(children))
                    found = interned.get(state)
                    if found is None:
                        found = interned[state] = len(interned)
                    keys[place] = found
            if parents[place] >= 0:
                below.setdefault(parents[place], []).append(keys[place])
        return keys


def _own_state(module: torch.nn.Module) -> tuple[Any, ...] | None:
    """What decides a module's own behaviour, as a hashable value; None if something could
    change it that the value does not show."""
    values = module.__dict__
    if (values["_forward_hooks"] or values["_forward_pre_hooks"] or values["_backward_hooks"]
            or values["_backward_pre_hooks"]):
        return None
    names = _NAMES.get((type(module), len(values)))
    try:
        own = tuple(map(values.__getitem__, names))  # type: ignore[arg-type]
    except (KeyError, TypeError):  # a first instance, or a layout this class has not had
        names = _NAMES[type(module), len(values)] = (
            "training", *(n for n in values if n not in _MODULE_INTERNALS))
        own = tuple(map(values.__getitem__, names))
    for value in own:
        if type(value) not in _PLAIN and not _immutable(value):
            return None
    params = []
    for name, param in module._parameters.items():
        if param is None:
            params.append(name)
            continue
        if not param.is_meta:
            return None
        attributes = param.__dict__
        if attributes:
            described = _parameter_attributes(module, attributes)
            if described is None:
                return None
        else:
            described = ()
        params.append((name, type(param), param.shape, param.stride(), param.dtype,
                       param.requires_grad, described))
    buffers = module._buffers
    if buffers:
        if any(buffer is not None for buffer in buffers.values()):
            return None
        params.append(tuple(buffers))
    return (type(module), names, own, tuple(params))


def _parameter_attributes(module: torch.nn.Module, attributes: dict[str, Any]
                          ) -> tuple[Any, ...] | None:
    """Python attributes set on a parameter (an fp8 weight's ``scale``), as a value."""
    described = []
    for attribute, value in attributes.items():
        if isinstance(value, torch.Tensor):
            same = next((n for n, p in module._parameters.items() if p is value), None)
            if same is None:
                return None
            described.append((attribute, "parameter", same))
        elif _immutable(value):
            described.append((attribute, type(value), value))
        else:
            return None
    return tuple(described)


def _immutable(value: Any) -> bool:
    """Whether ``value`` cannot change (so comparing it now is comparing it for good)."""
    if isinstance(value, _IMMUTABLE):
        return True
    if isinstance(value, tuple | frozenset):
        return all(_immutable(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return bool(value.__dataclass_params__.frozen) and all(  # type: ignore[attr-defined]
            _immutable(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False
