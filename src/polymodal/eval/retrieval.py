"""Retrieval metrics: recall@k from a similarity matrix, and both directions of image-text retrieval.

Ranking convention (used everywhere here): gallery items are ordered by descending score, and ties are
broken by the lower gallery index first, as a stable sort of ``-score`` would. A query's rank is the
0-based position of its best-placed positive in that order; it counts as a hit at k when rank < k.

Ranks are found by counting (how many items beat the best positive), never by sorting whole rows, so a
10k x 10k evaluation needs O(chunk x G) memory and no argsort.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

DEFAULT_KS = (1, 5, 10)


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    return tuple(int(k) for k in ks)


def best_positive_ranks(similarity: np.ndarray, positive_mask: np.ndarray) -> np.ndarray:
    """0-based rank of each row's best-placed positive under the stable descending order.

    Args:
        similarity: (Q, G) scores, finite.
        positive_mask: (Q, G) bool, at least one True per row.

    Returns:
        (Q,) int64 ranks.
    """
    masked = np.where(positive_mask, similarity, -np.inf)
    best_score = masked.max(axis=1, keepdims=True)  # (Q, 1)
    # the best-placed positive is the lowest-index positive holding the best score
    best_index = np.argmax(positive_mask & (similarity == best_score), axis=1)[:, None]  # (Q, 1)
    columns = np.arange(similarity.shape[1])[None, :]  # (1, G)
    ahead = (similarity > best_score) | ((similarity == best_score) & (columns < best_index))
    return ahead.sum(axis=1).astype(np.int64)


def _recall_from_ranks(ranks: np.ndarray, ks: Sequence[int], prefix: str = "") -> dict[str, float]:
    return {f"{prefix}r{k}": float(np.mean(ranks < k)) for k in ks}


def _positive_mask(positives: list[set[int]] | np.ndarray, rows: slice, num_items: int) -> np.ndarray:
    """Boolean (rows, G) mask for a slice of queries; validates indices and empty positive sets."""
    if isinstance(positives, np.ndarray):
        chosen = positives[rows]
        mask = np.zeros((len(chosen), num_items), dtype=bool)
        mask[np.arange(len(chosen)), chosen] = True
        return mask
    chosen_sets = positives[rows]
    mask = np.zeros((len(chosen_sets), num_items), dtype=bool)
    for r, pos in enumerate(chosen_sets):
        idx = np.fromiter(pos, dtype=np.int64)
        query = rows.start + r
        if idx.size == 0:
            raise ValueError(f"query {query} has no positives; every query needs at least one")
        if idx.min() < 0 or idx.max() >= num_items:
            raise ValueError(f"query {query} has positive indices outside [0, {num_items}): {sorted(pos)}")
        mask[r, idx] = True
    return mask


def _validate_positives(positives: list[set[int]] | np.ndarray, num_queries: int, num_items: int):
    if isinstance(positives, np.ndarray):
        if positives.shape != (num_queries,) or not np.issubdtype(positives.dtype, np.integer):
            raise ValueError(
                f"positives as an array must be integer with shape ({num_queries},), "
                f"got {positives.dtype} {positives.shape}"
            )
        if num_queries and (positives.min() < 0 or positives.max() >= num_items):
            raise ValueError(f"positive indices must lie in [0, {num_items})")
        return positives
    positives = [set(p) for p in positives]
    if len(positives) != num_queries:
        raise ValueError(f"got {len(positives)} positive sets for {num_queries} queries; pass one per query")
    return positives


def recall_at_k(
    similarity: np.ndarray,
    positives: list[set[int]] | np.ndarray,
    ks: Iterable[int] = DEFAULT_KS,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Fraction of queries with at least one positive among their top-k gallery items.

    Args:
        similarity: (Q, G) scores; higher is more similar. Ties are ordered by lower gallery index.
        positives: one set of gallery indices per query, or an int array (Q,) with one positive each.
        ks: cut-offs; k larger than G counts every query as a hit.
        chunk_size: queries processed at once (bounds memory to chunk_size x G).

    Returns:
        ``{"r1": ..., "r5": ..., "r10": ...}`` — one key ``r{k}`` per cut-off.
    """
    ks = _check_ks(ks)
    sim = np.asarray(similarity)
    if sim.ndim != 2 or sim.shape[0] == 0 or sim.shape[1] == 0:
        raise ValueError(f"similarity must be a non-empty (Q, G) matrix, got shape {sim.shape}")
    if not np.isfinite(sim).all():
        raise ValueError("similarity contains NaN or inf; check the embeddings that produced it")
    positives = _validate_positives(positives, *sim.shape)
    ranks = []
    for start in range(0, sim.shape[0], chunk_size):
        rows = slice(start, min(start + chunk_size, sim.shape[0]))
        ranks.append(best_positive_ranks(sim[rows], _positive_mask(positives, rows, sim.shape[1])))
    return _recall_from_ranks(np.concatenate(ranks), ks)


def _l2_normalize(x: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what} has all-zero rows, which have no direction; check the encoder output")
    return x / norms


def _as_embeddings(x: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty (N, D) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or inf")
    return arr


def _text_to_image_ranks(text: np.ndarray, image: np.ndarray, t2i: np.ndarray, chunk: int) -> np.ndarray:
    ranks = []
    for start in range(0, len(text), chunk):
        sim = text[start : start + chunk] @ image.T  # (c, Ni)
        mask = np.zeros(sim.shape, dtype=bool)
        mask[np.arange(len(sim)), t2i[start : start + chunk]] = True
        ranks.append(best_positive_ranks(sim, mask))
    return np.concatenate(ranks)


def _image_to_text_ranks(image: np.ndarray, text: np.ndarray, t2i: np.ndarray, chunk: int) -> np.ndarray:
    captioned = np.unique(t2i)  # images without any text cannot be image->text queries
    ranks = []
    for start in range(0, len(captioned), chunk):
        ids = captioned[start : start + chunk]
        sim = image[ids] @ text.T  # (c, Nt)
        mask = t2i[None, :] == ids[:, None]  # (c, Nt): all texts of each image are positives
        ranks.append(best_positive_ranks(sim, mask))
    return np.concatenate(ranks)


def retrieval_metrics(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    text_to_image: np.ndarray,
    ks: Iterable[int] = DEFAULT_KS,
    chunk_size: int = 1024,
    normalize: bool = True,
) -> dict[str, float]:
    """Text->image and image->text recall@k for paired embeddings.

    Args:
        image_emb: (Ni, D) image embeddings (the gallery for text->image).
        text_emb: (Nt, D) text embeddings; several texts may describe one image.
        text_to_image: (Nt,) int, the image index each text describes.
        ks: recall cut-offs.
        chunk_size: queries scored at once (memory is chunk_size x gallery size).
        normalize: L2-normalise both sides first so scores are cosine similarities.

    Returns:
        ``t2i_r{k}`` and ``i2t_r{k}`` for each k, plus ``t2i_median_rank`` / ``i2t_median_rank`` (1-based)
        and the query counts. Images with no text are gallery distractors for text->image and are not
        image->text queries.
    """
    ks = _check_ks(ks)
    image = _as_embeddings(image_emb, "image_emb")
    text = _as_embeddings(text_emb, "text_emb")
    if image.shape[1] != text.shape[1]:
        raise ValueError(f"image_emb has dim {image.shape[1]} but text_emb has dim {text.shape[1]}")
    t2i = np.asarray(text_to_image)
    if t2i.shape != (len(text),) or not np.issubdtype(t2i.dtype, np.integer):
        raise ValueError(
            f"text_to_image must be an int array of shape ({len(text)},), got {t2i.dtype} {t2i.shape}"
        )
    if t2i.min() < 0 or t2i.max() >= len(image):
        raise ValueError(f"text_to_image values must index images in [0, {len(image)})")
    if normalize:
        image, text = _l2_normalize(image, "image_emb"), _l2_normalize(text, "text_emb")
    t2i_ranks = _text_to_image_ranks(text, image, t2i, chunk_size)
    i2t_ranks = _image_to_text_ranks(image, text, t2i, chunk_size)
    return {
        **_recall_from_ranks(t2i_ranks, ks, "t2i_"),
        **_recall_from_ranks(i2t_ranks, ks, "i2t_"),
        "t2i_median_rank": float(np.median(t2i_ranks) + 1),
        "i2t_median_rank": float(np.median(i2t_ranks) + 1),
        "num_text_queries": int(len(t2i_ranks)),
        "num_image_queries": int(len(i2t_ranks)),
    }
