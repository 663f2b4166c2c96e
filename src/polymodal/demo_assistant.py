"""The assistant part of ``polymodal demo``: captions, answers and boxes for a few gallery scenes, each
checked against the scene graph, and a picture with the boxes drawn."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

DEMO_SCENES = 6


def _draw_box(image, box, scale: int = 4):
    from PIL import ImageDraw

    big = image.resize((image.width * scale, image.height * scale))
    ImageDraw.Draw(big).rectangle([v * scale for v in box], outline=(255, 255, 255), width=2)
    return big


def _groundable(world) -> Iterator[tuple[int, Any, tuple[str, Any]]]:
    """(index, scene, its first referring expression and box) for each scene of ``world`` in which some
    object can be singled out (almost all), so that there is something to ground."""
    from polymodal.data.worlds.shapes import referring_expressions

    for i in itertools.count():
        scene = world.scene(i)
        expressions = referring_expressions(scene)
        if expressions:
            yield i, scene, expressions[0]


def run_assistant_demo(assistant, out: Path, console: Console, seed: int = 7) -> dict[str, Any]:
    """Caption, count and ground on the first gallery scenes; returns the fraction of correct answers."""
    from polymodal.data.worlds.shapes import ShapesWorld
    from polymodal.data.worlds.shapes_scene import NUMBER_WORDS
    from polymodal.eval.grounding import box_iou
    from polymodal.viz import image_grid

    world = ShapesWorld(seed=seed, split="test", min_objects=1, max_objects=3)
    table = Table(title=f"assistant · {assistant.name} (answers checked against the scene graph)")
    for col in ("image", "caption", "how many shapes?", "where is ...?", "IoU"):
        table.add_column(col)
    correct, pictures, labels = 0, [], []
    for i, scene, (expression, true_box) in itertools.islice(_groundable(world), DEMO_SCENES):
        image = world.render(scene)
        count = assistant.ask(image, "how many shapes are there?")
        try:
            box = assistant.ground(image, expression)
            iou = box_iou([v / image.width for v in box], true_box)
        except ValueError:  # no box in the reply: shown as a miss, the demo goes on
            box, iou = None, 0.0
        count_ok = count == NUMBER_WORDS[len(scene)]
        correct += count_ok + (iou >= 0.5)
        name = f"scene_{i:04d}.png"
        table.add_row(
            name,
            assistant.caption(image),
            f"{count} ({'ok' if count_ok else 'wrong'})",
            expression,
            f"{iou:.2f}",
        )
        pictures.append(_draw_box(image, box) if box else image.resize((image.width * 4, image.height * 4)))
        labels.append(f"{expression} IoU {iou:.2f}")
    console.print(table)
    sheet = out / "assistant_results.png"
    image_grid(
        pictures, labels, cols=3, thumb=192, title="assistant grounding (white: predicted box)", path=sheet
    )
    accuracy = correct / (2 * DEMO_SCENES)
    console.print(f"assistant: {accuracy:.2f} of counts and boxes (IoU >= 0.5) correct · picture: {sheet}")
    return {"assistant_accuracy": accuracy}
