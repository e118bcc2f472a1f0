"""Build the model and the example inputs a fence spec names, on the meta device.

A fence is code: whatever it names is imported and run when the docs are built. A site
decides what may run with an ``ImportPolicy`` of two lists of import roots:

- library roots (``allowed_roots``; by default ``model_zoo`` and ``torch``): a fence may build
  the public ``nn.Module`` classes *defined* there, and call nothing else;
- the site's own roots (``own_roots``; none by default): a fence may call any class or
  function defined there (model factories, ``make_inputs`` functions).

``check_allowed`` refuses a path outside the roots by its text alone, before anything is
imported (the docs build runs it without importing torch). ``resolve`` runs where the model
is built: it imports the module (running the top-level code of a package the site allowed),
then walks the attribute path and checks where each object on it is defined *before* anything
is called, so ``torch:os.system`` or a function that an allowed package merely re-exports is
refused. The zoo's registered builders (``ZOO``) are allowed wherever ``model_zoo`` is.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from model_trace.errors import ModelLoadError, SpecError, brief, did_you_mean
from model_trace.spec import FenceSpec

if TYPE_CHECKING:
    import torch

DEFAULT_ALLOWED_ROOTS = ("model_zoo", "torch")


@dataclass(frozen=True)
class ImportPolicy:
    """What code a site's fences may run: library roots (public ``nn.Module`` classes only)
    and the site's own roots (any class or function); a root is a package or a dotted module
    prefix."""

    library_roots: tuple[str, ...] = DEFAULT_ALLOWED_ROOTS
    own_roots: tuple[str, ...] = ()
    option_hint: str = field(default="`{name}`", compare=False)
    """How messages name a setting, e.g. "`model_trace_{name}` in conf.py"."""

    def root_of(self, module: str) -> tuple[str, bool] | None:
        """The innermost root holding ``module``, and whether it is one of the site's own."""
        found: tuple[str, bool] | None = None
        for own, roots in ((False, self.library_roots), (True, self.own_roots)):
            for root in roots:
                inside = module == root or module.startswith(root + ".")
                if inside and (found is None or len(root) >= len(found[0])):
                    found = (root, own)
        return found

    def option(self, name: str) -> str:
        return self.option_hint.format(name=name)

    def describe(self) -> str:
        """The roots as a message lists them."""
        own = f"; own: {', '.join(self.own_roots)}" if self.own_roots else ""
        return f"libraries: {', '.join(self.library_roots) or 'none'}{own}"


@dataclass(frozen=True)
class ZooModel:
    """A model of ``model_zoo``: its package, default config and default inputs."""

    package: str
    """Exposes ``load_config(name, **overrides)``, ``list_configs()`` and the model class."""
    build: Callable[[Any, FenceSpec, str], torch.nn.Module]
    """(package module, spec with config filled in, device) -> the model, built on device."""
    default_config: str
    default_inputs: dict[str, Any]
    input_dtypes: dict[str, str] = field(default_factory=dict)
    """dtype of a named input whose fence gives a shape only (token ids are int64)."""
    init_weights: Callable[[Any, torch.nn.Module, int], None] | None = None
    """(package module, model on the CPU, seed): fill the model with seeded random weights,
    for data views and ``execute`` with ``weights: random``."""


