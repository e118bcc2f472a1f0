"""The plugin's options: ``plugins: - model-trace: {...}`` in ``mkdocs.yml``."""

from __future__ import annotations

import os

from mkdocs.config import base
from mkdocs.config import config_options as c
from mkdocs.config.base import ValidationError

from model_trace.errors import SpecError
from model_trace.loader import DEFAULT_ALLOWED_ROOTS
from model_trace.spec import ASSUME_MODES, EXPORT_FORMATS, check_field

THEMES = ("auto", "light", "dark")


class _RoutingPolicy(c.Type):
    """A routing policy, checked as the fence field ``routing`` is."""

    def __init__(self, default: str) -> None:
        super().__init__(str, default=default)

    def run_validation(self, value: object) -> str:
        value = super().run_validation(value)
        try:
            check_field("routing", value)
        except SpecError as error:
            raise ValidationError(str(error)) from error
        return value


class ModelTraceConfig(base.Config):
    """Options under ``plugins: - model-trace:`` in ``mkdocs.yml``."""

    cache = c.Type(bool, default=True)
    """Keep traced figures between builds (in memory under ``mkdocs serve``, and on disk)."""
    cache_dir = c.Type(str, default=".cache/plugin/model-trace")
    """Where the cache lives, relative to ``mkdocs.yml``."""
    shared_cache = c.Type(bool, default=True)
    """Share traces with the other sites built on this machine, in the user's cache folder
    (``$MODEL_TRACE_CACHE_DIR``, else ``$XDG_CACHE_HOME/model-trace/traces``, else
    ``~/.cache/model-trace/traces``): a new site drawing a model another site traced, with
    the same model-trace, torch and model sources, reuses that trace. Off with ``cache``."""
    depth = c.Type(int, default=1)
    """How many module levels a figure opens when a fence gives no ``depth``."""
    routing = _RoutingPolicy(default="balanced")
    """The routing policy of fences that give no ``routing``."""
    allowed_roots = c.ListOfItems(c.Type(str), default=list(DEFAULT_ALLOWED_ROOTS))
    """Libraries (packages or dotted module prefixes) whose public `nn.Module` classes a fence
    may build. A fence is code: the build imports these packages and runs the constructor and
    `forward` of the classes fences name; it calls no function from them."""
    own_roots = c.ListOfItems(c.Type(str), default=[])
    """The site's own packages: a fence may call any class or function defined in them (model
    factories, `make_inputs` functions). List only code you would run yourself."""
    paths = c.ListOfItems(c.Type(str), default=["."])
    """Folders (relative to `mkdocs.yml`) put at the front of `sys.path` of the build and of
    its trace workers, so a site's own model package imports without `PYTHONPATH`."""
    timeout = c.Type((int, float), default=300)
    """Seconds one trace may take; past it, its worker process is killed and the fence fails."""
    jobs = c.Type(int, default=os.cpu_count() or 1)
    """How many fences trace at once, each in its own worker process."""
    on_error = c.Choice(("fail", "warn"), default="fail")
    """``fail`` stops the build on a bad fence; ``warn`` logs it and draws an error box
    (``mkdocs build --strict`` turns the warning into a failure)."""
    export = c.ListOfItems(c.Choice(EXPORT_FORMATS), default=[])
    """Export files (png, svg, json) written next to the page for fences that give no
    ``export``."""
    height = c.Optional(c.Type(int))
    """The most a figure's frame grows to, in pixels, when a fence gives no ``height``
    (default: the stylesheet's 640)."""
    theme = c.Choice(THEMES, default="auto")
    """The figures' colours: ``auto`` follows the page (Material's palette toggle included)."""
    assume = c.Choice(ASSUME_MODES, default="warn")
    """When a trace had to assume values that may change a figure (a branch on a value of
    meta floats): ``error`` fails the fence, ``warn`` logs a warning naming the page, the op
    and the model's line, ``allow`` only marks it in the figure; a fence's ``assume`` wins."""
