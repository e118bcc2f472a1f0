"""``model-trace``: the pipeline from the command line, for use outside docs."""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_trace.errors import ModelLoadError, ModelTraceError, SpecError, brief, readable
from model_trace.session import Settings
from model_trace.spec import (
    EXECUTE_DEVICES,
    FIELDS,
    FenceSpec,
    parse_spec,
    read_yaml,
    spec_from_mapping,
)

if TYPE_CHECKING:
    from model_trace.cache import SharedTraces
    from model_trace.graph import Graph

FORMATS = ("html", "svg", "png", "json")
PREFIX = "model-trace-1"


def _render(args: argparse.Namespace) -> None:
    from model_trace.cache import PREFIX_PLACEHOLDER
    from model_trace.dataviews import check_view_fields
    from model_trace.pipeline import run_fence, svg_to_png

    spec = parse_spec(Path(args.spec).read_text(encoding="utf-8"))
    if args.execute is not None:
        spec = dataclasses.replace(spec, execute=args.execute)
    check_view_fields(spec)
    out = Path(args.output)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ModelTraceError(f"cannot write '{out}': the suffix must be one of "
                              f"{', '.join('.' + f for f in FORMATS)}")
    defaults = Settings()
    exports = ("svg",) if fmt == "png" else () if fmt == "html" else (fmt,)
    spec = spec.with_defaults(depth=defaults.depth, routing=defaults.routing, export=exports)
    output = run_fence(spec, args.theme, shared=_shared(spec, args))
    for message in output.warnings:
        print(f"warning: {message}", file=sys.stderr)
    for note in output.notes:
        print(f"note: {note}", file=sys.stderr)
    if fmt == "html":
        figure = output.html.replace(PREFIX_PLACEHOLDER, PREFIX)
        out.write_text(standalone_page(figure, spec.caption or spec.model), encoding="utf-8")
    elif fmt == "png":
        out.write_bytes(svg_to_png(output.exports["svg"].decode("utf-8"), args.scale))
    else:
        out.write_bytes(output.exports[fmt])
    print(f"wrote {out}")


OPTION_OF_FIELD = {"args": "--arg", "config": "--config", "overrides": "--set",
                   "inputs": "--inputs", "routing": "--routing", "fold": "--no-fold",
                   "trace_depth": "--trace-depth", "aten": "--aten",
                   "world_size": "--world-size", "rank": "--rank", "model": "MODEL"}
"""The command-line option that sets each trace field of a fence, for error messages."""


def _trace_command(args: argparse.Namespace) -> None:
    graph = _trace_model(args)
    text = graph.to_json(indent=args.indent)
    if args.output == "-":
        sys.stdout.write(text + "\n")
        return
    Path(args.output).write_text(text, encoding="utf-8")
    print(f"wrote {args.output}: {len(graph.modules)} module calls, {len(graph.nodes)} nodes, "
          f"{len(graph.tensors)} tensors")


def _summary_command(args: argparse.Namespace) -> None:
    from model_trace.tracing import summary_table

    print(summary_table(_trace_model(args), args.depth))


def _trace_model(args: argparse.Namespace) -> Graph:
    """The model the command line names, traced as a fence with the same fields would be."""
    from model_trace.caveats import assumption_messages
    from model_trace.pipeline import shared_or_traced

    spec = _spec_from_options(args)
    try:
        shared = _shared(spec, args)
        graph, model_warnings, _ = shared_or_traced(spec, None, shared[0] if shared else None)
    except ModelTraceError:
        raise
    except Exception as error:  # the model's own code failed while being built
        raise ModelLoadError(f"building '{spec.model}' failed: "
                             f"{type(error).__name__}: {error}") from error
    for message in [*model_warnings, *assumption_messages(graph)]:
        print(f"warning: {message}", file=sys.stderr)
    return graph


def _shared(spec: FenceSpec, args: argparse.Namespace) -> tuple[SharedTraces, ...]:
    """Where the spec's traces are kept for later runs, in the folder where sites share theirs
    (keyed under no import policy, so apart from the sites' entries); none with
    ``--no-shared-cache``."""
    if args.no_shared_cache:
        return ()
    from model_trace.cache import user_cache_dir
    from model_trace.session import TraceSession

    settings = Settings(allowed_roots=None, shared_dir=user_cache_dir(), isolate=False)
    return TraceSession(settings).shared(spec)