def _build_deepseek_v3(package: Any, spec: FenceSpec, device: str) -> torch.nn.Module:
    assert spec.config is not None
    if spec.config not in package.list_configs():
        raise SpecError(f"unknown DeepSeek-V3 config {spec.config!r}"
                        f"{did_you_mean(spec.config, package.list_configs())}; configs: "
                        f"{', '.join(package.list_configs())}", field="config")
    _check_overrides(spec.overrides, package.ModelArgs)
    try:
        model_args = package.load_config(spec.config, **spec.overrides)
    except (TypeError, ValueError) as error:
        raise SpecError(brief(str(error), 300), field="overrides" if spec.overrides
                        else "config") from error
    _check_routing_list(spec.routing, model_args.n_routed_experts,
                        model_args.n_activated_experts)
    if "device" in spec.args:
        raise SpecError("`args` may not set device: model-trace builds a fence's model on the "
                        "meta device itself", field="args")
    try:
        options = package.RuntimeOptions(**spec.args, device=device)
    except (TypeError, ValueError) as error:
        raise SpecError(f"{brief(str(error), 200)}; `args` holds DeepSeek-V3's runtime "
                        "options (attn_impl, gemm_impl, dtype, world_size, rank)",
                        field="args") from error
    return package.Transformer(model_args, options)


