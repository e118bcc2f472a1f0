"""What any good layered layout of one group must satisfy, checked on the figure engine's output
(``MT.layoutGroup`` for one group, ``engine.place`` for a whole figure).

Each check returns the problems it found (empty: the layout holds). They are properties, not
expected coordinates: boxes keep the spacing the layout's own constants (``MT.LAYOUT``) promise,
every edge runs one way from border to border without crossing a box, lines pass boxes and
each other with clearance, a label sits beside its own line, edges leaving (entering) a box
spread in the order of where they go, a chain is one straight line, a fork is centred.
A left-to-right layout is checked on swapped axes: the same algorithm, turned.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from model_trace.engine import evaluate

EPS = 0.15
"""Coordinates are rounded to 0.1 px."""
LABEL_ASCENT, LABEL_DESCENT = 8, 0
"""The extent of a 10 px edge label above and below its baseline."""


@functools.cache
def constants() -> dict[str, float]:
    """``MT.LAYOUT``: the layout's font sizes, paddings and gaps."""
    return dict(evaluate("(function () { return modelTrace.LAYOUT; })"))


def text_width(text: str, size: float, bold: bool = False) -> float:
    return float(evaluate("modelTrace.textWidth", text, size, bold))


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    @property
    def centre(self) -> float:
        return self.x + self.w / 2

    def overlaps(self, other: Rect, margin: float = 0.5) -> bool:
        return (self.x < other.right - margin and other.x < self.right - margin
                and self.y < other.bottom - margin and other.y < self.bottom - margin)

    def holds(self, x: float, y: float, margin: float = 0.0) -> bool:
        """Strictly inside, ``margin`` in from every side."""
        return (self.x + margin < x < self.right - margin
                and self.y + margin < y < self.bottom - margin)


Point = tuple[float, float]


@dataclass
class Route:
    """An edge as drawn: its points, and what it joins."""

    pts: list[Point]
    src: str
    """A box (``c<k>``), a port of an open box (``c<k>:<key>``) or the group's own port
    (``i:<key>`` / ``o:<key>``)."""
    dst: str
    keys: tuple[Any, ...] = ()
    label: str = ""


@dataclass
class Label:
    text: str
    x: float
    y: float
    width: float

    @property
    def rect(self) -> Rect:
        return Rect(self.x, self.y - LABEL_ASCENT, self.width, LABEL_ASCENT + LABEL_DESCENT)


@dataclass
class Group:
    """One laid-out group in top-to-bottom terms (a left-to-right one with its axes swapped)."""

    boxes: dict[str, Rect]
    """Children by end name (``c<k>``)."""
    routes: list[Route]
    labels: list[Label] = field(default_factory=list)
    frame: Rect | None = None
    title: Rect | None = None
    port_x: dict[str, float] = field(default_factory=dict)
    """Where each port end (``c<k>:<key>``, ``i:<key>``, ``o:<key>``) lies along its border."""
    lr: bool = False


def _swap(p: Point) -> Point:
    return (p[1], p[0])


def group_of(layout_input: dict[str, Any], out: dict[str, Any]) -> Group:
    """The output of ``MT.layoutGroup`` for ``layout_input``, as a :class:`Group`."""
    lr = layout_input.get("direction") == "LR"
    c = constants()
    boxes, port_x = {}, {}
    for k, kid in enumerate(layout_input["kids"]):
        x, y = out["kids"][k]
        w, h = kid["w"], kid["h"]
        boxes[f"c{k}"] = Rect(y, x, h, w) if lr else Rect(x, y, w, h)
        for side in ("ins", "outs"):
            for key, at in kid.get(side, {}).items():
                port_x[f"c{k}:{key}:{side}"] = boxes[f"c{k}"].x + at
    for key, at in out["ins"].items():
        port_x[f"i:{key}"] = at
    for key, at in out["outs"].items():
        port_x[f"o:{key}"] = at
    routes = []
    for r in out["routes"]:
        link = layout_input["links"][r["link"]]
        pts = [tuple(p) for p in r["pts"]]
        routes.append(Route([_swap(p) for p in pts] if lr else pts, link["from"], link["to"],
                            tuple(link["keys"]), link.get("label", "")))
    labels = [Label(lab["text"], lab["x"], lab["y"], text_width(lab["text"], c["edgeFont"]))
              for lab in out["labels"]]
    frame = Rect(0, 0, out["h"], out["w"]) if lr else Rect(0, 0, out["w"], out["h"])
    title_w = layout_input["titleWidth"]
    title = Rect(out["title"][0], out["title"][1], title_w, c["titleHeight"])
    if lr:
        title = Rect(title.y, title.x, title.h, title.w)
    return Group(boxes, routes, labels, frame, title, port_x, lr)


