"""Durable writes: a file or a whole folder appears complete or not at all, even after ``kill -9``.

Model folders, indexes and checkpoints are all written the same way: fill a temp folder beside the
target, fsync its files and itself, swap it in with a rename (an older target is moved aside first and
deleted only once the new one is in place), then fsync the parent so the rename itself is durable.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

TMP_PREFIX = ".tmp-"  # temp files and folders start with this; a crash can leave them, readers ignore them


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (directories cannot be opened on Windows; skipped there)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` via a fsynced temp file and ``os.replace``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def write_folder_atomic(
    target: str | os.PathLike, fill: Callable[[Path], None], guard: Callable[[Path], None] | None = None
) -> Path:
    """Create or replace the folder ``target`` with what ``fill(tmp_folder)`` writes.

    Args:
        target: the folder to create (its parent is created if needed).
        fill: writes the folder's files into the temp folder it is given.
        guard: called with ``target`` before an existing one is replaced; raise to refuse.
    Returns:
        ``target`` as a Path.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{TMP_PREFIX}{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        fill(tmp)
        for path in tmp.rglob("*"):
            fsync_path(path)
        fsync_path(tmp)
        _swap_in(tmp, target, guard)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_path(target.parent)
    return target


def _swap_in(tmp: Path, target: Path, guard: Callable[[Path], None] | None) -> None:
    backup = None
    if target.exists():
        if not target.is_dir():
            raise FileExistsError(f"{target} exists and is not a folder; choose another path")
        if guard is not None:
            guard(target)
        backup = target.parent / f"{TMP_PREFIX}old-{target.name}-{os.getpid()}"
        shutil.rmtree(backup, ignore_errors=True)
        target.rename(backup)
    try:
        tmp.rename(target)
    except BaseException:
        if backup is not None:
            backup.rename(target)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