def _check_overrides(overrides: dict[str, Any], config_class: type) -> None:
    """Every override names a config field, has its type, and a number is not negative."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
    for name, value in overrides.items():
        if name not in defaults:
            raise SpecError(f"overrides: {config_class.__name__} has no field {name!r}"
                            f"{did_you_mean(str(name), defaults)}", field="overrides")
        default = defaults[name]
        numeric = isinstance(default, int | float) and not isinstance(default, bool)
        if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise SpecError(f"overrides: {name} must be a number, got {brief(repr(value))}",
                            field="overrides")
        if numeric and not 0 <= value <= 2**31:
            raise SpecError(f"overrides: {name} is {value}, outside 0..2**31", field="overrides")


def _check_routing_list(routing: Any, experts: int, active: int) -> None:
    """A routing list names at least ``active`` experts, each below ``experts``."""
    if not isinstance(routing, list):
        return
    wrong = [index for index in routing if index >= experts]
    if wrong:
        raise SpecError(f"routing names expert {wrong[0]}, but the model has {experts} "
                        f"experts (0..{experts - 1})", field="routing")
    if len(routing) < active:
        raise SpecError(f"routing names {len(routing)} experts, but each token picks {active}; "
                        f"name at least {active}", field="routing")


ZOO: dict[str, ZooModel] = {
    "deepseek-v3": ZooModel(
        package="model_zoo.deepseek_v3",
        build=_build_deepseek_v3,
        default_config="671B",
        default_inputs={"tokens": [1, 128]},
        input_dtypes={"tokens": "int64"},
        init_weights=lambda package, model, seed: package.init_weights(model, seed=seed),
    ),
}


FACTORY_FIELDS = ("inputs", "tokenizer", "dataset", "loss")
"""Fields that name a function the build calls (any code, so only from the site's own roots)."""


def _factory_paths(spec: FenceSpec) -> list[tuple[str, str]]:
    """(field, import path) of each function the spec names besides its model."""
    return [(name, value) for name in FACTORY_FIELDS
            if isinstance(value := getattr(spec, name, None), str)]


def imported_modules(spec: FenceSpec) -> list[str]:
    """The modules a spec makes the build import: its model's and those of the functions it
    names (inputs, tokenizer, dataset, loss)."""
    modules = [ZOO[spec.model].package if spec.model in ZOO else spec.model.partition(":")[0]]
    modules += [path.partition(":")[0] for _, path in _factory_paths(spec)]
    return modules


def check_allowed(spec: FenceSpec, policy: ImportPolicy | None) -> None:
    """Raise ``SpecError`` unless every path the spec names may be used under ``policy``,
    judged by the text alone (nothing is imported). None allows anything (the CLI)."""
    if policy is None:
        return
    zoo = ZOO.get(spec.model)
    if zoo is None and ":" not in spec.model:
        raise SpecError(f"'{brief(spec.model)}' is neither a zoo model ({', '.join(ZOO)}) nor "
                        f"an import path 'package.module:Class'{did_you_mean(spec.model, ZOO)}",
                        field="model")
    if zoo is not None:
        if policy.root_of(zoo.package) is None:
            raise SpecError(f"the zoo model '{spec.model}' lives in '{zoo.package}', outside "
                            f"the roots this site allows ({policy.describe()}); add "
                            f"'model_zoo' to {policy.option('allowed_roots')}", field="model")
    else:
        check_path(spec.model, "model", policy)
    for name, path in _factory_paths(spec):
        check_path(path, name, policy)


def check_path(path: str, field_name: str, policy: ImportPolicy) -> tuple[str, bool]:
    """The root holding ``package.module:attribute`` and whether it is the site's own;
    ``SpecError`` if the text alone shows the path may not be used."""
    module, _, attribute = path.partition(":")
    parts = [*module.split("."), *attribute.split(".")]
    if not attribute or not all(part.isidentifier() for part in parts):
        raise SpecError(f"'{brief(path)}' is not an import path; write it as "
                        "'package.module:Class' with Python names, e.g. 'torch.nn:Linear'",
                        field=field_name)
    dunder = next((p for p in parts if p.startswith("__")), None)
    if dunder is not None:
        raise SpecError(f"'{brief(path)}' names '{dunder}'; a fence may not use Python's "
                        "special names", field=field_name)
    found = policy.root_of(module)
    if found is None:
        raise SpecError(_outside_message(module, policy), field=field_name)
    root, own = found
    if own:
        return found
    if field_name in FACTORY_FIELDS:
        raise SpecError(f"'{brief(path)}' is in the library root '{root}'; an {field_name} "
                        "function "
                        "may be any code, so it must be in one of the site's own packages: "
                        f"list yours in {policy.option('own_roots')}", field=field_name)
    private = next((p for p in parts if p.startswith("_")), None)
    if private is not None:
        raise SpecError(f"'{brief(path)}' names the private '{private}' of the library root "
                        f"'{root}'; a fence may use a library's public nn.Module classes only",
                        field=field_name)
    return found


def _outside_message(module: str, policy: ImportPolicy) -> str:
    top = module.split(".")[0]
    roots = (*policy.library_roots, *policy.own_roots)
    if _installed(top):
        return (f"'{module}' is outside the roots this site allows ({policy.describe()}); a "
                f"fence runs the code it names, so list '{top}' in "
                f"{policy.option('allowed_roots')} to use its nn.Module classes, or in "
                f"{policy.option('own_roots')} if it is your own code (classes and functions)")
    nearby = did_you_mean(top, [r.split(".")[0] for r in roots]) or did_you_mean(
        top, _top_level_names())
    return (f"there is no package '{top}' in the environment running the build{nearby} "
            f"(allowed: {policy.describe()}); a site's own package must be installed or in a "
            "folder on the build's Python path (the MkDocs plugin's `paths` option)")


def _installed(top: str) -> bool:
    """Whether a top-level module can be found (found, not imported)."""
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _top_level_names() -> list[str]:
    return [*sys.builtin_module_names, *(m.name for m in pkgutil.iter_modules())]


def resolve(path: str, field_name: str, policy: ImportPolicy | None) -> Any:
    """The object at ``package.module:attribute``, checked against ``policy`` before it is
    returned (and so before anything calls it); None allows anything."""
    if policy is not None:
        check_path(path, field_name, policy)
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise SpecError(f"'{brief(path)}' is not an import path; write it as "
                        "'package.module:Class', e.g. 'torch.nn:Linear'", field=field_name)
    target: Any = _import_module(module_name, field_name)
    walked = module_name
    for part in attribute.split("."):
        target = _attribute(target, part, walked, field_name, guarded=policy is not None)
        walked = f"{walked}{':' if walked == module_name else '.'}{part}"
        if policy is not None:
            _check_defined(target, walked, field_name, policy)
    if policy is not None:
        _check_callable_kind(target, path, field_name, policy)
    return target


def _attribute(owner: Any, name: str, where: str, field_name: str, *, guarded: bool) -> Any:
    """``owner.name``; under a policy a class's attributes are read without running
    descriptors, and only modules and classes may be walked through."""
    if guarded and not (inspect.ismodule(owner) or inspect.isclass(owner)):
        raise SpecError(f"'{where}' is a {type(owner).__name__} object; an import path may "
                        "lead only through modules and classes", field=field_name)
    if inspect.isclass(owner) and guarded:
        try:
            value = inspect.getattr_static(owner, name)
        except AttributeError:
            value = _missing
        if isinstance(value, classmethod | staticmethod):
            value = getattr(owner, name)
    else:
        value = getattr(owner, name, _missing)
    if value is _missing:
        names = [n for n in dir(owner) if not n.startswith("_")]
        raise SpecError(f"'{where}' has no attribute '{name}'{did_you_mean(name, names)}",
                        field=field_name)
    return value


_missing = object()


def _home(obj: Any) -> str | None:
    """The module an object is defined in: a module's own name, a class's or function's
    ``__module__``."""
    if inspect.ismodule(obj):
        return obj.__name__
    if inspect.ismethod(obj):
        obj = obj.__func__
    if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
        return None
    home = getattr(obj, "__module__", None)
    return home if isinstance(home, str) else None


def _check_defined(obj: Any, walked: str, field_name: str, policy: ImportPolicy) -> None:
    """Refuse an object on the path that is defined outside the allowed roots."""
    home = _home(obj)
    if home is not None and policy.root_of(home) is not None:
        return
    if inspect.ismodule(obj):
        where = f"the module '{home}'"
    else:
        where = f"defined in '{home}'" if home else f"a {type(obj).__name__} object"
    raise SpecError(f"'{walked}' is {where}, outside the roots this site allows "
                    f"({policy.describe()}); a fence may use only what the allowed packages "
                    "define themselves", field=field_name)


def _check_callable_kind(obj: Any, path: str, field_name: str, policy: ImportPolicy) -> None:
    """From a library root only public ``nn.Module`` classes; from an own root a class or a
    function; an inputs function only from an own root."""
    import torch

    home = _home(obj)
    found = policy.root_of(home) if home else None
    assert found is not None  # _check_defined let it through
    root, own = found
    if inspect.ismodule(obj):
        raise SpecError(f"'{path}' is a module; name a class in it", field=field_name)
    if own:
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj):
            return
        raise SpecError(f"'{path}' is a {type(obj).__name__}, not a class or a function",
                        field=field_name)
    if field_name in FACTORY_FIELDS:
        raise SpecError(f"'{path}' is defined in the library root '{root}'; an {field_name} "
                        "function "
                        f"must be in one of the site's own packages "
                        f"({policy.option('own_roots')})", field=field_name)
    if inspect.isclass(obj) and issubclass(obj, torch.nn.Module) and not (
            obj.__name__.startswith("_")):
        return
    kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else (
        type(obj).__name__)
    raise SpecError(f"'{path}' is a {kind} defined in the library root '{root}', not an "
                    f"nn.Module class: from a library a fence may build nn.Module classes only; "
                    f"to call a factory function, put it in your own package and list that in "
                    f"{policy.option('own_roots')}", field=field_name)


