"""Contrastive losses as plain functions over L2-normalised features.

``groups`` (optional, (N,) or (N, K) int) marks pairs that are positives of each other beyond the diagonal, e.g.
two images of the digit 3 captioned "the number three": CLIP's one-hot targets would push them apart.
With groups, InfoNCE uses the UniCL-style multi-positive target (uniform over a row's positives) and
SigLIP labels every same-group pair +1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def positive_mask(n: int, groups: Tensor | None, device: torch.device) -> Tensor:
    """(N, N) boolean matrix: True where pair (i, j) is a positive (always on the diagonal).

    ``groups`` is (N,) ids or (N, K) keys; with K columns a pair is positive when any column matches.
    """
    eye = torch.eye(n, dtype=torch.bool, device=device)
    if groups is None:
        return eye
    if groups.dim() == 1:
        groups = groups[:, None]
    if groups.dim() != 2 or groups.shape[0] != n:
        raise ValueError(f"groups must have shape ({n},) or ({n}, K), got {tuple(groups.shape)}")
    return eye | (groups[:, None, :] == groups[None, :, :]).any(dim=-1)


def _soft_cross_entropy(logits: Tensor, positives: Tensor) -> Tensor:
    """Cross-entropy against a target spread uniformly over each row's positives (-inf logits allowed)."""
    log_probs = F.log_softmax(logits, dim=1).masked_fill(~positives, 0.0)  # avoids 0 * -inf
    return -(log_probs.sum(dim=1) / positives.sum(dim=1)).mean()


def infonce_loss(
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor,
    groups: Tensor | None = None,
    negative_text_features: Tensor | None = None,
    negative_valid: Tensor | None = None,
) -> Tensor:
    """Symmetric InfoNCE (CLIP) over a batch of N matched pairs.

    Args:
        image_features, text_features: (N, D), L2-normalised.
        logit_scale: scalar temperature multiplier (already exponentiated).
        groups: optional (N,) ids; equal ids are positives of each other.
        negative_text_features: optional (N, D) hard-negative captions, one per image, added as extra
            columns of the image->text logits (they are never positives).
        negative_valid: optional (N,) bool; False drops that hard negative.
    Returns:
        the mean of the image->text and text->image losses.
    """
    if image_features.shape != text_features.shape:
        raise ValueError(
            f"image features {tuple(image_features.shape)} and text features {tuple(text_features.shape)} differ"
        )
    n = image_features.shape[0]
    positives = positive_mask(n, groups, image_features.device)
    logits = logit_scale * image_features @ text_features.t()  # (N_img, N_txt)
    loss_t2i = _soft_cross_entropy(logits.t(), positives.t())
    if negative_text_features is not None:
        neg = logit_scale * (image_features * negative_text_features).sum(dim=1, keepdim=True)  # (N, 1)
        if negative_valid is not None:
            neg = neg.masked_fill(~negative_valid.bool()[:, None], float("-inf"))
        logits = torch.cat([logits, neg], dim=1)
        positives = torch.cat([positives, torch.zeros_like(positives[:, :1])], dim=1)
    loss_i2t = _soft_cross_entropy(logits, positives)
    return (loss_i2t + loss_t2i) / 2


def siglip_loss(
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor,
    logit_bias: Tensor,
    groups: Tensor | None = None,
) -> Tensor:
    """SigLIP's pairwise sigmoid loss: -log sigmoid(z_ij (t x_i.y_j + b)), summed over j, mean over i."""
    n = image_features.shape[0]
    labels = positive_mask(n, groups, image_features.device).to(image_features.dtype) * 2 - 1  # +1 / -1
    logits = logit_scale * image_features @ text_features.t() + logit_bias
    return -F.logsigmoid(labels * logits).sum() / n
