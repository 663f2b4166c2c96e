"""The shapes world's vocabulary, scene graph types and geometry.

Coordinates are normalised to 0..1 with the origin at the top-left corner (x grows right, y grows down),
so "above" means a smaller ``cy``.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass

# Saturated, well separated hues: each stays recognisable after a 64 -> 32 px downsample.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 185, 60),
    "blue": (45, 85, 240),
    "yellow": (240, 225, 40),
    "purple": (165, 60, 215),
    "orange": (250, 140, 20),
    "cyan": (40, 215, 225),
    "white": (240, 240, 240),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross")
SIZES: dict[str, float] = {"small": 0.10, "large": 0.17}  # half-extent of the shape, in canvas units

MAX_OBJECTS = 6  # layouts with more objects than this rarely fit without overlap at the large size
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six")
RELATION_MARGIN = 0.1  # centres must differ by more than this for left/right/above/below to be stated

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene: attributes, centre and bounding box (normalised 0..1)."""

    shape: str  # one of SHAPES
    color: str  # a key of COLORS
    size: str  # a key of SIZES
    cx: float  # centre x, 0 = left edge
    cy: float  # centre y, 0 = top edge
    bbox: Box  # (x0, y0, x1, y1) of the drawn shape

    def matches(self, color: str | None = None, shape: str | None = None, size: str | None = None) -> bool:
        """True when every attribute that is given equals this object's."""
        return (
            (color is None or color == self.color)
            and (shape is None or shape == self.shape)
            and (size is None or size == self.size)
        )


@dataclass(frozen=True)
class Scene:
    """A scene graph: the objects on a plain background."""

    objects: tuple[ShapeObject, ...]  # in generation order (not sorted by position)
    background: tuple[int, int, int] = (20, 20, 24)  # RGB of the canvas

    def __len__(self) -> int:
        return len(self.objects)

    def find(
        self, color: str | None = None, shape: str | None = None, size: str | None = None
    ) -> list[ShapeObject]:
        """Objects whose given attributes all match."""
        return [o for o in self.objects if o.matches(color, shape, size)]

    def count(self, color: str | None = None, shape: str | None = None, size: str | None = None) -> int:
        """How many objects match the given attributes."""
        return len(self.find(color, shape, size))

    @property
    def pairs(self) -> set[tuple[str, str]]:
        """The (color, shape) combinations present."""
        return {(o.color, o.shape) for o in self.objects}

    def fingerprint(self) -> int:
        """A stable 32-bit id of the scene content, used to seed deterministic language choices."""
        return zlib.crc32(repr(self.objects).encode())

    def to_dict(self) -> dict:
        """A JSON-ready copy (for ground-truth files and eval metrics)."""
        return {"background": list(self.background), "objects": [asdict(o) for o in self.objects]}

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        """Inverse of :meth:`to_dict`."""
        objects = tuple(ShapeObject(**{**o, "bbox": tuple(o["bbox"])}) for o in data["objects"])
        return cls(objects=objects, background=tuple(data["background"]))


def relation(a: ShapeObject, b: ShapeObject, axis: str) -> str | None:
    """The clear relation of ``a`` to ``b`` on an axis ("left"/"right" or "above"/"below"), or None.

    A relation is only stated when the centres differ by more than RELATION_MARGIN, so that a
    human looking at the 64 px image would agree with it.
    """
    if axis == "x":
        d = b.cx - a.cx
        names = ("left", "right")
    elif axis == "y":
        d = b.cy - a.cy
        names = ("above", "below")
    else:
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    if abs(d) <= RELATION_MARGIN:
        return None
    return names[0] if d > 0 else names[1]


def shape_outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Polygon vertices of a shape centred at (cx, cy) with half-extent r; a circle gets its bbox corners."""
    if shape == "circle":
        return [(cx - r, cy - r), (cx + r, cy + r)]
    if shape == "square":
        s = 0.85 * r  # a square of side 2r looks heavier than a circle of radius r
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + 0.8 * r), (cx - r, cy + 0.8 * r)]
    if shape == "diamond":
        w = 0.8 * r  # narrower than tall so it never reads as a rotated square
        return [(cx, cy - r), (cx + w, cy), (cx, cy + r), (cx - w, cy)]
    if shape == "star":
        points = []
        for k in range(10):
            rad = r if k % 2 == 0 else 0.42 * r
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + rad * math.cos(angle), cy + rad * math.sin(angle)))
        return points
    if shape == "cross":
        t = 0.34 * r  # half the arm thickness
        return [
            (cx - t, cy - r), (cx + t, cy - r), (cx + t, cy - t), (cx + r, cy - t),
            (cx + r, cy + t), (cx + t, cy + t), (cx + t, cy + r), (cx - t, cy + r),
            (cx - t, cy + t), (cx - r, cy + t), (cx - r, cy - t), (cx - t, cy - t),
        ]  # fmt: skip
    raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


def outline_bbox(points: list[tuple[float, float]]) -> Box:
    """The axis-aligned bounding box of a list of points."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return (min(xs), min(ys), max(xs), max(ys))


def boxes_overlap(a: Box, b: Box, gap: float) -> bool:
    """True when boxes a and b come closer than ``gap`` on both axes."""
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap
