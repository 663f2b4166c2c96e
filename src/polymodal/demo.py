"""``polymodal demo``: a gallery generated from the worlds, indexed, searched and classified, with pictures.

Every gallery image has known ground truth (the scene graph or the digit label), so the demo reports
how many of the top results really match each query instead of asking the reader to trust it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

CORRUPT_NAME = "broken.png"  # a deliberately truncated file: the demo shows it is skipped, not fatal


@dataclass
class Query:
    text: str
    relevant: Callable[[dict[str, Any]], bool]  # ground truth: does a gallery item match the query?


def _has(color: str | None = None, shape: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def match(item: dict[str, Any]) -> bool:
        return any(
            (color is None or o["color"] == color) and (shape is None or o["shape"] == shape)
            for o in item.get("objects", [])
        )

    return match


def _digit(label: int) -> Callable[[dict[str, Any]], bool]:
    return lambda item: item.get("digit") == label


QUERIES = [
    Query("a red circle", _has("red", "circle")),
    Query("a blue square", _has("blue", "square")),
    Query("a yellow star", _has("yellow", "star")),
    Query("a purple triangle", _has("purple", "triangle")),
    Query("a handwritten digit 7", _digit(7)),
    Query("the number three", _digit(3)),
]


def make_gallery(folder: Path, size: int, image_size: int = 64) -> dict[str, dict[str, Any]]:
    """Write ``size`` images (two thirds shapes scenes, one third digits) plus a corrupt file; return truth."""
    from polymodal.data.worlds.digits import DigitsWorld
    from polymodal.data.worlds.shapes import ShapesWorld

    folder.mkdir(parents=True, exist_ok=True)
    shapes = ShapesWorld(seed=7, split="test", min_objects=1, max_objects=3, image_size=image_size)
    digits = DigitsWorld("test", image_size=image_size)
    truth: dict[str, dict[str, Any]] = {}
    n_digits = min(size // 3, len(digits))
    for i in range(size - n_digits):
        sample = shapes.sample(i)
        name = f"scene_{i:04d}.png"
        sample.image.save(folder / name)
        objects = [{"color": o.color, "shape": o.shape, "size": o.size} for o in sample.scene.objects]
        truth[name] = {"caption": sample.caption, "objects": objects}
    for i in range(n_digits):
        sample = digits.sample(i)
        name = f"digit_{i:04d}.png"
        sample.image.save(folder / name)
        truth[name] = {"caption": sample.caption, "digit": sample.label}
    (folder / CORRUPT_NAME).write_bytes((folder / name).read_bytes()[:40])  # a truncated PNG
    with open(folder / "captions.jsonl", "w") as f:
        for name, item in truth.items():
            f.write(json.dumps({"file": name, "caption": item["caption"]}) + "\n")
    return truth


def _search_table(pipeline, index, truth, console: Console, k: int = 5):
    from PIL import Image

    from polymodal.search import search_index

    table = Table(title=f"text search over the gallery (top {k})")
    for col in ("query", "top result", "score", f"relevant in top {k}", "relevant in gallery"):
        table.add_column(col)
    rows, precisions = [], []
    for query in QUERIES:
        hits = search_index(pipeline, index, query.text, k=k)
        names = [Path(h.metadata["path"]).name for h in hits]
        good = sum(query.relevant(truth[n]) for n in names)
        total = sum(query.relevant(item) for item in truth.values())
        precisions.append(good / min(k, total) if total else 1.0)
        table.add_row(
            query.text, truth[names[0]]["caption"], f"{hits[0].score:.3f}", f"{good}/{k}", str(total)
        )
        marks = ["match" if query.relevant(truth[n]) else "miss" for n in names]  # the default font has no ✓
        cells = [
            (Image.open(h.metadata["path"]).convert("RGB"), f"{m} {h.score:.2f}")
            for h, m in zip(hits, marks, strict=True)
        ]
        rows.append((query.text, cells))
    console.print(table)
    return rows, sum(precisions) / len(precisions)


def _classify_table(pipeline, gallery: Path, truth, console: Console) -> float:
    from polymodal.data.worlds.shapes import COLORS

    table = Table(title="zero-shot classification")
    for col in ("image", "labels", "truth", "prediction", "p"):
        table.add_column(col)
    digits = [n for n in truth if "digit" in n][:6]
    singles = [n for n, t in truth.items() if len(t.get("objects", [])) == 1][:6]
    correct = 0
    for names, labels, answer in (
        (digits, [str(d) for d in range(10)], lambda t: str(t["digit"])),
        (singles, list(COLORS), lambda t: t["objects"][0]["color"]),
    ):
        templates = ["a handwritten digit {}"] if labels[0] == "0" else ["a {} shape", "a {} object"]
        for name, probs in zip(
            names, pipeline.classify([gallery / n for n in names], labels, templates), strict=True
        ):
            best = max(probs, key=probs.get)
            correct += best == answer(truth[name])
            shown = "digits 0-9" if labels[0] == "0" else "colours"
            table.add_row(name, shown, answer(truth[name]), best, f"{probs[best]:.2f}")
    console.print(table)
    return correct / max(1, len(digits) + len(singles))


def run_demo(
    pipeline, out: str | Path, gallery_size: int = 300, assistant=None, audio_models: dict | None = None
) -> dict[str, Any]:
    """Generate, index, search, classify (and, given an assistant, caption/answer/ground; given audio models,
    classify sounds, transcribe and answer aloud: see :func:`polymodal.demo_audio.run_audio_demo`); print
    tables and write contact sheets under ``out``."""
    from polymodal.search import build_folder_index, open_index
    from polymodal.viz import contact_sheet, image_grid

    console, out, t0 = Console(), Path(out), time.perf_counter()
    console.rule(f"polymodal demo · model {pipeline.name}")
    gallery = out / "gallery"
    truth = make_gallery(gallery, gallery_size, pipeline.image_processor.config.image_size)
    console.print(f"generated {len(truth)} images in {gallery} (+ {CORRUPT_NAME}, deliberately corrupt)")
    report = build_folder_index(pipeline, gallery, out / "index")
    console.print(report)
    index = open_index(out / "index")
    rows, precision = _search_table(pipeline, index, truth, console)
    sheet = out / "search_results.png"
    contact_sheet(
        rows,
        sheet,
        thumb=128,
        title=f"polymodal search · {pipeline.name} · match/miss checked against the scene graph",
    )
    from PIL import Image

    names = sorted(truth)[:32]
    image_grid(
        [Image.open(gallery / n).convert("RGB") for n in names],
        [n[:-4] for n in names],
        cols=8,
        title="a sample of the gallery",
        path=out / "gallery_overview.png",
    )
    accuracy = _classify_table(pipeline, gallery, truth, console)
    extra = {}
    if assistant is not None:
        from polymodal.demo_assistant import run_assistant_demo

        extra = run_assistant_demo(assistant, out, console)
    if audio_models:
        from polymodal.demo_audio import run_audio_demo

        extra |= run_audio_demo(audio_models, out, console)
    elapsed = time.perf_counter() - t0
    console.print(
        f"mean precision@5 over {len(QUERIES)} queries: {precision:.2f} · "
        f"zero-shot accuracy on the shown images: {accuracy:.2f} · {elapsed:.1f} s"
    )
    console.print(f"contact sheet: {sheet}   gallery overview: {out / 'gallery_overview.png'}")
    return {"precision_at_5": precision, "classify_accuracy": accuracy, "seconds": elapsed, **extra}