def _import_module(name: str, field_name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as error:
        parent = name.rpartition(".")[0]
        siblings: list[str] = []
        if parent and parent in sys.modules:
            search = getattr(sys.modules[parent], "__path__", None) or []
            siblings = [f"{parent}.{m.name}" for m in pkgutil.iter_modules(search)]
        hint = did_you_mean(name, siblings) or ("; is it installed (or on the Python path) in "
                                                "the environment running the build?")
        raise SpecError(f"cannot import module '{name}': {brief(str(error), 160)}{hint}",
                        field=field_name) from error


def build_model(spec: FenceSpec, device: str = "meta", *,
                policy: ImportPolicy | None = None) -> torch.nn.Module:
    """The spec's model on ``device``, in eval mode: a zoo model, or its class or factory
    called with ``args``. ``policy`` (None: anything, for code that calls this itself) decides
    what the spec may import and call."""
    import torch

    zoo = ZOO.get(spec.model)
    if zoo is not None:
        if policy is not None:
            check_allowed(spec, policy)
        package = _import_module(zoo.package, "model")
        model = zoo.build(package, _with_zoo_config(spec, zoo), device)
    else:
        if spec.config or spec.overrides:
            name = "config" if spec.config else "overrides"
            raise SpecError(f"'{name}' applies to zoo models ({', '.join(ZOO)}); for an "
                            "import path pass keyword arguments in `args`", field=name)
        factory = resolve(spec.model, "model", policy)
        if not callable(factory):
            raise SpecError(f"'{spec.model}' is not callable; name a class or a factory "
                            "function", field="model")
        _check_signature(factory, spec)
        with torch.device(device):
            model = factory(**spec.args)
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"'{spec.model}' returned a {type(model).__name__}, "
                             "not a torch.nn.Module")
    return model.eval()


