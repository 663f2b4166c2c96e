"""Batches for the fusion encoder's pretraining tasks, each a pure function of (seed, batch index).

Sample ``pos`` of batch ``index`` is scene ``index * batch_size + pos`` of the shapes world's train split
(which never shows a held-out colour/shape pair), rendered, with:

- one caption in a training phrasing (itc, itm, mlm, mim), and ``positives``: which of the batch's
  captions are true of which scene ("two shapes" fits every two-object scene), so that ITC never pushes a
  true caption away and ITM never mines one as a negative;
- one contradicting caption (a colour swap, shape swap, relation flip or count change, the kinds taken in
  turn) as an extra ITM negative, so that matching learns every kind of contradiction;
- ``questions_per_scene`` questions about the scene with the ids of their answers in the model's answer
  vocabulary (vqa); ``question_image`` names each question's scene (the image tower runs once per scene);
  ``question_points`` / ``question_points_mask``: the centres of the objects each question names (point);
- ``caption_points`` / ``caption_points_mask``: the centres of the two objects a relation caption names
  (point: the point head also checks relations for itm).

The keys are those of :mod:`polymodal.modules.fusion_losses`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from polymodal.data.contrastive import group_keys
from polymodal.data.images import ImageProcessor
from polymodal.data.tokenizer import TextTokenizer
from polymodal.data.worlds.shapes import (
    ANSWER_VOCAB,
    PERTURB_KINDS,
    QA,
    TRAIN_TEMPLATES,
    Scene,
    ShapesWorld,
    captions,
    perturb_caption,
)
from polymodal.data.worlds.shapes_language import relation_caption_centres
from polymodal.data.worlds.shapes_qa import QA_KINDS, questions


@dataclass
class FusionDataConfig:
    image_size: int = 64  # world render size (the image processor resizes to its own size)
    context_length: int = 32  # max tokens per caption or question, end token included
    min_objects: int = 1  # fewest objects per scene
    max_objects: int = 4  # most objects per scene
    contradictions: bool = True  # add one contradicting caption per scene (neg_input_ids): an ITM negative
    questions_per_scene: int = 1  # VQA questions asked about each scene (drawn independently)
    balance_question_kinds: bool = True  # pick the question kind uniformly first (else uniform questions)
    question_kinds: dict[str, float] = field(default_factory=dict)  # kind -> weight when balancing (else 1)
    seed: int = 0  # seeds the world and every per-sample choice

    def validate(self) -> None:
        """Raise ValueError on unusable values."""
        if self.context_length < 2:
            raise ValueError(f"context_length must be >= 2 (start and end tokens), got {self.context_length}")
        if self.questions_per_scene < 1:
            raise ValueError(f"questions_per_scene must be >= 1, got {self.questions_per_scene}")
        unknown = sorted(set(self.question_kinds) - set(QA_KINDS))
        if unknown:
            raise ValueError(f"question_kinds: unknown kind {unknown[0]!r}; kinds are {QA_KINDS}")
        if any(not w >= 0 for w in self.question_kinds.values()):
            raise ValueError(f"question_kinds weights must be >= 0, got {self.question_kinds}")
        if self.question_kinds and not self.balance_question_kinds:
            raise ValueError("question_kinds weighs kinds, which needs balance_question_kinds")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8 pixels, got {self.image_size}")


def true_captions(scene: Scene, templates=TRAIN_TEMPLATES) -> set[str]:
    """Every caption the templates can say truly of ``scene``, whatever order its objects are listed in
    (and so whichever describable pair a relation caption names)."""
    out: set[str] = set()
    for order in itertools.permutations(scene.objects):
        out.update(captions(replace(scene, objects=order), templates))
    return out


def caption_truth(scenes: list[Scene], texts: list[str]) -> torch.Tensor:
    """(B, B) bool: True where ``texts[j]`` is a true caption of ``scenes[i]`` (row = scene)."""
    truth = [true_captions(scene) for scene in scenes]
    return torch.tensor([[text in true for text in texts] for true in truth], dtype=torch.bool)


def question_points(asked: list[QA], slots: int = 2) -> dict[str, torch.Tensor]:
    """``question_points`` (Q, slots, 2): the centres of the objects each question names, in order, and
    ``question_points_mask`` (Q, slots): which slots a question fills (the point head's targets)."""
    points = torch.zeros(len(asked), slots, 2)
    named = torch.zeros(len(asked), slots, dtype=torch.bool)
    for row, qa in enumerate(asked):
        for slot, centre in enumerate(qa.points[:slots]):
            points[row, slot] = torch.tensor(centre)
            named[row, slot] = True
    return {"question_points": points, "question_points_mask": named}


def caption_points(
    scenes: list[Scene], texts: list[str | None], slots: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, slots, 2) centres of the objects each relation caption names (true or reversed), in order, and
    (N, slots) which slots hold one; a caption naming no relation (or None) fills none."""
    points = torch.zeros(len(texts), slots, 2)
    named = torch.zeros(len(texts), slots, dtype=torch.bool)
    for row, (scene, text) in enumerate(zip(scenes, texts, strict=True)):
        centres = relation_caption_centres(scene).get(text) if text else None
        if centres is not None:
            points[row, :2] = torch.tensor(centres)
            named[row, :2] = True
    return points, named


def pick_question(
    scene: Scene, rng: np.random.Generator, balance_kinds: bool, kind_weights: dict[str, float] | None = None
) -> QA:
    """One question about ``scene``: uniform over its questions, or over kinds first when ``balance_kinds``
    (weighted by ``kind_weights``, 1 for a kind it leaves out; a scene without a kind skips it)."""
    options = questions(scene, rng)
    if balance_kinds:
        kinds = sorted({q.kind for q in options})
        if kind_weights:
            weights = np.array([kind_weights.get(k, 1.0) for k in kinds])
            if not weights.sum() > 0:
                weights = np.ones(len(kinds))  # every kind this scene has weighs 0: fall back to uniform
            kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        else:
            kind = kinds[int(rng.integers(len(kinds)))]
        options = [q for q in options if q.kind == kind]
    return options[int(rng.integers(len(options)))]


def contradiction(scene: Scene, first_kind: int, rng: np.random.Generator, avoid) -> str | None:
    """A caption contradicting ``scene``, trying the kinds in turn from ``PERTURB_KINDS[first_kind]``."""
    for step in range(len(PERTURB_KINDS)):
        kind = PERTURB_KINDS[(first_kind + step) % len(PERTURB_KINDS)]
        text = perturb_caption(scene, kind, rng, avoid=avoid)
        if text is not None:
            return text
    return None


class FusionBatches:
    """``batch(index)``: the dict of tensors one fusion pretraining step reads, reproducible from the index.

    Args:
        config: what a batch is made of.
        image_processor: turns the rendered scenes into (B, 3, S, S) tensors.
        tokenizer: the model's tokenizer (captions and questions).
        batch_size: scenes per batch.
        answers: the model's answer vocabulary (its vqa class ids); every world answer must be in it.
    """

    def __init__(
        self,
        config: FusionDataConfig,
        image_processor: ImageProcessor,
        tokenizer: TextTokenizer,
        batch_size: int,
        answers: Sequence[str] = ANSWER_VOCAB,
    ):
        config.validate()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        missing = sorted(set(ANSWER_VOCAB) - set(answers))
        if missing:
            raise ValueError(f"the answer vocabulary lacks shapes answers {missing}; it has {list(answers)}")
        self.config, self.image_processor, self.tokenizer = config, image_processor, tokenizer
        self.batch_size = batch_size
        self.answer_ids = {a: i for i, a in enumerate(answers)}
        self.world = ShapesWorld(
            config.seed, "train", config.min_objects, config.max_objects, config.image_size
        )

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        """Micro-batch ``index``: images (B, 3, S, S); input_ids / attention_mask (B, T) captions; groups
        (B, 2); positives (B, B) (caption j true of scene i); question_ids / question_mask (Q, Tq), answer_ids and question_image (Q,) with
        Q = B * questions_per_scene; with contradictions also neg_input_ids / neg_attention_mask (B, T) and
        neg_valid (B,)."""
        if index < 0:
            raise IndexError(f"batch index must be >= 0, got {index}")
        cfg, size = self.config, self.batch_size
        samples, negatives, asked = [], [], []
        for pos in range(size):
            k = index * size + pos
            sample = self.world.sample(k)
            rng = np.random.default_rng([cfg.seed, index, pos, 0xF5])
            asked += [
                pick_question(sample.scene, rng, cfg.balance_question_kinds, cfg.question_kinds)
                for _ in range(cfg.questions_per_scene)
            ]
            if cfg.contradictions:
                negatives.append(contradiction(sample.scene, k % len(PERTURB_KINDS), rng, self.world.heldout))
            samples.append(sample)
        texts = [s.caption for s in samples]
        # one tokenizer call for captions and contradictions, so both get the same T
        ids, mask = self.tokenizer(texts + [n or "" for n in negatives], cfg.context_length)
        question_ids, question_mask = self.tokenizer([q.question for q in asked], cfg.context_length)
        out = {
            "images": self.image_processor([s.image for s in samples]),
            "input_ids": ids[:size],
            "attention_mask": mask[:size],
            "groups": group_keys([f"shapes:{index * size + pos}" for pos in range(size)], texts),
            "positives": caption_truth([s.scene for s in samples], texts),
            "question_ids": question_ids,
            "question_mask": question_mask,
            "answer_ids": torch.tensor([self.answer_ids[q.answer] for q in asked], dtype=torch.long),
            "question_image": torch.arange(size).repeat_interleave(cfg.questions_per_scene),
            **question_points(asked),
        }
        scenes = [s.scene for s in samples]
        out["caption_points"], out["caption_points_mask"] = caption_points(scenes, texts)
        if cfg.contradictions:
            out["neg_input_ids"], out["neg_attention_mask"] = ids[size:], mask[size:]
            out["neg_valid"] = torch.tensor([n is not None for n in negatives], dtype=torch.bool)
        return out