# -- geometry ------------------------------------------------------------------------------
def _segments(route: Route) -> Iterator[tuple[Point, Point]]:
    return itertools.pairwise(route.pts)


def _cross(p: Point, q: Point, r: Point) -> float:
    return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])


def segments_cross(a: tuple[Point, Point], b: tuple[Point, Point]) -> bool:
    """Whether two segments cross at a point inside both (touching ends do not count)."""
    (p, q), (r, s) = a, b
    d1, d2 = _cross(p, q, r), _cross(p, q, s)
    d3, d4 = _cross(r, s, p), _cross(r, s, q)
    return d1 * d2 < -1e-6 and d3 * d4 < -1e-6


def crossings(routes: list[Route]) -> int:
    """Pairs of pieces of different routes that cross (shared points do not count)."""
    total = 0
    for a, b in itertools.combinations(routes, 2):
        total += sum(segments_cross(s, t) for s in _segments(a) for t in _segments(b))
    return total


def x_at(route: Route, y: float) -> list[float]:
    """Where the route is at height ``y`` (each piece spanning it)."""
    found = []
    for (x0, y0), (x1, y1) in _segments(route):
        if min(y0, y1) <= y <= max(y0, y1) and y0 != y1:
            found.append(x0 + (x1 - x0) * (y - y0) / (y1 - y0))
    return found


def _through(segment: tuple[Point, Point], box: Rect, margin: float = 1.0) -> bool:
    (x0, y0), (x1, y1) = segment
    return any(box.holds(x0 + (x1 - x0) * t / 32, y0 + (y1 - y0) * t / 32, margin)
               for t in range(1, 32))


def _owner(end: str) -> str:
    return end.split(":")[0]


# -- the checks ----------------------------------------------------------------------------
def check_spacing(group: Group, row_gap: float | None = None) -> list[str]:
    """Boxes inside the frame by its padding; boxes side by side at least ``nodeSep`` apart;
    one above another at least ``row_gap`` apart (by default two rank gaps and an empty
    label rank: room for an edge between them)."""
    c, problems = constants(), []
    if group.frame is not None:
        f = group.frame
        for name, b in group.boxes.items():
            if (b.x < f.x + c["pad"] - EPS or b.right > f.right - c["pad"] + EPS
                    or b.y < f.y + c["pad"] - EPS or b.bottom > f.bottom - c["pad"] + EPS):
                problems.append(f"{name} {b} is not inside {f} by the padding")
        if group.title is not None:
            for name, b in group.boxes.items():
                if b.overlaps(group.title, 0):
                    problems.append(f"{name} {b} overlaps the title {group.title}")
            if not group.lr and f.w < group.title.w + 2 * c["pad"] - EPS:
                problems.append(f"the title ({group.title.w} px) does not fit {f}")
            for port, x in group.port_x.items():  # in-ports share the title's rank
                beside = x - 3 - group.title.right
                if not group.lr and port[0] == "i" and beside < c["boxToLine"] - EPS:
                    problems.append(f"in-port {port} is {beside:.1f} px from the title")
    if row_gap is None:
        row_gap = 2 * c["rankGap"] + c["emptyLabelRank"]
    for (m, a), (n, b) in itertools.combinations(group.boxes.items(), 2):
        if a.y < b.bottom and b.y < a.bottom:  # side by side
            gap = max(b.x - a.right, a.x - b.right)
            if gap < c["nodeSep"] - EPS:
                problems.append(f"{m} and {n} are {gap:.1f} px apart side by side")
        elif a.x < b.right and b.x < a.right:  # one above the other
            gap = max(b.y - a.bottom, a.y - b.bottom)
            if gap < row_gap - EPS:
                problems.append(f"{m} and {n} are {gap:.1f} px apart one above the other")
    return problems


def check_ends(group: Group) -> list[str]:
    """Every route starts on its source's bottom border (a port where it names one) and ends
    on its destination's top border, and runs one way: down, or (a link closing a cycle) up
    from the top of its source to the bottom of its destination."""
    problems = []
    for r in group.routes:
        (x0, y0), (x1, y1) = r.pts[0], r.pts[-1]
        ys = [p[1] for p in r.pts]
        down = all(b >= a - EPS for a, b in itertools.pairwise(ys))
        up = all(b <= a + EPS for a, b in itertools.pairwise(ys))
        if not (down or up) or (up and not down and not _up_allowed(group, r)):
            problems.append(f"{r.src}->{r.dst} does not run one way down: {r.pts}")
            continue
        upward = up and not down
        for end, (x, y), side in ((r.src, (x0, y0), "outs"), (r.dst, (x1, y1), "ins")):
            top = (side == "ins") != upward
            problem = _end_problem(group, end, x, y, side, top)
            if problem:
                problems.append(f"{r.src}->{r.dst}: {problem}")
    return problems