def _with_zoo_config(spec: FenceSpec, zoo: ZooModel) -> FenceSpec:
    import dataclasses

    return dataclasses.replace(spec, config=spec.config or zoo.default_config)


def _check_signature(factory: Callable[..., Any], spec: FenceSpec) -> None:
    """Report args the factory does not take as a fence error, before calling it."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to check (some builtins): the call decides
        return
    try:
        signature.bind(**spec.args)
    except TypeError as error:
        takes = [name for name in signature.parameters if name not in ("self", "args",
                                                                        "kwargs")]
        unknown = next((a for a in spec.args if a not in signature.parameters), None)
        hint = did_you_mean(unknown, takes) if unknown is not None else ""
        raise SpecError(f"'{spec.model}' does not take these args: {error}{hint}; it takes "
                        f"{brief(', '.join(takes) or 'no arguments', 200)}",
                        field="args") from error


def build_inputs(spec: FenceSpec, device: str = "meta", *, policy: ImportPolicy | None = None
                 ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword inputs: from shapes (``[2, 16, 64]`` or ``{shape, dtype}``), from
    a ``make_inputs`` function (checked against ``policy``), or the zoo model's defaults."""
    zoo = ZOO.get(spec.model)
    inputs = spec.inputs
    if inputs is None:
        if zoo is None:
            raise SpecError("the field 'inputs' is missing; give the input shapes, e.g. "
                            "`inputs: [[2, 16, 64]]`", field="inputs")
        inputs = zoo.default_inputs
    if isinstance(inputs, str):
        made = resolve(inputs, "inputs", policy)()
        if isinstance(made, dict):
            return (), made
        return (tuple(made) if isinstance(made, list | tuple) else (made,)), {}
    dtypes = zoo.input_dtypes if zoo else {}
    if isinstance(inputs, dict):
        return (), {name: _tensor(value, dtypes.get(name), device)
                    for name, value in inputs.items()}
    return tuple(_tensor(value, None, device) for value in inputs), {}


MAX_INTEGER_ELEMENTS = 2**24
"""The most elements of an integer input: the tracer makes integer tensors concrete (token ids
route experts), so they take real memory, 128 MiB at most."""


def _tensor(value: Any, default_dtype: str | None, device: str) -> torch.Tensor:
    import torch

    if isinstance(value, dict):
        shape, dtype = value["shape"], value.get("dtype")
    else:
        shape, dtype = value, None
    dtype = dtype or default_dtype or "float32"
    torch_dtype = getattr(torch, dtype)
    elements = math.prod(shape)
    if not torch_dtype.is_floating_point and elements > MAX_INTEGER_ELEMENTS:
        raise SpecError(f"the {dtype} input of shape {list(shape)} has {elements:,} elements; "
                        "integer inputs are made concrete, so they may have at most 2**24",
                        field="inputs")
    return torch.empty(shape, dtype=torch_dtype, device=device)
