"""Build the model and the example inputs a fence spec names, on the meta device.

A model is code, so a docs build imports only what its configuration allows: ``check_allowed``
refuses an import path outside the allowed roots before anything is imported. The zoo
registry (``ZOO``) names the models shipped in ``model_zoo``. Torch is imported only when a
model is really built, so the docs build can check and cache fences without it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from model_trace.errors import ModelLoadError, SpecError
from model_trace.spec import FenceSpec

if TYPE_CHECKING:
    import torch

DEFAULT_ALLOWED_ROOTS = ("model_zoo", "torch")


@dataclass(frozen=True)
class ZooModel:
    """A model of ``model_zoo``: its package, default config and default inputs."""

    package: str
    """Exposes ``load_config(name, **overrides)``, ``list_configs()`` and the model class."""
    build: Callable[[Any, str, dict[str, Any], dict[str, Any]], torch.nn.Module]
    """(package module, config name, overrides, args) -> the model, built on the current device."""
    default_config: str
    default_inputs: dict[str, Any]
    input_dtypes: dict[str, str] = field(default_factory=dict)
    """dtype of a named input whose fence gives a shape only (token ids are int64)."""


def _build_deepseek_v3(package: Any, config: str, overrides: dict[str, Any],
                       args: dict[str, Any]) -> torch.nn.Module:
    try:
        model_args = package.load_config(config, **overrides)
    except ValueError as error:
        raise SpecError(str(error), field="overrides" if overrides else "config") from error
    try:
        options = package.RuntimeOptions(**args)
    except (TypeError, ValueError) as error:
        raise SpecError(f"{error}; `args` holds DeepSeek-V3's runtime options (attn_impl, "
                        "gemm_impl, dtype, world_size, rank)", field="args") from error
    return package.Transformer(model_args, options)


ZOO: dict[str, ZooModel] = {
    "deepseek-v3": ZooModel(
        package="model_zoo.deepseek_v3",
        build=_build_deepseek_v3,
        default_config="671B",
        default_inputs={"tokens": [1, 128]},
        input_dtypes={"tokens": "int64"},
    ),
}


def imported_modules(spec: FenceSpec) -> list[str]:
    """The modules a spec makes the build import: its model's and its inputs' (if a path)."""
    modules = [ZOO[spec.model].package if spec.model in ZOO else spec.model.partition(":")[0]]
    if isinstance(spec.inputs, str):
        modules.append(spec.inputs.partition(":")[0])
    return modules


def check_allowed(spec: FenceSpec, allowed_roots: tuple[str, ...] | None,
                  option: str = "allowed_roots") -> None:
    """Raise ``SpecError`` unless every module the spec imports is under an allowed root.

    ``allowed_roots`` None allows anything (the CLI); ``option`` names the setting to change.
    """
    if allowed_roots is None:
        return
    if spec.model not in ZOO and ":" not in spec.model:
        raise SpecError(f"'{spec.model}' is neither a zoo model ({', '.join(ZOO)}) nor an "
                        "import path 'package.module:factory'", field="model")
    for name, module in zip(("model", "inputs"), imported_modules(spec), strict=False):
        if not any(module == root or module.startswith(root + ".") for root in allowed_roots):
            top = module.split(".")[0]
            raise SpecError(
                f"'{module}' is outside the allowed import roots ({', '.join(allowed_roots)}); "
                f"a model is code, so add '{top}' to {option} to let the docs build import it",
                field=name)


def import_object(path: str, field_name: str = "model") -> Any:
    """Resolve ``package.module:attribute`` (dots allowed after the colon)."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise SpecError(f"'{path}' is not an import path; write it as "
                        "'package.module:factory', e.g. 'torch.nn:Linear'", field=field_name)
    target: Any = _import_module(module_name, field_name)
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise SpecError(f"module '{module_name}' has no attribute '{attribute}'",
                            field=field_name)
        target = getattr(target, part)
    return target


def _import_module(name: str, field_name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise SpecError(f"cannot import module '{name}': {error}; is it installed (or on "
                        "PYTHONPATH) in the environment running the build?",
                        field=field_name) from error


def build_model(spec: FenceSpec, device: str = "meta") -> torch.nn.Module:
    """The spec's model on ``device``, in eval mode: a zoo model, or its factory called with
    ``args``."""
    import torch

    zoo = ZOO.get(spec.model)
    if zoo is not None:
        package = _import_module(zoo.package, "model")
        with torch.device(device):
            model = zoo.build(package, spec.config or zoo.default_config, spec.overrides,
                              spec.args)
    else:
        if spec.config or spec.overrides:
            name = "config" if spec.config else "overrides"
            raise SpecError(f"'{name}' applies to zoo models ({', '.join(ZOO)}); for an "
                            "import path pass keyword arguments in `args`", field=name)
        factory = import_object(spec.model)
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


def _check_signature(factory: Callable[..., Any], spec: FenceSpec) -> None:
    """Report args the factory does not take as a fence error, before calling it."""
    try:
        inspect.signature(factory).bind(**spec.args)
    except TypeError as error:
        raise SpecError(f"'{spec.model}' does not take args {spec.args}: {error}",
                        field="args") from error
    except ValueError:  # no signature to check (some builtins): let the call decide
        pass


def build_inputs(spec: FenceSpec, device: str = "meta") -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword inputs: from shapes (``[2, 16, 64]`` or ``{shape, dtype}``), from
    a ``make_inputs`` function, or the zoo model's defaults."""
    zoo = ZOO.get(spec.model)
    inputs = spec.inputs
    if inputs is None:
        if zoo is None:
            raise SpecError("the field 'inputs' is missing; give the input shapes, e.g. "
                            "`inputs: [[2, 16, 64]]`", field="inputs")
        inputs = zoo.default_inputs
    if isinstance(inputs, str):
        made = import_object(inputs, "inputs")()
        if isinstance(made, dict):
            return (), made
        return (tuple(made) if isinstance(made, list | tuple) else (made,)), {}
    dtypes = zoo.input_dtypes if zoo else {}
    if isinstance(inputs, dict):
        return (), {name: _tensor(value, dtypes.get(name), device)
                    for name, value in inputs.items()}
    return tuple(_tensor(value, None, device) for value in inputs), {}


def _tensor(value: Any, default_dtype: str | None, device: str) -> torch.Tensor:
    import torch

    if isinstance(value, dict):
        shape, dtype = value["shape"], value.get("dtype")
    else:
        shape, dtype = value, None
    dtype = dtype or default_dtype or "float32"
    return torch.empty(shape, dtype=getattr(torch, dtype), device=device)
