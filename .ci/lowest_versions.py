"""The lowest versions pyproject.toml declares for the dependencies that do not need torch.

    python .ci/lowest_versions.py           # prints "name==version" per line, for pip
    python .ci/lowest_versions.py --check   # fails unless exactly those are installed

CI installs them into a virtual environment of their own (with the system's packages, torch
among them, visible underneath) and runs the plugin's tests there, so the declared minimums are
what is tested, not whatever newer version happened to be installed.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

CHECKED = ("mkdocs", "markdown", "pymdown-extensions", "jinja2", "cairosvg", "pyyaml")
_REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)")


def lowest_versions() -> dict[str, str]:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    found = {}
    for requirement in project["project"]["dependencies"]:
        match = _REQUIREMENT.match(requirement)
        if match and match[1].lower() in CHECKED:
            found[match[1].lower()] = match[2]
    missing = set(CHECKED) - set(found)
    if missing:
        raise SystemExit(f"pyproject.toml declares no '>=' minimum for {sorted(missing)}")
    return found


def _release(version: str) -> tuple[int, ...]:
    """'1.6.0' and '1.6' alike: the numbers, trailing zeros dropped."""
    numbers = [int(part) for part in re.findall(r"\d+", version)]
    while numbers and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def main() -> int:
    versions = lowest_versions()
    if "--check" not in sys.argv[1:]:
        print("\n".join(f"{name}=={version}" for name, version in versions.items()))
        return 0
    wrong = {name: importlib.metadata.version(name) for name in versions
             if _release(importlib.metadata.version(name)) != _release(versions[name])}
    for name, installed in wrong.items():
        print(f"{name} {installed} is installed, not the declared minimum {versions[name]}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
