"""Image-text batches for contrastive training, each a pure function of (seed, batch index).

Resuming at step ``n`` means asking for ``batch(n)``: no iterator state is carried, so an interrupted
run sees exactly the data it would have seen. Sample ``pos`` of batch ``index`` is item
``k = index * batch_size + pos`` of whichever source is drawn for it, so sources are read as disjoint,
never-repeating streams (finite sources cycle through seeded per-epoch permutations).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from polymodal.data.images import ImageProcessor
from polymodal.data.tokenizer import TextTokenizer
from polymodal.data.worlds import digits
from polymodal.data.worlds.digits import DigitsWorld
from polymodal.data.worlds.shapes import PERTURB_KINDS, TRAIN_TEMPLATES, Scene, ShapesWorld, perturb_caption


@dataclass
class PairSample:
    """An image with a matching text; samples with equal ``group`` are positives of each other."""

    image: Image.Image
    text: str
    group: str
    scene: Scene | None = None  # the scene graph, for sources that have one
    label: int | None = None  # a class label, for classification sources


class PairSource(Protocol):
    """What ContrastiveBatches reads: item ``k`` of a stream, and a text that contradicts an item."""

    def sample(self, k: int) -> PairSample: ...

    def negative_text(self, sample: PairSample, rng: np.random.Generator) -> str | None: ...


class ShapesPairs:
    """Shapes scenes with one caption phrasing each; every scene is its own group."""

    def __init__(self, world: ShapesWorld, templates: dict[str, tuple[str, ...]] | None = None):
        self.world = world
        self.templates = templates or TRAIN_TEMPLATES

    def sample(self, k: int) -> PairSample:
        """Scene ``k`` of the world, rendered, with a caption chosen by (world seed, split, k)."""
        s = self.world.sample(k, self.templates)
        return PairSample(image=s.image, text=s.caption, group=f"shapes:{k}", scene=s.scene)

    def negative_text(self, sample: PairSample, rng: np.random.Generator) -> str | None:
        """A caption contradicting the scene in one way (kind tried in random order); never a held-out pair."""
        for kind in rng.permutation(PERTURB_KINDS):
            text = perturb_caption(
                sample.scene, str(kind), rng, avoid=self.world.heldout, templates=self.templates
            )
            if text is not None:
                return text
        return None


class DigitsPairs:
    """Handwritten digits captioned from training templates; all samples of a digit form one group."""

    def __init__(self, world: DigitsWorld, templates: tuple[str, ...] = digits.TRAIN_TEMPLATES):
        self.world = world
        self.templates = templates
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def _order(self, epoch: int) -> np.ndarray:
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            rng = np.random.default_rng([self.world.seed, 0xD161, epoch])
            self._epoch_order = (epoch, rng.permutation(len(self.world)))
        return self._epoch_order[1]

    def sample(self, k: int) -> PairSample:
        """Item ``k`` of the stream: epoch ``k // len``, position ``k % len`` of that epoch's permutation."""
        if k < 0:
            raise IndexError(f"sample index must be >= 0, got {k}")
        epoch, position = divmod(k, len(self.world))
        i = int(self._order(epoch)[position])
        label = self.world.label(i)
        text = digits.caption(label, np.random.default_rng([self.world.seed, 0xC4, k]), self.templates)
        return PairSample(image=self.world.image(i), text=text, group=f"digit:{label}", label=label)

    def negative_text(self, sample: PairSample, rng: np.random.Generator) -> str | None:
        """A caption of another digit."""
        other = (sample.label + int(rng.integers(1, 10))) % 10
        return digits.caption(other, rng, self.templates)


@dataclass
class ContrastiveDataConfig:
    """What a contrastive batch is made of."""

    sources: dict[str, float] = field(
        default_factory=lambda: {"shapes": 0.5, "digits": 0.5}
    )  # name -> weight
    image_size: int = 64  # world render size (the image processor resizes to its own size)
    context_length: int = 32  # max tokens per text, end token included
    augment: bool = True  # mild crop/scale/brightness jitter (never flips)
    hard_negatives: bool = False  # add one contradicting caption per sample (neg_input_ids, neg_valid)
    seed: int = 0  # seeds worlds, source choice and augmentation
    min_objects: int = 1  # shapes: fewest objects per scene
    max_objects: int = 4  # shapes: most objects per scene

    def validate(self) -> None:
        """Raise ValueError on unusable values."""
        if not self.sources:
            raise ValueError("sources is empty; give at least one, e.g. {'shapes': 1.0}")
        bad = {k: w for k, w in self.sources.items() if not w > 0}
        if bad:
            raise ValueError(f"source weights must be > 0, got {bad}")
        if self.context_length < 2:
            raise ValueError(f"context_length must be >= 2 (start and end tokens), got {self.context_length}")


