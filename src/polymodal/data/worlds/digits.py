"""The digits world: scikit-learn's bundled real handwritten digits (UCI, 1797 8x8 images), captioned.

The data ship inside scikit-learn, so this works offline. Images are rendered as a light digit on a
dark background (the dataset's ink intensity, 0..16, mapped to 0..255) and upscaled with a bicubic
filter. Train and test are split per sample with a seeded permutation stratified by label, so both
splits hold every digit in the same proportion and no sample is in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

DIGIT_NAMES: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)
# {n} is the numeral, {word} the number name.
TRAIN_TEMPLATES: tuple[str, ...] = (
    "a handwritten digit {n}",
    "the number {word}",
    "a handwritten {word}",
    "the digit {n}",
    "a {word} written by hand",
    "handwritten number {n}",
)
EVAL_TEMPLATES: tuple[str, ...] = (
    "a photo of the number {word}.",
    "an image of a {n}",
    "a scan of the digit {word}",
)
DIGIT_SPLITS = {"train": 0, "test": 1}


@dataclass
class DigitSample:
    """One digit image (RGB, image_size px), its label 0..9 and a training caption."""

    image: Image.Image
    label: int
    caption: str


@lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 8, 8) in 0..255, labels int64 (N,)), loaded once per process."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)
    return images, data.target.astype(np.int64)


def digit_caption(label: int, template: str) -> str:
    """Fill a template with the numeral and the word of ``label``."""
    return template.format(n=label, word=DIGIT_NAMES[label])


def caption(label: int, rng: np.random.Generator, templates: tuple[str, ...] = TRAIN_TEMPLATES) -> str:
    """A caption for ``label`` from a template chosen by ``rng`` (training phrasings by default)."""
    if not 0 <= label <= 9:
        raise ValueError(f"digit label must be 0..9, got {label}")
    return digit_caption(label, templates[int(rng.integers(len(templates)))])


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Sorted sample indices per split; each label contributes round(test_fraction * count) to test."""
    rng = np.random.default_rng([seed, 1797])
    test = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_test = int(round(test_fraction * len(members)))
        test.append(rng.permutation(members)[:n_test])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return {"train": train_idx, "test": test_idx}


class DigitsWorld:
    """A finite, indexable split of the handwritten digits: ``len(world)``, ``world.sample(i)``."""

    def __init__(self, split: str = "train", seed: int = 0, image_size: int = 64, test_fraction: float = 0.2):
        if split not in DIGIT_SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(DIGIT_SPLITS)}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.split, self.seed, self.image_size = split, seed, image_size
        images, labels = _load_digits()
        self.indices = stratified_split(labels, test_fraction, seed)[split]  # into the full dataset
        self.labels = labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def label(self, i: int) -> int:
        """The label of sample ``i`` without rendering it."""
        return int(self.labels[self._check(i)])

    def _check(self, i: int) -> int:
        if not 0 <= i < len(self):
            raise IndexError(
                f"digit index {i} out of range for the {self.split} split of {len(self)} samples"
            )
        return i

    def image(self, i: int) -> Image.Image:
        """Sample ``i`` as an RGB image, light digit on dark background, upscaled bicubically."""
        pixels = _load_digits()[0][self.indices[self._check(i)]]
        small = Image.fromarray(pixels)  # uint8 (8, 8) -> mode "L"
        return small.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC).convert("RGB")

    def sample(self, i: int, templates: tuple[str, ...] = TRAIN_TEMPLATES) -> DigitSample:
        """Sample ``i`` with a caption seeded by (seed, split, i)."""
        rng = np.random.default_rng([self.seed, DIGIT_SPLITS[self.split], i])
        label = self.label(i)
        return DigitSample(image=self.image(i), label=label, caption=caption(label, rng, templates))
