"""Mutants of the viewer's JavaScript (layout and rendering), for ``mutation.py``.

The figure engine runs in V8 (at build time through mini-racer, in the reader's browser), so
its bugs are as real as the Python ones. This finds the same kinds of mutants as the Python
finder, on tokens rather than a syntax tree: comparisons flipped (``<`` -> ``<=``, ``===`` ->
``!==``), ``+``/``-`` and ``*``/``/`` swapped, ``&&``/``||`` swapped, a ``!`` dropped, an
integer off by one, ``true``/``false`` flipped, a name-like string changed, an ``if`` or
``while`` condition negated, ``Math.min``/``Math.max`` and ``some``/``every`` swapped,
``continue``/``break`` swapped and an expression statement dropped. Comments, strings,
template literals and regular expressions are masked first, so only code is mutated; a
mutant that V8 does not parse is left out (``parses``). Palette colours, the constants of
upper-case design tables (``MT.LAYOUT``'s font sizes, paddings and gaps, the overlay ``RAMP``),
text joined with ``+`` and whole function definitions are not mutated: the first two are
design choices, not logic, the others only make ``NaN`` or a ReferenceError that every test
meets.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_REGEX_BEFORE = set("(,=:[!&|?{};+-*%<>~^")
"""A ``/`` after one of these (or a keyword such as ``return``) starts a regular expression."""
_KEYWORDS_BEFORE_VALUE = ("return", "typeof", "case", "in", "of", "new", "delete", "void")
_STATEMENT_KEYWORDS = frozenset({
    "var", "let", "const", "return", "function", "if", "for", "while", "else", "switch",
    "case", "do", "try", "catch", "finally", "throw", "break", "continue", "default", "new",
    "use"})
"""An expression statement starting with one of these is not dropped (a declaration, a
control statement: dropping it breaks the syntax or only adds a ReferenceError)."""


@dataclass(frozen=True)
class JsChange:
    """One mutant of a JavaScript source: a span replaced."""

    operator: str
    function: str
    """The nearest enclosing named function ("<file>" outside any)."""
    start: int
    end: int
    replacement: str


def mask(source: str) -> str:
    """``source`` with comments, strings, templates and regex literals blanked (same length,
    newlines kept), so that patterns match code only."""
    return _scan(source)[0]


def _scan(source: str) -> tuple[str, list[tuple[int, int]]]:
    """The masked code and the spans of the strings' contents (without their quotes)."""
    out = list(source)
    strings: list[tuple[int, int]] = []
    i, n = 0, len(source)
    last = ""  # the last significant code character
    last_word = ""

    def blank(a: int, b: int) -> None:
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = source[i]
        if source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif source.startswith("/*", i):
            j = source.find("*/", i + 2)
            j = n if j < 0 else j + 2
            blank(i, j)
            i = j
        elif c in "'\"`":
            j = i + 1
            while j < n and source[j] != c:
                j += 2 if source[j] == "\\" else 1
            blank(i + 1, j)  # the quotes stay: the string is still a value
            if c != "`":
                strings.append((i + 1, j))
            i = j + 1
            last = c
        elif c == "/" and (last in _REGEX_BEFORE or not last
                           or last_word in _KEYWORDS_BEFORE_VALUE):
            j, in_class = i + 1, False
            while j < n and (in_class or source[j] != "/"):
                if source[j] == "\\":
                    j += 1
                elif source[j] == "[":
                    in_class = True
                elif source[j] == "]":
                    in_class = False
                j += 1
            j += 1
            while j < n and source[j].isalpha():  # flags
                j += 1
            blank(i, j)
            i = j
            last = "/"
            last_word = ""
        else:
            if not c.isspace():
                if c.isalnum() or c in "_$":
                    m = re.compile(r"[\w$]+").match(source, i)
                    assert m is not None
                    last_word = m.group()
                    last = last_word[-1]
                    i = m.end()
                    continue
                last, last_word = c, ""
            i += 1
    return "".join(out), strings


def _matching(code: str, open_at: int) -> int:
    """The index of the bracket closing the one at ``open_at`` (in masked code)."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = []
    for k in range(open_at, len(code)):
        ch = code[k]
        if ch in pairs:
            stack.append(pairs[ch])
        elif ch in ")]}":
            if not stack or stack.pop() != ch:
                return -1
            if not stack:
                return k
    return -1


_FUNCTION_NAME = re.compile(
    r"function\s+([\w$]+)\s*\(|([\w$.]+)\s*[=:]\s*function\b")


def _function_names(code: str) -> Callable[[int], str]:
    """Where each named function's body spans, and a look-up of the innermost at a spot."""
    spans: list[tuple[int, int, str]] = []
    for m in _FUNCTION_NAME.finditer(code):
        name = (m.group(1) or m.group(2)).replace("MT.", "").replace(".prototype.", ".")
        body = code.find("{", m.end())
        close = _matching(code, body) if body >= 0 else -1
        if close > 0:
            spans.append((body, close, name))

    def at(offset: int) -> str:
        inner = [s for s in spans if s[0] <= offset <= s[1]]
        return min(inner, key=lambda s: s[1] - s[0])[2] if inner else "<file>"

    return at