def _up_allowed(group: Group, route: Route) -> bool:
    """An upward route closes a cycle: its destination reaches its source."""
    following: dict[str, set[str]] = {}
    for r in group.routes:
        following.setdefault(_owner(r.src), set()).add(_owner(r.dst))
    seen, todo = set(), [_owner(route.dst)]
    while todo:
        at = todo.pop()
        if at == _owner(route.src):
            return True
        if at not in seen:
            seen.add(at)
            todo.extend(following.get(at, ()))
    return False


def _end_problem(group: Group, end: str, x: float, y: float, side: str,
                 top: bool) -> str | None:
    f = group.frame
    if end[0] in "io":
        want_y = 0 if end[0] == "i" else (f.bottom if f else y)
        want_x = group.port_x[end]
        if abs(y - want_y) > EPS or abs(x - want_x) > EPS:
            return f"{end} at {(x, y)}, its port is at {(want_x, want_y)}"
        return None
    box = group.boxes[_owner(end)]
    want_y = box.y if top else box.bottom
    if abs(y - want_y) > EPS:
        return f"{end} at y={y}, its border is at y={want_y}"
    if ":" in end:
        want_x = group.port_x[f"{end}:{side}"]
        if abs(x - want_x) > EPS:
            return f"{end} at x={x}, its port is at x={want_x}"
    elif not box.x + 1 <= x <= box.right - 1:
        return f"{end} at x={x}, outside {box}"
    return None


def check_no_route_through_boxes(group: Group) -> list[str]:
    problems = []
    for r in group.routes:
        ends = {_owner(r.src), _owner(r.dst)}
        for segment in _segments(r):
            for name, box in group.boxes.items():
                if name not in ends and _through(segment, box):
                    problems.append(f"{r.src}->{r.dst} runs through {name}: {segment}")
    return problems


def _passing(group: Group) -> Iterator[tuple[Route, float, float, float]]:
    """Vertical pieces of routes running past a rank of boxes: (route, x, top, bottom)."""
    for r in group.routes:
        for (x0, y0), (x1, y1) in _segments(r):
            if abs(x0 - x1) < 0.05 and abs(y1 - y0) > 1:
                yield r, x0, min(y0, y1), max(y0, y1)


def check_clearance(group: Group) -> list[str]:
    """A line running past a box on its rank keeps ``boxToLine`` from it (plus half the line's
    breadth); two lines running side by side keep ``thinSep`` (plus their breadth)."""
    c, problems = constants(), []
    passing = list(_passing(group))
    for r, x, top, bottom in passing:
        ends = {_owner(r.src), _owner(r.dst)}
        for name, box in group.boxes.items():
            if name in ends or not (box.y < bottom - 1 and top + 1 < box.bottom):
                continue
            gap = max(box.x - x, x - box.right)
            if gap < c["boxToLine"] + 1 - EPS:
                problems.append(f"{r.src}->{r.dst} passes {name} {gap:.1f} px away")
    for (r, x, top, bottom), (s, x2, top2, bottom2) in itertools.combinations(passing, 2):
        if r is s or r.src == s.src or r.dst == s.dst:  # ends spread along one border
            continue
        side_by_side = top < bottom2 - 1 and top2 < bottom - 1
        if side_by_side and 0.05 < abs(x - x2) < c["thinSep"] + 2 - EPS:
            problems.append(f"{r.src}->{r.dst} and {s.src}->{s.dst} run "
                            f"{abs(x - x2):.1f} px apart")
    return problems