def _spec_from_options(args: argparse.Namespace) -> FenceSpec:
    from model_trace.loader import ZOO

    fields: dict[str, Any] = {"model": args.model, "fold": not args.no_fold,
                              "trace_depth": args.trace_depth, "aten": args.aten,
                              "world_size": args.world_size, "rank": args.rank}
    settings = dict(args.set)
    if args.model in ZOO:
        fields["overrides"] = settings
        fields["args"] = dict(args.arg)
    else:
        fields["args"] = {**dict(args.arg), **settings}
    if args.config is not None:
        fields["config"] = args.config
    for name in ("inputs", "routing"):  # written as in a fence, in YAML
        text = getattr(args, name)
        if text is not None:
            fields[name] = _yaml_value(text, OPTION_OF_FIELD[name])
    try:
        spec = spec_from_mapping(fields)
    except SpecError as error:  # its message speaks of fence fields: name the option too
        option = OPTION_OF_FIELD.get(error.field or "", "option")
        raise SpecError(f"{option}: {error}", field=error.field) from error
    return spec.with_defaults(depth=0, routing=Settings().routing, export=())


def _yaml_value(text: str, option: str) -> Any:
    try:
        return read_yaml(text)
    except SpecError as error:
        raise SpecError(f"{option} {brief(repr(text), 60)}: {error}") from error


def _key_value(text: str) -> tuple[str, Any]:
    """``k=v`` with a YAML value (``n_layers=4``, ``dtype=fp8``, ``bias=false``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value, e.g. n_layers=4")
    try:
        return key, read_yaml(value)
    except SpecError as error:
        raise argparse.ArgumentTypeError(f"the value of {text!r}: {error}") from error


DESCRIPTION = ("model-trace draws the computation graph of a PyTorch model, traced on the meta "
               "device: render a fence spec to a file, write a model's graph as JSON, or print "
               "its per-module summary")


def plain(text: str) -> str:
    """Help text in the command line's one style: plain text (no Markdown backticks), starting
    in lower case, without a final period."""
    text = text.replace("`", "").strip().removesuffix(".")
    first_word = text.split(" ", 1)[0]
    return text if first_word[1:] != first_word[1:].lower() else text[:1].lower() + text[1:]


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options that say what to trace: the trace fields of a fence."""
    parser.add_argument("model", metavar="MODEL",
                        help="a zoo model (deepseek-v3) or an import path package.module:factory")
    parser.add_argument("--config", help=plain(FIELDS["config"].description))
    parser.add_argument("--set", type=_key_value, action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a field of the zoo config (e.g. n_layers=4), or for an import "
                        "path a keyword argument of the factory; repeatable, YAML values")
    parser.add_argument("--arg", type=_key_value, action="append", default=[],
                        metavar="KEY=VALUE",
                        help=plain(FIELDS["args"].description) + "; repeatable")
    parser.add_argument("--inputs", metavar="YAML", help=plain(FIELDS["inputs"].description)
                        + "; written as in a fence: '[[8, 64]]', '{tokens: [1, 128]}'")
    parser.add_argument("--routing", metavar="POLICY",
                        help=plain(FIELDS["routing"].description))
    parser.add_argument("--no-fold", action="store_true",
                        help="keep every repeated layer instead of folding runs into one")
    parser.add_argument("--trace-depth", type=int, default=0, metavar="N",
                        help=plain(FIELDS["trace_depth"].description))
    parser.add_argument("--aten", action="store_true", help=plain(FIELDS["aten"].description))
    parser.add_argument("--world-size", type=int, default=1, metavar="N",
                        help=plain(FIELDS["world_size"].description))
    parser.add_argument("--rank", type=int, default=0, metavar="R",
                        help=plain(FIELDS["rank"].description))
    _add_shared_cache_option(parser)


def _add_shared_cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-shared-cache", action="store_true",
                        help="trace anew and keep the trace to this run, instead of sharing "
                        "traces with other runs in the user's cache folder "
                        "($MODEL_TRACE_CACHE_DIR, else $XDG_CACHE_HOME/model-trace/traces)")


def standalone_page(figure: str, title: str) -> str:
    """A complete HTML page around one figure, with the viewer's script and style inlined, so
    the file works on its own."""
    from model_trace.viewer_files import asset_bytes, asset_names

    files = [(name, asset_bytes(name)) for name in asset_names()]
    styles = "\n".join(f"<style>\n{content.decode('utf-8')}\n</style>"
                       for name, content in files if name.endswith(".css"))
    scripts = "\n".join(f"<script>\n{_script_safe(content.decode('utf-8'))}\n</script>"
                        for name, content in files if name.endswith(".js"))
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="color-scheme" content="light dark">\n'
            f"<title>{html.escape(title)}</title>\n{styles}\n</head>\n<body>\n{figure}\n"
            f"{scripts}\n</body>\n</html>\n")


