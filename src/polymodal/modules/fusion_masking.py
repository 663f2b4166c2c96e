"""Sampling for the fusion encoder's pretraining tasks: ITM hard negatives, MLM and MIM masks.

All take an optional ``torch.Generator`` so a test (or a resumed run) can reproduce the draws.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE_INDEX = -100  # cross-entropy label of positions that are not predicted


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    made_on = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=made_on).to(device)


def _sample_rows(weights: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """One column index per row drawn ∝ ``weights`` (B, B) (>= 0), and whether the row had any weight."""
    valid = weights.sum(dim=1) > 0
    safe = torch.where(valid[:, None], weights, torch.ones_like(weights))  # multinomial rejects zero rows
    made_on = generator.device if generator is not None else weights.device
    picks = torch.multinomial(safe.to(made_on), 1, generator=generator).squeeze(1).to(weights.device)
    return picks, valid


def mine_hard_negatives(
    similarity: Tensor, positives: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """ALBEF's in-batch hard negatives: for each image a text, for each text an image, drawn with
    probability ∝ softmax(similarity) over the batch with the positives excluded.

    Args:
        similarity: (B, B) image-to-text similarity logits (row = image, column = text); no gradient needed.
        positives: (B, B) bool, True where the pair matches (at least the diagonal).
        generator: optional torch generator.
    Returns:
        negative text per image (B,), negative image per text (B,), and (B,) bools saying whether each
        row had any non-positive to draw (a row without one must be skipped; its index is meaningless).
    """
    if similarity.dim() != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be a square (batch, batch) matrix, got {tuple(similarity.shape)}")
    if positives.shape != similarity.shape:
        raise ValueError(
            f"positives {tuple(positives.shape)} must match similarity {tuple(similarity.shape)}"
        )
    similarity = similarity.detach().float()
    # a row whose every entry is a positive softmaxes to NaN; it becomes all-zero and is reported invalid
    weights_i2t = similarity.masked_fill(positives, float("-inf")).softmax(dim=1).nan_to_num(0.0)
    weights_t2i = similarity.t().masked_fill(positives.t(), float("-inf")).softmax(dim=1).nan_to_num(0.0)
    neg_text, text_valid = _sample_rows(weights_i2t, generator)
    neg_image, image_valid = _sample_rows(weights_t2i, generator)
    return neg_text, neg_image, text_valid, image_valid


def mlm_mask(
    input_ids: Tensor,
    attention_mask: Tensor | None,
    mask_token_id: int,
    vocab_size: int,
    special_ids: list[int],
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT masking: pick ``probability`` of the real, non-special tokens (at least one per text that has
    any); of those, 80% become ``mask_token_id``, 10% a random non-special id, 10% stay.

    Returns:
        the corrupted ids (B, T) and labels (B, T): the original id where picked, IGNORE_INDEX elsewhere.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, tokens), got {tuple(input_ids.shape)}")
    device = input_ids.device
    special = torch.tensor(sorted(set(special_ids)), dtype=input_ids.dtype, device=device)
    eligible = ~torch.isin(input_ids, special)
    if attention_mask is not None:
        eligible &= attention_mask.bool()
    scores = _uniform(tuple(input_ids.shape), generator, device).masked_fill(~eligible, 2.0)
    picked = (scores < probability) & eligible
    # a short caption would often get no mask at all: force its best-scoring eligible token
    first = torch.nn.functional.one_hot(scores.argmin(dim=1), input_ids.shape[1]).bool()
    picked |= first & eligible & ~picked.any(dim=1, keepdim=True)
    labels = input_ids.masked_fill(~picked, IGNORE_INDEX)
    action = _uniform(tuple(input_ids.shape), generator, device)
    allowed = torch.arange(vocab_size, device=device)
    allowed = allowed[~torch.isin(allowed, special)]
    if not len(allowed):
        raise ValueError(f"no ordinary token ids in a vocabulary of {vocab_size} with specials {special_ids}")
    random_ids = allowed[(_uniform(tuple(input_ids.shape), generator, device) * len(allowed)).long()]
    corrupted = torch.where(picked & (action < 0.8), torch.full_like(input_ids, mask_token_id), input_ids)
    corrupted = torch.where(
        picked & (action >= 0.8) & (action < 0.9), random_ids.to(input_ids.dtype), corrupted
    )
    return corrupted, labels


def mim_mask(
    batch: int, tokens: int, ratio: float, generator: torch.Generator | None = None, device=None
) -> Tensor:
    """(batch, tokens) bool with exactly ``max(1, round(ratio * tokens))`` True per row, at random places."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"MIM ratio must lie in (0, 1), got {ratio}")
    count = max(1, round(ratio * tokens))
    ranks = _uniform((batch, tokens), generator, device or torch.device("cpu")).argsort(dim=1).argsort(dim=1)
    return ranks < count
