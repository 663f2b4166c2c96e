"""Crash-safe training checkpoints.

Layout under ``out_dir/checkpoints/``::

    step_00000100/   model.safetensors  trainer_state.pt  meta.json
    latest           text file holding the newest folder name

A checkpoint is written into ``.tmp-step_XXXXXXXX-<pid>/`` in the same directory, every file and the
folder are fsynced, and only then is it renamed to its final name, so a folder named ``step_*`` is
always complete. ``trainer_state.pt`` holds only tensors and plain Python containers and is always
read with ``torch.load(..., weights_only=True)``: nothing in a checkpoint is unpickled as code.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from polymodal.atomic import TMP_PREFIX, write_folder_atomic, write_text_atomic

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
META_FILE = "meta.json"
LATEST_FILE = "latest"
_STEP_DIR = re.compile(r"^step_(\d{8,})$")


def step_dir_name(step: int) -> str:
    """Folder name for the checkpoint taken after ``step`` optimizer steps."""
    return f"step_{step:08d}"


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


# ---------------------------------------------------------------- RNG state as plain containers


def capture_rng_state() -> dict[str, Any]:
    """RNG states of python, numpy, torch (and CUDA) as tensors/ints/floats/lists only."""
    version, mt_state, gauss_next = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(mt_state), "gauss_next": gauss_next},
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- durable file operations


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- save / find / load


def save_checkpoint(
    root: str | Path,
    step: int,
    model: nn.Module,
    trainer_state: dict[str, Any],
    meta: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically, point ``latest`` at it, keep the newest ``keep``.

    Args:
        root: the ``checkpoints`` folder (created if missing).
        model: the model (wrappers are removed); tied/shared tensors are stored once.
        trainer_state: tensors and plain containers only, so it loads with ``weights_only=True``.
        meta: JSON-serialisable facts about the run (step, config, ...).
        keep: how many checkpoints to keep (>= 1).
    Returns:
        The final checkpoint folder.
    """
    root = Path(root)

    def fill(tmp: Path) -> None:
        save_model(unwrap_model(model), str(tmp / MODEL_FILE))
        torch.save(trainer_state, tmp / STATE_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    # a stale checkpoint of the same step (a replay after resuming an older one) is replaced
    final = write_folder_atomic(root / step_dir_name(step), fill)
    write_text_atomic(root / LATEST_FILE, final.name + "\n")
    prune_checkpoints(root, keep)
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and path.is_dir() and all((path / f).is_file() for f in (MODEL_FILE, STATE_FILE, META_FILE)):
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def checkpoint_step(path: str | Path) -> int:
    """The step number encoded in a checkpoint folder name."""
    match = _STEP_DIR.match(Path(path).name)
    if not match:
        raise ValueError(f"{path} is not a checkpoint folder (expected a name like step_00000100)")
    return int(match.group(1))


def find_latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete ``step_*`` folder under ``root``, or None.

    Folders are scanned rather than trusting ``latest`` alone: a folder only gets its ``step_*`` name
    once fully written, so one newer than ``latest`` (a crash between the rename and the ``latest``
    update) is complete, and a missing or dangling ``latest`` needs no special case.
    """
    checkpoints = list_checkpoints(root)
    return checkpoints[-1] if checkpoints else None


def clean_partial_checkpoints(root: str | Path) -> list[Path]:
    """Delete temp folders/files left by a crash mid-write; returns what was removed."""
    root = Path(root)
    if not root.is_dir():
        return []
    removed = []
    for path in root.iterdir():
        if path.name.startswith(TMP_PREFIX):
            _remove_tree(path)
            removed.append(path)
        elif path.name == LATEST_FILE + ".tmp":
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def prune_checkpoints(root: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    for path in list_checkpoints(root)[:-keep]:
        _remove_tree(path)


def load_checkpoint(
    path: str | Path, model: nn.Module, device: torch.device | str = "cpu"
) -> tuple[dict, dict]:
    """Load weights from checkpoint folder ``path`` into ``model`` (strict); return (trainer_state, meta).

    The trainer state stays on CPU (RNG states must); ``optimizer.load_state_dict`` moves its tensors
    to the parameters' device.
    """
    path = Path(path)
    missing = [f for f in (MODEL_FILE, STATE_FILE, META_FILE) if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    target = unwrap_model(model)
    load_model(target, str(path / MODEL_FILE), strict=True, device=str(device))
    trainer_state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    meta = json.loads((path / META_FILE).read_text())
    return trainer_state, meta