def check_labels(group: Group) -> list[str]:
    """Labels overlap no box, title or other label, no line crosses them (curves included:
    lines bend only between ranks), and each sits beside its own line: top to bottom,
    starting 4 px right of a straight stretch of it, at the middle of its rank; left to
    right, centred on it, 4 px above."""
    problems = []
    real = _swap if group.lr else _same
    boxes = {name: _unswapped(group, box) for name, box in group.boxes.items()}
    if group.title is not None:
        boxes["the title"] = group.title
    curves = [((r.src, r.dst), [real(q) for q in drawn(r.pts)]) for r in group.routes]
    for lab in group.labels:
        rect = lab.rect
        problems += [f"label {lab.text!r} {rect} overlaps {name}"
                     for name, box in boxes.items() if box.overlaps(rect)]
        # left to right: centred on its line, 4 px above it; top to bottom: 4 px right of
        # its line, whose point at the rank's middle is 3.5 px above the baseline
        anchor = (lab.x + lab.width / 2, lab.y + 4) if group.lr else (lab.x - 4, lab.y - 3.5)
        if not any(_straight_past(real(a), real(b), anchor, group.lr)
                   for r in group.routes for a, b in itertools.pairwise(r.pts)):
            problems.append(f"label {lab.text!r} at {(lab.x, lab.y)} is not beside its line")
        crossed = _running_through(rect, curves)
        if crossed:
            problems.append(f"label {lab.text!r} {rect} is crossed by {crossed}")
    for a, b in itertools.combinations(group.labels, 2):
        if a.rect.overlaps(b.rect):
            problems.append(f"labels {a.text!r} and {b.text!r} overlap")
    return problems


def drawn(pts: list[Point], steps: int = 32) -> Iterator[Point]:
    """Points along a route as the renderer draws it (``MT.routePath``, in top-to-bottom
    terms): straight where two points line up, otherwise a cubic that leaves and reaches
    both points vertically, bending halfway between them."""
    yield pts[0]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        for k in range(1, steps + 1):
            t = k / steps
            if abs(x0 - x1) < 0.05:
                yield (x0, y0 + (y1 - y0) * t)
            else:  # the cubic with control points (x0, my) and (x1, my), my halfway
                yield (x0 + (x1 - x0) * t * t * (3 - 2 * t),
                       y0 + (y1 - y0) * t * (1.5 - 1.5 * t + t * t))


def _running_through(rect: Rect, curves: list[tuple[Any, list[Point]]]) -> list[Any]:
    """The names of the curves (name, drawn points) that pass inside ``rect``."""
    return [name for name, points in curves if any(rect.holds(*q, 0.3) for q in points)]


def _straight_past(a: Point, b: Point, anchor: Point, lr: bool) -> bool:
    """Whether segment a-b is straight along the rank axis and ``anchor`` is its middle (a
    line runs straight across its label's rank: the label sits at the rank's middle; left to
    right up to half a pixel before it, as the layout centres the text's whole-pixel width)."""
    across, along = (1, 0) if lr else (0, 1)
    return (abs(a[across] - anchor[across]) < EPS and abs(b[across] - anchor[across]) < EPS
            and -EPS < (a[along] + b[along]) / 2 - anchor[along] < 0.5 + EPS)


def _same(p: Point) -> Point:
    return p


def _unswapped(group: Group, rect: Rect) -> Rect:
    return Rect(rect.y, rect.x, rect.h, rect.w) if group.lr else rect


def _forward(route: Route) -> bool:
    return route.pts[-1][1] > route.pts[0][1]


def check_spread(group: Group) -> list[str]:
    """Edges leaving a plain box: one tensor (through one label) leaves from one point, the
    box's centre when it is the only one; different ones from different points, in the
    order of where they go next, evenly spread around the centre (``endSpread`` apart, or
    closer, to stay 6 px in from the corners). The same for edges entering a box, each at
    its own point."""
    problems = []
    for leaving in (True, False):
        by_box: dict[str, list[Route]] = {}
        for r in group.routes:
            end = r.src if leaving else r.dst
            if end[0] == "c" and ":" not in end and _forward(r):
                by_box.setdefault(end, []).append(r)
        for name, routes in by_box.items():
            box = group.boxes[name]
            ends = [r.pts[0] if leaving else r.pts[-1] for r in routes]
            nexts = [r.pts[1] if leaving else r.pts[-2] for r in routes]
            for (a, r), (b, s) in itertools.combinations(zip(ends, routes, strict=True), 2):
                same = leaving and r.keys == s.keys and r.label == s.label and r.label
                if same and a != b:
                    problems.append(f"{name}: one tensor leaves from two points {a}, {b}")
                if not same and a == b:
                    problems.append(f"{name}: {r.src}->{r.dst} and {s.src}->{s.dst} share "
                                    f"the point {a}")
            xs = sorted({p[0] for p in ends})
            step = min(constants()["endSpread"], (box.w - 12) / max(1, len(xs) - 1))
            if abs(sum(xs) / len(xs) - box.centre) > EPS or any(
                    abs(b - a - step) > 2 * EPS for a, b in itertools.pairwise(xs)):
                problems.append(f"{name}: edge ends {xs} are not spread {step:.1f} px apart "
                                f"around its centre {box.centre}")
            for (a, n), (b, m) in itertools.combinations(zip(ends, nexts, strict=True), 2):
                if (a[0] - b[0]) * (n[0] - m[0]) < -EPS:
                    problems.append(f"{name}: edge ends at {a} and {b} cross on their way "
                                    f"to {n} and {m}")
    return problems


def check_all(group: Group) -> list[str]:
    return (check_spacing(group) + check_ends(group) + check_no_route_through_boxes(group)
            + check_clearance(group) + check_labels(group) + check_spread(group))


# -- whole figures -------------------------------------------------------------------------
def port_points(placed: dict[str, Any]) -> dict[str, set[Point]]:
    """Where the routes of a placed figure meet each port (``<box>:in:<key>``, ``:out:``):
    one point per port, as the flow runs through it from one group into the next."""
    found: dict[str, set[Point]] = {}
    for r in placed["routes"]:
        for end, p in ((r["src"], r["pts"][0]), (r["dst"], r["pts"][-1])):
            if ":" in end:
                found.setdefault(end, set()).add(tuple(p))
    return found


def figure_groups(placed: dict[str, Any], direction: str) -> dict[str, Group]:
    """Every open box of ``engine.place``'s output as a :class:`Group` in its own frame."""
    boxes, lr = placed["boxes"], direction == "LR"
    ports = {end: min(points) for end, points in port_points(placed).items()}
    turn = _swap if lr else _same
    groups = {}
    for gid, g in boxes.items():
        kids = {i for i, b in boxes.items() if b["parent"] == gid}
        if not g["open"] or not kids:
            continue

        def local(p: Any, g: dict[str, Any] = g) -> Point:
            return turn((p[0] - g["x"], p[1] - g["y"]))

        def name(end: str, side: str, gid: str = gid, kids: set[str] = kids) -> str | None:
            owner, _, rest = end.partition(":")
            kind, _, key = rest.partition(":")
            if not rest and owner in kids:
                return f"c{owner}"
            if owner in kids and kind == side:
                return f"c{owner}:{key}"
            if owner == gid and kind != side:
                return ("i:" if kind == "in" else "o:") + key
            return None

        frame_w, frame_h = (g["h"], g["w"]) if lr else (g["w"], g["h"])
        group = Group({f"c{k}": _turned(boxes[k], g, lr) for k in sorted(kids)}, [],
                      frame=Rect(0, 0, frame_w, frame_h), lr=False)
        for end, p in ports.items():
            owner, _, rest = end.partition(":")
            kind, _, key = rest.partition(":")
            x = local(p)[0]
            if owner in kids:
                group.port_x[f"c{owner}:{key}:{kind}s"] = x
            elif owner == gid:
                group.port_x[("i:" if kind == "in" else "o:") + key] = x
        for r in placed["routes"]:
            src, dst = name(r["src"], "out"), name(r["dst"], "in")
            if src and dst:
                keys = tuple(r["keys"])
                tensor = ",".join(map(str, keys)) if keys and keys[0] is not None else ""
                group.routes.append(Route([local(p) for p in r["pts"]], src, dst, keys,
                                          tensor if ":" not in src and src[0] == "c" else ""))
        groups[gid] = group
    return groups


def crossed_labels(placed: dict[str, Any], direction: str) -> list[str]:
    """Labels of a placed figure that a line (of any group) runs through, as drawn."""
    turn = _swap if direction == "LR" else _same
    curves = [(f"{r['src']}->{r['dst']}", [turn(q) for q in drawn([turn(p) for p in r["pts"]])])
              for r in placed["routes"]]
    problems = []
    for lab in placed["labels"]:
        rect = Label(lab["text"], lab["x"], lab["y"], lab["width"]).rect
        crossing = _running_through(rect, curves)
        if crossing:
            problems.append(f"label {lab['text']!r} {rect} is crossed by {crossing}")
    return problems


def _turned(box: dict[str, Any], g: dict[str, Any], lr: bool) -> Rect:
    x, y = box["x"] - g["x"], box["y"] - g["y"]
    return Rect(y, x, box["h"], box["w"]) if lr else Rect(x, y, box["w"], box["h"])


def check_figure(placed: dict[str, Any], direction: str) -> list[str]:
    """The group checks on every open box of a placed figure, each port met at one point,
    and no label crossed by any line of the figure."""
    problems = [f"{end} is met at {sorted(points)}"
                for end, points in port_points(placed).items() if len(points) > 1]
    problems += crossed_labels(placed, direction)
    for gid, group in figure_groups(placed, direction).items():
        found = (check_spacing(group) + check_ends(group) + check_no_route_through_boxes(group)
                 + check_clearance(group) + check_spread(group))
        problems += [f"{gid}: {p}" for p in found]
    return problems