def build_source(name: str, config: ContrastiveDataConfig) -> PairSource:
    """The built-in source called ``name`` ("shapes" or "digits"), on its train split."""
    if name == "shapes":
        world = ShapesWorld(config.seed, "train", config.min_objects, config.max_objects, config.image_size)
        return ShapesPairs(world)
    if name == "digits":
        return DigitsPairs(DigitsWorld("train", seed=config.seed, image_size=config.image_size))
    raise ValueError(
        f"unknown source {name!r}: built-in sources are 'shapes' and 'digits'; pass others via sources="
    )


def stable_hash(text: str) -> int:
    """A 63-bit hash of ``text`` that is the same in every process and run (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def group_keys(groups: list[str], texts: list[str]) -> torch.Tensor:
    """LongTensor (B, 2): stable hashes of each sample's group and of its text.

    Two pairs are positives of each other when either column matches: the same group (two images of the
    digit 3) or the same text (each image then matches the other's caption). Hashes rather than per-batch
    ids, so keys gathered from several ranks stay comparable.
    """
    return torch.tensor(
        [[stable_hash(g), stable_hash(t)] for g, t in zip(groups, texts, strict=True)], dtype=torch.long
    )


class ContrastiveBatches:
    """``batch(index)``: a dict of tensors for contrastive training, reproducible from (seed, index)."""

    def __init__(
        self,
        config: ContrastiveDataConfig,
        image_processor: ImageProcessor,
        tokenizer: TextTokenizer,
        batch_size: int,
        sources: Mapping[str, PairSource] | None = None,
    ):
        config.validate()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.config, self.image_processor, self.tokenizer, self.batch_size = (
            config,
            image_processor,
            tokenizer,
            batch_size,
        )
        self.names = sorted(config.sources)  # sorted: the draw must not depend on dict order
        given = dict(sources or {})
        self.sources = {n: given[n] if n in given else build_source(n, config) for n in self.names}
        weights = np.array([config.sources[n] for n in self.names], dtype=np.float64)
        self.probabilities = weights / weights.sum()

    def _samples(self, index: int) -> tuple[list[PairSample], list[str | None]]:
        cfg, size = self.config, self.batch_size
        choice = np.random.default_rng([cfg.seed, index]).choice(
            len(self.names), size=size, p=self.probabilities
        )
        samples, negatives = [], []
        for pos in range(size):
            source = self.sources[self.names[choice[pos]]]
            sample = source.sample(index * size + pos)
            rng = np.random.default_rng([cfg.seed, index, pos])
            if cfg.augment:
                sample.image = self.image_processor.augment(sample.image, rng)
            negatives.append(source.negative_text(sample, rng) if cfg.hard_negatives else None)
            samples.append(sample)
        return samples, negatives

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        """Micro-batch ``index``: images (B,3,S,S) float, input_ids (B,T) long, attention_mask (B,T) bool,
        groups (B, 2) long (see group_keys); with hard_negatives also neg_input_ids, neg_attention_mask (B,T) and neg_valid (B,)."""
        if index < 0:
            raise IndexError(f"batch index must be >= 0, got {index}")
        samples, negatives = self._samples(index)
        texts = [s.text for s in samples]
        # One tokenizer call for captions and negatives, so both get the same T.
        all_texts = texts + [n or "" for n in negatives] if self.config.hard_negatives else texts
        ids, mask = self.tokenizer(all_texts, self.config.context_length)
        out = {
            "images": self.image_processor([s.image for s in samples]),
            "input_ids": ids[: self.batch_size],
            "attention_mask": mask[: self.batch_size],
            "groups": group_keys([s.group for s in samples], texts),
        }
        if self.config.hard_negatives:
            out["neg_input_ids"] = ids[self.batch_size :]
            out["neg_attention_mask"] = mask[self.batch_size :]
            out["neg_valid"] = torch.tensor([n is not None for n in negatives], dtype=torch.bool)
        return out

    def iterate(self, start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Batches ``start``, ``start + 1``, ... without end (resume by passing the next step)."""
        index = start
        while True:
            yield self.batch(index)
            index += 1
