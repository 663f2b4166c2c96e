"""Batch assembly: stack image tensors, pad token id sequences and build their padding masks."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def stack_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack (3, S, S) tensors into (B, 3, S, S); shapes must agree."""
    if not images:
        raise ValueError("stack_images needs at least one image tensor")
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise ValueError(f"images have different shapes {sorted(shapes)}; resize them to one size first")
    return torch.stack(list(images))


def truncate_ids(ids: Sequence[int], max_length: int, keep_last: bool) -> list[int]:
    """``ids`` cut to ``max_length``; with ``keep_last`` the final token (an end token) survives the cut."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    ids = list(ids)
    if len(ids) <= max_length:
        return ids
    if keep_last:
        return ids[: max_length - 1] + ids[-1:]
    return ids[:max_length]


def pad_token_ids(
    sequences: Sequence[Sequence[int]], pad_id: int, max_length: int | None = None, left: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad sequences to the longest one (at most ``max_length``; longer ones must be cut first).
    ``left=True`` pads on the left instead, as batched generation wants: every row's last token then sits
    in the last column, so new tokens line up.

    Returns:
        input_ids: LongTensor (B, T); attention_mask: BoolTensor (B, T), True on real tokens.
    """
    if not sequences:
        raise ValueError("pad_token_ids needs at least one sequence")
    longest = max(len(s) for s in sequences)
    if max_length is not None and longest > max_length:
        raise ValueError(
            f"a sequence has {longest} tokens, more than max_length={max_length}; truncate first"
        )
    length = max(longest, 1)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        cols = slice(length - len(seq), length) if left else slice(0, len(seq))
        input_ids[row, cols] = torch.as_tensor(list(seq), dtype=torch.long)
        attention_mask[row, cols] = True
    return input_ids, attention_mask
