"""Training telemetry: ``metrics.jsonl``, ``curves.png`` and the console (rich progress bar + log lines)."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"


def _json_number(value: float) -> float | str:
    """JSON has no NaN/inf; write them as strings so the file stays valid JSON."""
    return value if math.isfinite(value) else str(value)


class MetricsLog:
    """An in-memory list of records mirrored to ``out_dir/metrics.jsonl`` (one JSON object per line).

    The list is saved in checkpoints; on resume :meth:`reset` rewrites the file from it, dropping lines
    logged after the checkpoint by a run that was then killed, so the file never holds duplicates.
    """

    def __init__(self, out_dir: str | Path, write: bool):
        self.path = Path(out_dir) / METRICS_FILE
        self.write = write
        self.records: list[dict[str, Any]] = []

    def reset(self, records: list[dict[str, Any]]) -> None:
        """Replace the history (and the file) with ``records``."""
        self.records = [dict(r) for r in records]
        if self.write:
            with open(self.path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in self.records)

    def log(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append one record; floats that are NaN/inf are stored as strings."""
        clean = {k: _json_number(float(v)) if isinstance(v, float) else v for k, v in record.items()}
        self.records.append(clean)
        if self.write:
            with open(self.path, "a") as f:
                f.write(json.dumps(clean) + "\n")
        return clean


def _series(records: list[dict[str, Any]], split: str, key: str) -> tuple[list[int], list[float]]:
    points = [
        (r["step"], float(r[key]))
        for r in records
        if r.get("split") == split
        and isinstance(r.get(key), int | float)
        and not isinstance(r.get(key), bool)
    ]
    return [p[0] for p in points], [p[1] for p in points]


def _eval_panels(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Eval metrics to plot, grouped by task ("task/metric" keys); counts and ranks are left out so
    every panel shares a 0..1 scale."""
    keys = sorted(
        {
            k
            for r in records
            if r.get("split") == "eval"
            for k, v in r.items()
            if k not in ("step", "split") and isinstance(v, int | float)
        }
    )
    panels: dict[str, list[str]] = {}
    for key in keys:
        if "num_" in key or "rank" in key:
            continue
        panels.setdefault(key.split("/", 1)[0] if "/" in key else "eval", []).append(key)
    return panels


def plot_curves(records: list[dict[str, Any]], path: str | Path) -> None:
    """Draw train loss and learning rate vs step, and one panel per eval task, into a PNG.

    Uses a bare ``Figure`` (Agg canvas) rather than pyplot, so no global backend is switched and no
    display is needed.
    """
    from matplotlib.figure import Figure  # imported here: matplotlib is slow to import and only needed now

    panels = _eval_panels(records)
    cols = max(2, len(panels))
    fig = Figure(figsize=(5.5 * cols, 3.8 * (2 if panels else 1)))
    axes = fig.subplots(2 if panels else 1, cols, squeeze=False)
    steps, loss = _series(records, "train", "loss")
    axes[0][0].plot(steps, loss, lw=1.2)
    axes[0][0].set(title="train loss", xlabel="step")
    if loss and min(loss) > 0 and max(loss) / min(loss) > 20:
        axes[0][0].set_yscale("log")
    steps, lr = _series(records, "train", "lr")
    axes[0][1].plot(steps, lr, lw=1.2, color="tab:orange")
    axes[0][1].set(title="learning rate", xlabel="step")
    for ax in axes[0][2:]:
        ax.axis("off")
    for ax, (task, keys) in zip(axes[1] if panels else [], panels.items(), strict=False):
        for key in keys:
            steps, values = _series(records, "eval", key)
            ax.plot(steps, values, marker="o", ms=3, label=key.split("/", 1)[-1])
        ax.set(title=f"eval: {task}", xlabel="step", ylim=(-0.02, 1.02))
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[1][len(panels) :] if panels else []:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)


def format_log_line(record: dict[str, Any], total_steps: int) -> str:
    """One concise console line for a train or eval record."""
    head = f"step {record['step']}/{total_steps}"
    if record.get("split") == "eval":
        parts = [
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in record.items()
            if k not in ("step", "split")
        ]
        return f"{head} | eval | " + " | ".join(parts)
    parts = [f"loss {record['loss']:.4f}" if isinstance(record["loss"], float) else f"loss {record['loss']}"]
    parts.append(f"lr {record['lr']:.2e}")
    if isinstance(record.get("grad_norm"), float):
        parts.append(f"gnorm {record['grad_norm']:.3f}")
    parts.append(f"{record['samples_per_s']:.0f} samples/s")
    if record.get("skipped"):
        parts.append("SKIPPED (non-finite)")
    return f"{head} | " + " | ".join(parts)


class Console:
    """Rank-0 console: a rich progress bar when stdout is a TTY (and enabled), plain lines always."""

    def __init__(self, enabled: bool, progress_bar: bool, total: int, start: int):
        self.enabled = enabled
        self.progress: Progress | None = None
        if enabled and progress_bar and sys.stdout.isatty():
            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
            )
            self.task = self.progress.add_task("train", total=total, completed=start)
            self.progress.start()

    def print(self, line: str) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, flush=True)

    def advance(self, step: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