def _script_safe(code: str) -> str:
    """A script's text that cannot end its inline ``<script>`` element early."""
    return code.replace("</script", "<\\/script")


def _diff_command(args: argparse.Namespace) -> None:
    from model_trace.compare import Traced, Variant, diff_graphs, diff_text, draw_compare
    from model_trace.pipeline import focused, trace_spec

    defaults = Settings()
    specs = [parse_spec(Path(name).read_text(encoding="utf-8")).with_defaults(
        depth=defaults.depth, routing=defaults.routing, export=()) for name in args.specs]
    if len(specs) == 1 and specs[0].compare is None:
        raise ModelTraceError("give two or more spec files, or one with a `compare:` field")
    if len(specs) == 1:
        from model_trace.compare import trace_compare

        traced = trace_compare(specs[0])
        base = specs[0]
    else:
        titles = [Path(name).stem for name in args.specs]
        traced = Traced([Variant(t, s) for t, s in zip(titles, specs, strict=True)],
                        [trace_spec(s) for s in specs])
        base = dataclasses.replace(specs[0], compare=None, caption="")
    pairs = [focused(g, v.spec) for g, v in zip(traced.graphs, traced.variants, strict=True)]
    diff = diff_graphs([g for g, _ in pairs], [v.title for v in traced.variants])
    print(diff_text(diff, limit=args.limit))
    if args.output:
        out = Path(args.output)
        if out.suffix == ".json":
            out.write_text(json.dumps(diff.to_json(), indent=1, sort_keys=True) + "\n",
                           encoding="utf-8")
        elif out.suffix == ".html":
            from model_trace.cache import PREFIX_PLACEHOLDER

            page = draw_compare(traced, base, args.theme).html.replace(PREFIX_PLACEHOLDER,
                                                                        PREFIX)
            out.write_text(standalone_page(page, " vs ".join(diff.titles)), encoding="utf-8")
        else:
            raise ModelTraceError(f"cannot write '{out}': the suffix must be .html or .json")
        print(f"wrote {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="model-trace", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser(
        "render", help="trace a fence spec and write html (standalone), svg, png or json")
    render.add_argument("spec", help="a YAML file with the same fields as a model-trace fence")
    render.add_argument("-o", "--output", required=True, help="output file: .html .svg .png .json")
    render.add_argument("--scale", type=float, default=1.0, help="PNG scale factor")
    render.add_argument("--execute", choices=EXECUTE_DEVICES, default=None, metavar="DEVICE",
                        help=plain(FIELDS["execute"].description) + " (a fence's execute)")
    render.add_argument("--theme", choices=("auto", "light", "dark"), default="auto",
                        help="the figure's colours (html)")
    _add_shared_cache_option(render)
    render.set_defaults(run=_render)
    trace = commands.add_parser(
        "trace", help="trace a model and write its Graph JSON (see the graph schema)")
    _add_model_options(trace)
    trace.add_argument("-o", "--output", required=True, help="the JSON file ('-': stdout)")
    trace.add_argument("--indent", type=int, default=1, help="JSON indent (default 1)")
    trace.set_defaults(run=_trace_command)
    summary = commands.add_parser(
        "summary", help="trace a model and print its per-module table: parameters, FLOPs, "
        "shapes")
    _add_model_options(summary)
    summary.add_argument("--depth", type=int, default=None, metavar="N",
                         help="show module calls at most N levels below the model (default: all)")
    summary.set_defaults(run=_summary_command)
    diff = commands.add_parser(
        "diff", help="trace two or more fence specs (or one with a compare field) and print "
        "what differs: totals, ops per kind, and every module or op only in some or changed")
    diff.add_argument("specs", nargs="+", metavar="SPEC", help="YAML files with the fields of "
                      "a model-trace fence (focus applies: compare the same part of each)")
    diff.add_argument("-o", "--output", help="also write the side-by-side figures (.html) or "
                      "the differences (.json)")
    diff.add_argument("--limit", type=int, default=200, metavar="N",
                      help="list at most N differing items (default 200)")
    diff.add_argument("--theme", choices=("auto", "light", "dark"), default="auto",
                      help="the figures' colours (html)")
    diff.set_defaults(run=_diff_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ModelTraceError, OSError) as error:
        print(f"model-trace: error: {readable(str(error))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
