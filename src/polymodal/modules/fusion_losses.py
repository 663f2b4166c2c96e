"""Pretraining losses of the fusion encoder (:mod:`polymodal.models.fusion_encoder`) and their schedule.

Each ``<task>_loss(model, batch, ...)`` returns ``(loss, metrics)``. Batch keys:

- ``images`` (B, 3, H, W), ``input_ids`` / ``attention_mask`` (B, T): matched captions (itc, itm, mlm, mim);
- ``groups`` (B,) optional: equal ids are positives of each other (never mined as ITM negatives);
- ``positives`` (B, B) bool optional, instead of groups: True where text j describes image i (row =
  image), for data whose captions can be true of several images ("two shapes");
- ``neg_input_ids`` / ``neg_attention_mask`` (B, T') and ``neg_valid`` (B,) optional: a caption that
  contradicts each image (a swapped colour, a flipped relation...), an extra ITM negative where valid;
- ``question_ids`` / ``question_mask`` (Q, Tq) and ``answer_ids`` (Q,): questions about ``images`` (vqa),
  one per image (Q = B) unless ``question_image`` (Q,) gives the image row each question is about;
- ``question_points`` (Q, 2, 2) and ``question_points_mask`` (Q, 2) (point): the centres (x, y) in [0, 1]
  of the objects each question names, subject first, and which of the two it names; optionally
  ``caption_points`` (B, 2, 2) and ``caption_points_mask`` (B, 2): the same for relation captions.

:func:`multitask_loss` shares one pass of the towers between the tasks;
:class:`polymodal.train.curriculum.Curriculum` gives the task weights (and context dropout) of a training step.
"""

from __future__ import annotations

from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.modules.fusion import modality_dropout as drop_modalities
from polymodal.modules.fusion_masking import IGNORE_INDEX, mim_mask, mine_hard_negatives, mlm_mask
from polymodal.modules.losses import _soft_cross_entropy, positive_mask

TASKS = ("itc", "itm", "mlm", "mim", "vqa", "point")
ITM_NEGATIVES = ("hard", "easy")  # itc-mined + contradicting captions (ALBEF) | uniform in-batch (bootstrap)
MODALITIES = ("image", "text")
Metrics = dict[str, Tensor]


