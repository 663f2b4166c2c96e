"""The shapes world: procedural scenes of coloured shapes with exact ground truth.

A scene holds ``min_objects``..``max_objects`` non-overlapping objects, each a (shape, color, size) at a
position on a dark canvas. Captions, questions, referring expressions and contradicting captions are
derived from the scene graph (``shapes_language``, ``shapes_qa``).

Splits, all deterministic and O(1) to index: scene ``i`` of a split is drawn from
``numpy.random.default_rng([seed, split_id, i])``.

- ``"train"``: objects use every (color, shape) pair except the held-out pairs (``heldout``).
- ``"test"``: the same distribution as train, drawn from a disjoint seed stream (another split id).
- ``"heldout"``: every scene contains at least one held-out pair (the other objects follow the train
  distribution); it measures compositional generalisation to attribute pairs never seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from polymodal.data.worlds.shapes_language import (
    EVAL_TEMPLATES,
    PERTURB_KINDS,
    TRAIN_TEMPLATES,
    caption,
    captions,
    perturb_caption,
)
from polymodal.data.worlds.shapes_qa import ANSWER_VOCAB, QA, questions, referring_expressions
from polymodal.data.worlds.shapes_scene import (
    COLORS,
    MAX_OBJECTS,
    SHAPES,
    SIZES,
    Scene,
    ShapeObject,
    boxes_overlap,
    outline_bbox,
    shape_outline,
)

__all__ = [
    "ANSWER_VOCAB", "COLORS", "DEFAULT_HELDOUT", "MAX_OBJECTS", "EVAL_TEMPLATES", "PERTURB_KINDS", "QA", "SHAPES", "SIZES",
    "SPLITS", "TRAIN_TEMPLATES", "Scene", "ShapeObject", "ShapesSample", "ShapesWorld", "caption", "captions",
    "perturb_caption", "questions", "referring_expressions", "render_scene",
]  # fmt: skip

# One colour and one shape per pair, so every colour and shape is still seen in training.
DEFAULT_HELDOUT: tuple[tuple[str, str], ...] = (
    ("red", "star"),
    ("blue", "triangle"),
    ("green", "cross"),
    ("yellow", "diamond"),
)
SPLITS = {"train": 0, "test": 1, "heldout": 2}
CANVAS_MARGIN = 0.03  # objects keep this far from the image edge
OBJECT_GAP = 0.03  # minimum distance between object boxes, so every object is fully visible
SUPERSAMPLE = 4  # draw at 4x and box-downsample: anti-aliased edges at PIL speed


@dataclass
class ShapesSample:
    """A rendered scene with its scene graph and one training caption."""

    image: Image.Image
    scene: Scene
    caption: str


def render_scene(scene: Scene, image_size: int = 64, supersample: int = SUPERSAMPLE) -> Image.Image:
    """Draw ``scene`` as an RGB image of ``image_size`` pixels square."""
    canvas = image_size * supersample
    image = Image.new("RGB", (canvas, canvas), scene.background)
    draw = ImageDraw.Draw(image)
    for o in scene.objects:
        points = [(x * canvas, y * canvas) for x, y in shape_outline(o.shape, o.cx, o.cy, SIZES[o.size])]
        if o.shape == "circle":
            draw.ellipse(points, fill=COLORS[o.color])
        else:
            draw.polygon(points, fill=COLORS[o.color])
    return image.reduce(supersample) if supersample > 1 else image


class ShapesWorld:
    """Deterministic, streamable scenes: ``scene(i)``, ``render(scene)``, ``sample(i)``."""

    def __init__(
        self,
        seed: int = 0,
        split: str = "train",
        min_objects: int = 1,
        max_objects: int = 4,
        image_size: int = 64,
        heldout: tuple[tuple[str, str], ...] = DEFAULT_HELDOUT,
    ):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        if not 1 <= min_objects <= max_objects <= MAX_OBJECTS:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}, got {min_objects}..{max_objects}"
            )
        unknown = [p for p in heldout if p[0] not in COLORS or p[1] not in SHAPES]
        if unknown:
            raise ValueError(f"held-out pairs {unknown} are not (color, shape) pairs of the vocabulary")
        if split == "heldout" and not heldout:
            raise ValueError("split 'heldout' needs at least one held-out (color, shape) pair")
        self.seed, self.split, self.image_size = seed, split, image_size
        self.min_objects, self.max_objects = min_objects, max_objects
        self.heldout = tuple(tuple(p) for p in heldout)
        held = set(self.heldout)
        self.train_pairs = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in held]

    def _rng(self, i: int, stream: int = 0) -> np.random.Generator:
        if i < 0:
            raise IndexError(f"scene index must be >= 0, got {i}")
        return np.random.default_rng([self.seed, SPLITS[self.split], i, stream])

    def _attributes(self, rng: np.random.Generator, n: int) -> list[tuple[str, str, str]]:
        """(color, shape, size) per object; the held-out split forces one held-out pair at a random slot."""
        pairs = [self.train_pairs[k] for k in rng.integers(len(self.train_pairs), size=n)]
        if self.split == "heldout":
            pairs[int(rng.integers(n))] = self.heldout[int(rng.integers(len(self.heldout)))]
        sizes = [list(SIZES)[k] for k in rng.integers(len(SIZES), size=n)]
        return [(c, s, z) for (c, s), z in zip(pairs, sizes, strict=True)]

    def _place(self, rng: np.random.Generator, attributes: list) -> tuple[ShapeObject, ...] | None:
        """Rejection-sample positions so no two boxes come within OBJECT_GAP; None if a layout fails."""
        placed: list[ShapeObject] = []
        for color, shape, size in attributes:
            r = SIZES[size]
            for _ in range(100):
                cx, cy = rng.uniform(CANVAS_MARGIN + r, 1 - CANVAS_MARGIN - r, size=2)
                bbox = outline_bbox(shape_outline(shape, float(cx), float(cy), r))
                if not any(boxes_overlap(bbox, o.bbox, OBJECT_GAP) for o in placed):
                    placed.append(ShapeObject(shape, color, size, float(cx), float(cy), bbox))
                    break
            else:
                return None
        return tuple(placed)

    def scene(self, i: int) -> Scene:
        """Scene ``i`` of this split (a pure function of seed, split and i)."""
        rng = self._rng(i)
        background = tuple(int(v) for v in rng.integers(12, 36, size=3))
        for _ in range(50):  # a crowded layout can fail; redraw everything from the same stream
            n = int(rng.integers(self.min_objects, self.max_objects + 1))
            objects = self._place(rng, self._attributes(rng, n))
            if objects is not None:
                return Scene(objects=objects, background=background)
        raise RuntimeError(f"could not lay out scene {i}: lower max_objects ({self.max_objects})")

    def render(self, scene: Scene) -> Image.Image:
        """The RGB image of ``scene`` at this world's image size."""
        return render_scene(scene, self.image_size)

    def scenes_and_images(self, count: int) -> tuple[list[Scene], list[Image.Image]]:
        """Scenes 0 .. count - 1 of this split and their images (the evaluation sets)."""
        scenes = [self.scene(i) for i in range(count)]
        return scenes, [self.render(s) for s in scenes]

    def sample(self, i: int, templates: dict | None = None) -> ShapesSample:
        """Scene ``i`` rendered, with a caption drawn from ``templates`` (training phrasings by default)."""
        scene = self.scene(i)
        text = caption(scene, self._rng(i, stream=1), templates or TRAIN_TEMPLATES)
        return ShapesSample(image=self.render(scene), scene=scene, caption=text)
