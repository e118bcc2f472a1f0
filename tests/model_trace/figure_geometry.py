"""Geometry checks on a placed figure (``engine.place``) that several test files share."""

from __future__ import annotations

from typing import Any

PAD, NODE_SEP, BOX_TO_LINE = 8, 14, 9
"""An open box's padding and the gaps beside its title (``MT.LAYOUT``)."""


def left_bands(placed: dict[str, Any]) -> dict[str, float]:
    """For each open box laid out top to bottom, how far its content could still move left:
    the empty band between its left wall and its leftmost child, label, dummy or port, or
    between its title and what sits beside it on the first rank (0 when packed)."""
    boxes = placed["boxes"]
    bands = {}
    for group_id, group in boxes.items():
        inner = [b for b in boxes.values() if b["parent"] == group_id]
        if not group["open"] or not inner:
            continue
        opened = [b for b in inner if b["open"]]

        def drawn_here(x: float, y: float, group: dict[str, Any] = group,
                       opened: list[dict[str, Any]] = opened) -> bool:
            return (group["x"] < x < group["x"] + group["w"]
                    and group["y"] < y <= group["y"] + group["h"]
                    and not any(o["x"] <= x <= o["x"] + o["w"] and o["y"] <= y <= o["y"] + o["h"]
                                for o in opened))

        lefts = [b["x"] for b in inner]
        beside_title = [b["x"] - NODE_SEP for b in inner if abs(b["y"] - group["y"] - PAD) < 0.6]
        lefts += [label["x"] - 7 for label in placed["labels"]
                  if drawn_here(label["x"], label["y"])]
        for route in placed["routes"]:
            for x, y in route["pts"]:
                if abs(y - group["y"]) < 0.6 and group["x"] < x < group["x"] + group["w"]:
                    beside_title.append(x - 3 - BOX_TO_LINE)  # an in-port on the top border
                elif drawn_here(x, y):
                    lefts.append(x - 3)
        wall = min(lefts + beside_title) - group["x"] - PAD
        title = min(beside_title, default=float("inf")) - group["x"] - PAD \
            - placed["text_widths"][group_id]
        bands[group_id] = round(min(wall, title), 1)
    return bands


def first_pieces_through_boxes(placed: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Edges whose first piece, from the producer's border to the next point of the route,
    runs across another box (as from a short box beside a tall one on the same rank):
    (source, destination, the box crossed)."""
    crossed = []
    for route in placed["routes"]:
        (x0, y0), (x1, y1) = route["pts"][:2]
        for box_id, box in placed["boxes"].items():
            def inside(x: float, y: float, box: dict[str, Any] = box, margin: float = 0) -> bool:
                return (box["x"] + margin < x < box["x"] + box["w"] - margin
                        and box["y"] + margin < y < box["y"] + box["h"] - margin)
            if inside(x0, y0, margin=-1) or inside(x1, y1, margin=-1):
                continue  # a box around either end
            if any(inside(x0 + (x1 - x0) * t / 10, y0 + (y1 - y0) * t / 10, margin=1)
                   for t in range(1, 10)):
                crossed.append((route["src"], route["dst"], box_id))
                break
    return crossed