_COMPARE = [(r"===", "!=="), (r"!==", "==="), (r"(?<![=!])==(?!=)", "!="),
            (r"!=(?!=)", "=="), (r"<=", "<"), (r">=", ">"),
            (r"(?<![<])<(?![<=])", "<="), (r"(?<![>=])>(?![>=])", ">=")]
_ARITHMETIC = [(r"(?<![+])\+(?![+=])", "-"), (r"(?<![-])-(?![-=>])", "+"),
               (r"(?<![*/])\*(?![*=/])", "/"), (r"(?<![*/])/(?![*=/])", "*"),
               (r"\+=", "-="), (r"-=", "+="), (r"\*=", "/="), (r"/=", "*=")]
_SWAPS = [(r"&&", "||"), (r"\|\|", "&&"), (r"\btrue\b", "false"), (r"\bfalse\b", "true"),
          (r"\bMath\.min\b", "Math.max"), (r"\bMath\.max\b", "Math.min"),
          (r"\.some\(", ".every("), (r"\.every\(", ".some("),
          (r"\bcontinue\b", "break"), (r"\bbreak\b", "continue")]
_NAME_LIKE = re.compile(r"^[A-Za-z_#.:-][A-Za-z0-9_.:#/-]{0,30}$")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{3,8}$")
"""Palette colours are design choices, not logic: not mutated."""


def _is_unary(code: str, at: int) -> bool:
    """A ``+``/``-`` at ``at`` is a sign, not an operator: what comes before is no value."""
    before = code[:at].rstrip()
    if not before:
        return True
    if before[-1] in "(,=:[!&|?{};+-*/%<>~^":
        return True
    word = re.search(r"[\w$]+$", before)
    return bool(word and word.group() in _KEYWORDS_BEFORE_VALUE)


def _joins_text(code: str, at: int) -> bool:
    """A ``+`` next to a string literal joins text: ``-`` there only makes ``NaN``."""
    before, after = code[:at].rstrip(), code[at + 1:].lstrip()
    return bool((before and before[-1] in "'\"") or (after and after[0] in "'\""))


def _candidates(source: str, code: str,
                strings: list[tuple[int, int]]) -> Iterator[tuple[str, int, int, str]]:
    for operator, table in (("compare", _COMPARE), ("arithmetic", _ARITHMETIC),
                            ("swap", _SWAPS)):
        for pattern, new in table:
            for m in re.finditer(pattern, code):
                if operator == "arithmetic" and (
                        (m.group() in ("+", "-") and _is_unary(code, m.start()))
                        or (m.group() == "+" and _joins_text(code, m.start()))):
                    continue
                yield operator, m.start(), m.end(), new
    for m in re.finditer(r"!(?!=)", code):
        yield "unary", m.start(), m.end(), ""
    for m in re.finditer(r"(?<![\w$.])(\d+)(?![\w$.])", code):
        value = int(m.group(1))
        yield "constant", m.start(), m.end(), str(value + 1)
        if value:
            yield "constant", m.start(), m.end(), str(value - 1)
    for start, end in strings:
        if _NAME_LIKE.match(source[start:end]) and not _COLOUR.match(source[start:end]):
            yield "constant", start, end, source[start:end] + "_x"
    for m in re.finditer(r"\b(if|while)\s*\(", code):
        close = _matching(code, m.end() - 1)
        if close > 0:
            inner = source[m.end():close]
            yield "negate", m.end(), close, f"!({inner})"
    yield from _dropped_statements(code)


def _dropped_statements(code: str) -> Iterator[tuple[str, int, int, str]]:
    """Expression statements (calls, assignments) ended by ``;``, each replaced by nothing."""
    starts = [m.end() for m in re.finditer(r"[;{}]|\)(?=\s*[\w$])", code)]
    for begin in starts:
        m = re.compile(r"\s*([\w$][\w$.\[\]]*)").match(code, begin)
        if not m or m.group(1).split(".")[0] in _STATEMENT_KEYWORDS:
            continue
        start, depth, k = m.start(1), 0, m.start(1)
        while k < len(code):
            ch = code[k]
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
                if depth < 0:
                    break
            elif ch == ";" and depth == 0:
                break
            k += 1
        if k < len(code) and code[k] == ";" and depth == 0:
            text = code[start:k]
            if ("(" in text or "=" in text) and "\n" not in text and "function" not in text:
                yield "drop", start, k, ""


