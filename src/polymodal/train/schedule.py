"""Learning-rate schedule: linear warmup, then cosine decay to ``lr * min_lr_ratio``.

The schedule is a :class:`~torch.optim.lr_scheduler.LambdaLR` whose multiplier is a plain closure, so
``scheduler.state_dict()`` holds only numbers (``last_epoch``, base LRs) and checkpoints load with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine_factor(warmup_steps: int, total_steps: int, min_lr_ratio: float) -> Callable[[int], float]:
    """Return ``f(step) -> lr multiplier``: 0 -> 1 linearly over ``warmup_steps``, then cosine to ``min_lr_ratio``.

    ``step`` counts optimizer steps already taken, so the first step uses ``f(0)``; warmup starts at
    ``1 / warmup_steps`` rather than 0 so that no step is wasted at a zero learning rate.
    """
    if warmup_steps < 0 or total_steps <= 0:
        raise ValueError(f"need warmup_steps >= 0 and total_steps > 0, got {warmup_steps}, {total_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        decay_steps = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return min_lr_ratio + (1.0 - min_lr_ratio) * cosine

    return factor


def build_scheduler(
    optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float
) -> LambdaLR:
    """A LambdaLR applying :func:`warmup_cosine_factor` to every param group of ``optimizer``."""
    return LambdaLR(optimizer, warmup_cosine_factor(warmup_steps, total_steps, min_lr_ratio))