def _need(batch: dict[str, Tensor], keys: tuple[str, ...], task: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise ValueError(f"the {task} task needs batch keys {list(keys)}; missing {missing}")


class EncodedBatch:
    """The towers' outputs for one batch, computed on first use and shared by every task."""

    def __init__(self, model: nn.Module, batch: dict[str, Tensor]):
        self.model, self.batch = model, batch
        self.answer_pass: tuple[Tensor, Tensor | None] | None = None  # read by vqa and point

    @cached_property
    def image_tokens(self) -> Tensor:
        _need(self.batch, ("images",), "image")
        return self.model.image_tokens(self.batch["images"])

    @cached_property
    def text_tokens(self) -> Tensor:
        _need(self.batch, ("input_ids", "attention_mask"), "caption")
        return self.model.text_tokens(self.batch["input_ids"], self.batch["attention_mask"])

    @property
    def text_mask(self) -> Tensor:
        return self.batch["attention_mask"]

    @cached_property
    def negative_text_tokens(self) -> Tensor:
        _need(self.batch, ("neg_input_ids", "neg_attention_mask", "neg_valid"), "contradicting caption")
        return self.model.text_tokens(self.batch["neg_input_ids"], self.batch["neg_attention_mask"])


def _pad_tokens(tokens: Tensor, mask: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Right-pad (B, T, C) tokens with zeros and their (B, T) mask with False up to ``length``."""
    extra = length - tokens.shape[1]
    if extra <= 0:
        return tokens, mask
    return F.pad(tokens, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=False)


def _with_contradictions(
    encoded: EncodedBatch, image_index: Tensor, text: Tensor, text_mask: Tensor
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Append (image, contradicting caption) pairs where ``neg_valid``; returns the image indices, the
    (padded) text tokens and mask, and how many pairs were appended."""
    _need(encoded.batch, ("neg_input_ids", "neg_attention_mask", "neg_valid"), "contradicting caption")
    valid = encoded.batch["neg_valid"].bool()
    if valid.shape != (encoded.image_tokens.shape[0],):
        raise ValueError(f"neg_valid must be ({encoded.image_tokens.shape[0]},), got {tuple(valid.shape)}")
    negatives = encoded.negative_text_tokens[valid]
    negative_mask = encoded.batch["neg_attention_mask"][valid].bool()
    length = max(text.shape[1], negatives.shape[1])
    text, text_mask = _pad_tokens(text, text_mask.bool(), length)
    negatives, negative_mask = _pad_tokens(negatives, negative_mask, length)
    rows = torch.arange(len(valid), device=valid.device)[valid]
    return (
        torch.cat([image_index, rows]),
        torch.cat([text, negatives]),
        torch.cat([text_mask, negative_mask]),
        int(valid.sum()),
    )


def _context_masks(
    model: nn.Module,
    image: Tensor,
    text: Tensor,
    text_mask: Tensor,
    p: dict[str, float] | None,
    context: str,
    generator: torch.Generator | None,
) -> dict[str, Tensor]:
    """Masks after dropping ``context`` per sample with probability ``p[context]``; the other modality is
    the prediction target and is never dropped (there would be nothing to predict from)."""
    probability = {context: p[context]} if p and context in p else {}
    return drop_modalities(
        {"image": image, "text": text}, {"text": text_mask}, probability, generator, training=model.training
    )


def pair_positives(batch: dict[str, Tensor], n: int, device: torch.device) -> Tensor:
    """(B, B) bool, True where text j describes image i: ``batch["positives"]`` if given (the diagonal is
    always True), else equal ``groups`` (or the diagonal alone)."""
    if "positives" not in batch:
        return positive_mask(n, batch.get("groups"), device)
    positives = batch["positives"].to(device=device, dtype=torch.bool)
    if positives.shape != (n, n):
        raise ValueError(
            f"positives must be a ({n}, {n}) bool matrix (row = image), got {tuple(positives.shape)}"
        )
    return positives | torch.eye(n, dtype=torch.bool, device=device)


def itc_loss(
    model: nn.Module, batch: dict[str, Tensor], encoded: EncodedBatch | None = None
) -> tuple[Tensor, Metrics]:
    """Image-text contrastive InfoNCE on the unimodal towers; metric: image-to-text top-1 accuracy."""
    encoded = encoded or EncodedBatch(model, batch)
    image = model.image_embedding(encoded.image_tokens)
    text = model.text_embedding(encoded.text_tokens, encoded.text_mask)
    positives = pair_positives(batch, image.shape[0], image.device)
    logits = model.scale() * image @ text.t()  # (B images, B texts)
    loss = (_soft_cross_entropy(logits, positives) + _soft_cross_entropy(logits.t(), positives.t())) / 2
    with torch.no_grad():
        correct = positives[torch.arange(len(logits)), logits.argmax(dim=1)]
    return loss, {"acc": correct.float().mean()}


def itm_loss(
    model: nn.Module,
    batch: dict[str, Tensor],
    encoded: EncodedBatch | None = None,
    generator: torch.Generator | None = None,
    negatives: str = "hard",
) -> tuple[Tensor, Metrics]:
    """Image-text matching on the B positives and up to 2B in-batch negatives (one text per image, one
    image per text); ``negatives="hard"`` mines them from itc similarity and adds the batch's contradicting
    captions (``neg_input_ids``) when it has them, ``"easy"`` draws them uniformly (a fusion that has not
    learnt to align yet gets a signal it can follow). Binary cross-entropy with positives and negatives
    weighing the same; metrics: pair accuracy, and accuracy on the contradictions."""
    model.require("itm")
    if negatives not in ITM_NEGATIVES:
        raise ValueError(f"itm negatives must be one of {ITM_NEGATIVES}, got {negatives!r}")
    encoded = encoded or EncodedBatch(model, batch)
    image_tokens, text_tokens, text_mask = encoded.image_tokens, encoded.text_tokens, encoded.text_mask
    n = image_tokens.shape[0]
    similarity = torch.zeros(n, n, device=image_tokens.device)  # easy: uniform over the non-positives
    if negatives == "hard":
        with torch.no_grad():
            similarity = (
                model.scale()
                / model.config.itm_mining_temperature
                * model.image_embedding(image_tokens)
                @ model.text_embedding(text_tokens, text_mask).t()
            )
    positives = pair_positives(batch, n, image_tokens.device)
    neg_text, neg_image, text_ok, image_ok = mine_hard_negatives(similarity, positives, generator)
    rows = torch.arange(n, device=image_tokens.device)
    image_index = torch.cat([rows, rows[text_ok], neg_image[image_ok]])
    text_index = torch.cat([rows, neg_text[text_ok], rows[image_ok]])
    texts, masks, contradictions = text_tokens[text_index], text_mask[text_index], 0
    if negatives == "hard" and "neg_input_ids" in batch:
        image_index, texts, masks, contradictions = _with_contradictions(encoded, image_index, texts, masks)
    fused = model.fuse(image_tokens[image_index], texts, masks)
    logits = model.match_readout(fused, masks)
    labels = torch.zeros_like(logits)
    labels[:n] = 1.0
    # positives and negatives weigh the same: with up to 3 negatives per positive, "never a match" would
    # otherwise be a comfortable optimum that a fusion still learning to align does not leave
    per_pair = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    loss = (per_pair[:n].mean() + per_pair[n:].mean()) / 2 if len(logits) > n else per_pair.mean()
    metrics = {"acc": ((logits > 0).float() == labels).float().mean()}
    if contradictions:
        metrics["contradiction_acc"] = (logits[len(logits) - contradictions :] < 0).float().mean()
    return loss, metrics


def mlm_loss(
    model: nn.Module,
    batch: dict[str, Tensor],
    encoded: EncodedBatch | None = None,
    modality_dropout: dict[str, float] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Metrics]:
    """Masked language modelling with image context (BERT's 80/10/10 corruption of the captions);
    ``modality_dropout["image"]`` hides the image per sample (text-only MLM). Metric: masked-token accuracy."""
    model.require("mlm")
    _need(batch, ("input_ids", "attention_mask"), "mlm")
    encoded = encoded or EncodedBatch(model, batch)
    cfg, ids, mask = model.config, batch["input_ids"], batch["attention_mask"]
    corrupted, labels = mlm_mask(
        ids, mask, cfg.mask_token_id, model.vocab_size, cfg.special_token_ids, cfg.mlm_probability, generator
    )
    keep = labels != IGNORE_INDEX
    if not bool(keep.any()):
        raise ValueError("mlm: no caption has a maskable token (all are special or padding)")
    text = model.text_tokens(corrupted, mask)
    image = encoded.image_tokens
    masks = _context_masks(model, image, text, mask, modality_dropout, "image", generator)
    logits = model.mlm_logits(model.fuse(image, text, masks["text"], masks["image"]))  # (B, T, vocab)
    loss = F.cross_entropy(logits[keep].float(), labels[keep])
    return loss, {"acc": (logits[keep].argmax(-1) == labels[keep]).float().mean()}


def mim_loss(
    model: nn.Module,
    batch: dict[str, Tensor],
    encoded: EncodedBatch | None = None,
    modality_dropout: dict[str, float] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Metrics]:
    """Masked image modelling with text context: ``config.mim_ratio`` of the image tokens become the learned
    mask token before fusion, and the fused tokens there regress the tower's original (detached) tokens;
    mean squared error on the masked positions only. ``modality_dropout["text"]`` hides the caption."""
    model.require("mim")
    encoded = encoded or EncodedBatch(model, batch)
    image = encoded.image_tokens
    target = image.detach()
    if model.config.mim_norm_target:
        target = F.layer_norm(target, target.shape[-1:])
    masked = mim_mask(image.shape[0], image.shape[1], model.config.mim_ratio, generator, image.device)
    text, text_mask = encoded.text_tokens, encoded.text_mask
    masks = _context_masks(model, image, text, text_mask, modality_dropout, "text", generator)
    fused = model.fuse(model.mask_image_tokens(image, masked), text, masks["text"], masks["image"])
    predicted = model.mim_predictions(fused)  # (B, N, image width)
    return F.mse_loss(predicted[masked].float(), target[masked].float()), {}


def _answer_pass(
    model: nn.Module,
    batch: dict[str, Tensor],
    encoded: EncodedBatch,
    modality_dropout: dict[str, float] | None,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor | None]:
    """Answer logits (Q, answers) and, with the point head, points (Q, 2, 2) for the batch's questions:
    one fusion pass, shared by the vqa and point tasks of one batch."""
    if encoded.answer_pass is not None:
        return encoded.answer_pass
    _need(batch, ("images", "question_ids", "question_mask", "answer_ids"), "vqa")
    image = encoded.image_tokens
    if "question_image" in batch:  # several questions per image: each names its image row
        rows = batch["question_image"]
        if rows.dim() != 1 or bool((rows < 0).any() or (rows >= image.shape[0]).any()):
            raise ValueError(f"question_image must be (Q,) image rows in [0, {image.shape[0]})")
        image = image[rows]
    if batch["answer_ids"].shape != (image.shape[0],) or batch["question_ids"].shape[0] != image.shape[0]:
        raise ValueError(
            f"answer_ids and question_ids need one row per question ({image.shape[0]}), got "
            f"{tuple(batch['answer_ids'].shape)} and {tuple(batch['question_ids'].shape)}"
        )
    question_mask = batch["question_mask"]
    questions = model.text_tokens(batch["question_ids"], question_mask)
    masks = _context_masks(model, image, questions, question_mask, modality_dropout, "image", generator)
    fused = model.fuse(image, questions, masks["text"], masks["image"])
    encoded.answer_pass = model.answer_readout(fused, masks["text"])
    return encoded.answer_pass


def vqa_loss(
    model: nn.Module,
    batch: dict[str, Tensor],
    encoded: EncodedBatch | None = None,
    modality_dropout: dict[str, float] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Metrics]:
    """Answer classification: cross-entropy over the answer vocabulary (``answer_ids`` of -100 are skipped);
    ``modality_dropout["image"]`` hides the image per sample (the answer must then come from the question
    alone: the prior). Metric: exact-answer accuracy."""
    model.require("vqa")
    encoded = encoded or EncodedBatch(model, batch)
    logits, _ = _answer_pass(model, batch, encoded, modality_dropout, generator)
    answers = batch["answer_ids"]
    labelled = answers != IGNORE_INDEX
    if bool((answers[labelled] >= logits.shape[1]).any() or (answers[labelled] < 0).any()):
        raise ValueError(f"answer_ids must lie in [0, {logits.shape[1]}) or be {IGNORE_INDEX}")
    loss = F.cross_entropy(logits.float(), answers, ignore_index=IGNORE_INDEX)
    return loss, {"acc": (logits.argmax(-1) == answers)[labelled].float().mean()}


def point_loss(
    model: nn.Module,
    batch: dict[str, Tensor],
    encoded: EncodedBatch | None = None,
    modality_dropout: dict[str, float] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Metrics]:
    """L1 between the points of the point head and the centres of the objects each question names
    (``question_points`` (Q, 2, 2), ``question_points_mask`` (Q, 2): False where the question names no
    such object), and for a model whose ITM reads the points (``point_itm``) also with ``caption_points`` /
    ``caption_points_mask`` (B, 2, 2) / (B, 2): those each relation caption names (pointed at in a pass
    over the true pairs). Metrics: the mean L1 (in image widths) of each."""
    model.require("point")
    _need(batch, ("question_points", "question_points_mask"), "point")
    encoded = encoded or EncodedBatch(model, batch)
    _, points = _answer_pass(model, batch, encoded, modality_dropout, generator)
    loss = _point_l1(points, batch["question_points"], batch["question_points_mask"], "question")
    metrics = {"l1": loss.detach()}
    captions_too = model.config.point_itm and "caption_points" in batch
    if captions_too and bool(batch["caption_points_mask"].any()):
        fused = model.fuse(encoded.image_tokens, encoded.text_tokens, encoded.text_mask)
        said = model.point_at(fused, encoded.text_mask)
        caption = _point_l1(said, batch["caption_points"], batch["caption_points_mask"], "caption")
        loss = loss + caption
        metrics["caption_l1"] = caption.detach()
    return loss, metrics


def _point_l1(points: Tensor, target: Tensor, named: Tensor, what: str) -> Tensor:
    """Mean L1 over the named slots (a zero that keeps the graph when none is named)."""
    if target.shape != points.shape or named.shape != points.shape[:2]:
        raise ValueError(
            f"{what}_points must be {tuple(points.shape)} and {what}_points_mask "
            f"{tuple(points.shape[:2])}, got {tuple(target.shape)} and {tuple(named.shape)}"
        )
    if not bool(named.any()):
        return points.sum() * 0.0
    return F.l1_loss(points[named], target.to(points)[named])


def check_modality_dropout(p: dict[str, float] | None) -> dict[str, float]:
    """Validate a context-dropout dict: keys in MODALITIES, values in [0, 1]."""
    p = dict(p or {})
    for name, prob in p.items():
        if name not in MODALITIES:
            raise ValueError(f"modality_dropout: unknown modality {name!r}; choose from {MODALITIES}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"modality_dropout[{name!r}] must lie in [0, 1], got {prob}")
    return p


def multitask_loss(
    model: nn.Module,
    batch: dict[str, Tensor],
    weights: dict[str, float],
    modality_dropout: dict[str, float] | None = None,
    generator: torch.Generator | None = None,
    itm_negatives: str = "hard",
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of the tasks with weight > 0, sharing one pass of the towers.

    ``modality_dropout`` drops the *context* modality per sample in mlm and vqa (image) and mim (text).
    Returns:
        the total loss and detached parts: each task's loss, and its metrics as ``<task>_<metric>``
        (a Trainer loss_fn returns ``{"loss": total, **parts}``).
    """
    unknown = sorted(set(weights) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r}; tasks are {TASKS}")
    if any(w < 0 for w in weights.values()):
        raise ValueError(f"task weights must be >= 0, got {weights}")
    active = [t for t in TASKS if weights.get(t, 0.0) > 0]
    if not active:
        raise ValueError(f"no task has a positive weight in {weights}")
    p = check_modality_dropout(modality_dropout)
    encoded = EncodedBatch(model, batch)
    runs = {
        "itc": lambda: itc_loss(model, batch, encoded),
        "itm": lambda: itm_loss(model, batch, encoded, generator, itm_negatives),
        "mlm": lambda: mlm_loss(model, batch, encoded, p, generator),
        "mim": lambda: mim_loss(model, batch, encoded, p, generator),
        "vqa": lambda: vqa_loss(model, batch, encoded, p, generator),
        "point": lambda: point_loss(model, batch, encoded, p, generator),
    }
    total, parts = None, {}
    for task in active:
        loss, metrics = runs[task]()
        total = weights[task] * loss if total is None else total + weights[task] * loss
        parts[task] = loss.detach()
        parts.update({f"{task}_{name}": value.detach() for name, value in metrics.items()})
    return total, parts