def find_js_changes(source: str) -> list[JsChange]:
    """Every token-level mutant of a JavaScript source (unparsed ones included)."""
    code, strings = _scan(source)
    function_at = _function_names(code)
    design = [(m.end() - 1, _matching(code, m.end() - 1))
              for m in re.finditer(r"(?:\bvar\s+|\bMT\.)[A-Z][A-Z_]*\s*=\s*[\[{]", code)]
    found = {(start, end, new): JsChange(operator, function_at(start), start, end, new)
             for operator, start, end, new in _candidates(source, code, strings)
             if not (operator == "constant" and any(a < start < b for a, b in design))}
    return sorted(found.values(), key=lambda c: (c.start, c.end, c.operator, c.replacement))


CALLED = "__mutationCalled"
"""The global object in which ``instrument``'s notes say which blocks ran."""


def _opening(code: str, close_at: int) -> int:
    """The index of the ``(`` that the ``)`` at ``close_at`` closes (in masked code)."""
    depth = 0
    for k in range(close_at, -1, -1):
        if code[k] == ")":
            depth += 1
        elif code[k] == "(":
            depth -= 1
            if not depth:
                return k
    return -1


def _blocks(code: str) -> list[tuple[int, int]]:
    """The braces of every block of statements, in source order: function bodies and the
    bodies of ``if``, ``else``, ``for``, ``while``, ``do``, ``try``, ``catch`` and
    ``finally`` (not object literals, not ``switch`` bodies, whose cases come first)."""
    found = []
    for m in re.finditer(r"\{", code):
        before = code[:m.start()].rstrip()
        if before.endswith(")"):
            word = re.search(r"([\w$]+)\s*$", code[:max(0, _opening(code, len(before) - 1))])
            if word and word.group(1) == "switch":
                continue
        elif not (before.endswith("=>") or re.search(r"\b(else|do|try|finally)$", before)):
            continue
        close = _matching(code, m.start())
        if close > 0:
            found.append((m.start(), close))
    return found


def block_finder(source: str) -> Callable[[int], int]:
    """A look-up of the innermost block of statements at an offset of ``source``, by the
    number ``instrument`` notes it under (-1 outside every block)."""
    blocks = _blocks(mask(source))

    def at(offset: int) -> int:
        inner = [(close - start, i) for i, (start, close) in enumerate(blocks)
                 if start < offset < close]
        return min(inner)[1] if inner else -1

    return at


_DIRECTIVE = re.compile(r"""\s*(["'])use strict\1;?""")


def instrument(source: str) -> str:
    """``source`` with every block of statements noting, as it starts, that it ran (in
    ``globalThis[CALLED]``, under its ``block_finder`` number as a string): what the baseline
    run reads after every test to map blocks to the tests that run them, as the Python
    modules' lines are traced. Nothing else changes: each note is a statement of its own at
    the start of its block (after a "use strict" directive, which must stay first)."""
    pieces, at = [f"globalThis.{CALLED} = globalThis.{CALLED} || {{}};\n"], 0
    for index, (start, _close) in enumerate(_blocks(mask(source))):
        directive = _DIRECTIVE.match(source, start + 1)
        body = directive.end() if directive else start + 1
        pieces += [source[at:body], f"{CALLED}['{index}'] = 1;"]
        at = body
    pieces.append(source[at:])
    return "".join(pieces)


TAKE_CALLED = (f"(function () {{ var ids = Object.keys(globalThis.{CALLED} || {{}}); "
               f"globalThis.{CALLED} = {{}}; return ids; }})")
"""A JavaScript function that returns the blocks noted since it was last called, and forgets
them."""


_PARSE_CHECK = """
import json, os, sys
from py_mini_racer import MiniRacer
job = json.load(sys.stdin)
source, found, context = job["source"], [], None
check = "(function (t) { try { new Function(t); return true; } catch (e) { return false; } })"
for index, (start, end, new) in enumerate(job["changes"]):
    if index % 50 == 0:  # a long-lived context slows down parse after parse
        if context is not None:
            context.close()
        context = MiniRacer()
    found.append(context.call(check, source[:start] + new + source[end:]))
print(json.dumps(found), flush=True)
os._exit(0)  # an isolate can hang the interpreter's shutdown
"""


def parses(source: str, changes: list[JsChange]) -> list[bool]:
    """Whether V8 parses the source with each change (in a child process: V8 does not
    survive a fork, and the parent of ``mutation.py`` forks)."""
    import json
    import subprocess
    import sys

    job = {"source": source, "changes": [(c.start, c.end, c.replacement) for c in changes]}
    done = subprocess.run([sys.executable, "-c", _PARSE_CHECK], input=json.dumps(job),
                          capture_output=True, text=True, check=True, timeout=900)
    return [bool(ok) for ok in json.loads(done.stdout)]
