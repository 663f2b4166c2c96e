"""A folder of images (recursively), with optional captions from ``captions.csv`` or ``captions.jsonl``.

Every file is decoded once while indexing, so a corrupt or mislabelled file is reported up front
instead of failing mid-training; ``report()`` says what was indexed and what was skipped and why.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from polymodal.data.images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CAPTION_FILES = ("captions.csv", "captions.jsonl")
FILE_KEYS = ("file", "image", "path")
TEXT_KEYS = ("caption", "text")


@dataclass(frozen=True)
class FolderItem:
    """One decodable image and its caption (None when the captions file has none for it)."""

    path: Path
    caption: str | None


def _pick_key(row: Mapping, keys: tuple[str, ...], source: Path, line: int) -> str:
    for key in keys:
        if row.get(key) is not None:
            return str(row[key])
    raise ValueError(f"{source} line {line}: needs one of the keys {', '.join(keys)}; got {', '.join(row)}")


def read_captions(path: Path) -> dict[str, str]:
    """Map file name (relative to the folder) -> caption from a CSV with a header or a JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path}")
    if path.suffix == ".jsonl":
        rows = []
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((line_no, json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {line_no} is not valid JSON: {e}") from e
    elif path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(enumerate(csv.DictReader(f), start=2))  # line 1 is the header
    else:
        raise ValueError(f"captions file {path} must end in .csv or .jsonl")
    return {
        Path(_pick_key(row, FILE_KEYS, path, n)).as_posix(): _pick_key(row, TEXT_KEYS, path, n)
        for n, row in rows
    }


class ImageFolder:
    """Indexed images under ``root``: ``items``, ``skipped`` and ``report()``.

    Args:
        root: folder searched recursively for image files (by extension).
        captions: None to read ``captions.csv`` / ``captions.jsonl`` from ``root`` if present, a path
            to such a file, or a mapping from file name (relative to root, or bare name) to caption.
        verify: decode every file now, so ``items`` holds only readable images. With False nothing is
            decoded yet: iterate :meth:`decoded` once to get each image (decoded once) while ``items`` and
            ``skipped`` fill in — what an indexer over large photos wants.
    """

    def __init__(
        self,
        root: str | Path,
        captions: str | Path | Mapping[str, str] | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        verify: bool = True,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root} (pass an existing directory)")
        self.max_pixels = max_pixels
        self.captions = self._captions(captions)
        self.items: list[FolderItem] = []
        self.skipped: list[tuple[str, str]] = []
        self._candidates = [
            p
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        ]
        if verify:
            for _ in self.decoded():
                pass

    def _captions(self, captions: str | Path | Mapping[str, str] | None) -> dict[str, str]:
        if isinstance(captions, Mapping):
            return {Path(k).as_posix(): v for k, v in captions.items()}
        if captions is not None:
            return read_captions(Path(captions))
        found = [self.root / name for name in CAPTION_FILES if (self.root / name).is_file()]
        return read_captions(found[0]) if found else {}

    def decoded(self) -> Iterator[tuple[FolderItem, Image.Image]]:
        """Decode each candidate file once, in order: yields (item, RGB image); failures go to ``skipped``."""
        candidates, self._candidates = self._candidates, []
        for path in candidates:
            name = path.relative_to(self.root).as_posix()
            try:
                image = load_image(path, max_pixels=self.max_pixels)
            except ImageLoadError as e:
                self.skipped.append((name, e.reason))
                continue
            item = FolderItem(path=path, caption=self.captions.get(name, self.captions.get(path.name)))
            self.items.append(item)
            yield item, image

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> FolderItem:
        return self.items[i]

    def load(self, i: int) -> Image.Image:
        """The RGB image of item ``i``."""
        return load_image(self.items[i].path, max_pixels=self.max_pixels)

    def report(self) -> str:
        """'indexed 41 images, skipped 2: a.jpg (cannot identify image file), b.png (truncated)'."""
        text = f"indexed {len(self.items)} image{'s' if len(self.items) != 1 else ''}"
        if self.skipped:
            text += f", skipped {len(self.skipped)}: " + ", ".join(f"{n} ({r})" for n, r in self.skipped)
        return text
