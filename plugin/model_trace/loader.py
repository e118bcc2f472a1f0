"""Build the model and its example inputs that a fence spec names, on the meta device."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch

from model_trace.errors import ModelLoadError
from model_trace.spec import FenceSpec

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "int64": torch.int64, "int32": torch.int32, "bool": torch.bool}


def import_object(path: str) -> Any:
    """Resolve ``package.module:attribute`` (dots allowed after the colon)."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ModelLoadError(f"'{path}' is not an import path; write it as "
                             "'package.module:factory', e.g. 'torch.nn:Linear'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelLoadError(f"cannot import module '{module_name}': {error}; "
                             "is the package installed in the environment running the build?"
                             ) from error
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelLoadError(f"module '{module_name}' has no attribute '{attribute}'")
        target = getattr(target, part)
    return target


def build_model(spec: FenceSpec, device: str = "meta") -> torch.nn.Module:
    """Call the spec's factory with its ``args`` on ``device``, in eval mode."""
    factory = import_object(spec.model)
    if not callable(factory):
        raise ModelLoadError(f"'{spec.model}' is not callable; name a class or factory function")
    try:
        with torch.device(device):
            model = factory(**spec.args)
    except TypeError as error:
        raise ModelLoadError(f"'{spec.model}' rejected args {spec.args}: {error}") from error
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"'{spec.model}' returned a {type(model).__name__}, "
                             "not a torch.nn.Module")
    return model.eval()


def build_inputs(spec: FenceSpec, device: str = "meta") -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword inputs from shapes (``[2, 16, 64]`` or ``{shape, dtype}``)."""
    if isinstance(spec.inputs, str):
        make_inputs: Callable[..., Any] = import_object(spec.inputs)
        made = make_inputs()
        if isinstance(made, dict):
            return (), made
        return (tuple(made) if isinstance(made, list | tuple) else (made,)), {}
    if isinstance(spec.inputs, dict):
        return (), {name: _tensor(value, name, device) for name, value in spec.inputs.items()}
    return tuple(_tensor(v, str(i), device) for i, v in enumerate(spec.inputs)), {}


def _tensor(value: Any, name: str, device: str) -> torch.Tensor:
    dtype_name = "float32"
    if isinstance(value, dict):
        dtype_name = value.get("dtype", dtype_name)
        value = value.get("shape")
    if not isinstance(value, list) or not all(isinstance(d, int) and d >= 0 for d in value):
        raise ModelLoadError(f"input '{name}' must be a shape like [2, 16, 64] or "
                             f"{{shape: [1, 128], dtype: int64}}, got {value!r}")
    if dtype_name not in _DTYPES:
        raise ModelLoadError(f"input '{name}' has dtype '{dtype_name}'; "
                             f"allowed: {', '.join(_DTYPES)}")
    return torch.empty(value, dtype=_DTYPES[dtype_name], device=device)
