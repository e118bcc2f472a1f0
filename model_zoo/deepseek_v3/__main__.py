"""`python -m model_zoo.deepseek_v3 --config NAME [--set FIELD=VALUE ...] [--summary]`.

Prints the config's ModelArgs as JSON, or with --summary its parameter breakdown (counted on a
model built on the meta device).
"""

import argparse
import dataclasses
import json

from model_zoo.deepseek_v3.config import list_configs, load_config
from model_zoo.deepseek_v3.summary import COMPONENTS, parameter_breakdown


def _override(text: str) -> tuple[str, object]:
    """FIELD=VALUE with VALUE read as JSON (numbers, true/false, null) or else as a string."""
    field, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    try:
        return field, json.loads(value)
    except json.JSONDecodeError:
        return field, value


def format_breakdown(counts: dict[str, int]) -> str:
    """A text table of `parameter_breakdown`'s counts, exact and in billions."""
    rows = [*COMPONENTS, "total", "activated_per_token", "activated_excl_embedding",
            "mtp_unique", "mtp_activated", "fp8_scales"]
    lines = [f"{'component':<26}{'parameters':>18}{'billions':>11}"]
    for key in rows:
        if key.startswith("mtp") and not counts["mtp"]:
            continue
        if key == "total":
            lines.append("-" * 55)
        lines.append(f"{key:<26}{counts[key]:>18,}{counts[key] / 1e9:>11.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m model_zoo.deepseek_v3", description=__doc__)
    parser.add_argument("--config", required=True, choices=list_configs())
    parser.add_argument(
        "--set",
        type=_override,
        action="append",
        default=[],
        metavar="F=V",
        help="override a ModelArgs field, e.g. --set n_layers=4",
    )
    parser.add_argument("--summary", action="store_true", help="print the parameter breakdown")
    options = parser.parse_args(argv)
    try:
        args = load_config(options.config, **dict(options.set))
    except ValueError as error:
        parser.error(str(error))
    if options.summary:
        print(f"DeepSeek-V3 config {options.config!r}")
        print(format_breakdown(parameter_breakdown(args)))
    else:
        print(json.dumps(dataclasses.asdict(args), indent=2))


if __name__ == "__main__":
    main()
