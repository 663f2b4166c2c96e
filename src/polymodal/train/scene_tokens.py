"""Scene tokens: a shapes scene graph written as the grid of LM-space tokens its image becomes.

Training with privileged information (Vapnik & Vashist, 2009): the generator knows each scene's graph, so
the ``lm`` stage can read every image as its graph instead (``scene_tokens``). Each cell of the adapter's
grid gets the LM's embeddings of the words naming the objects over it (size, colour, shape), weighted by how
much of the cell the object's box covers (relative to the object's best-covered cell), plus a fixed 2D
sine-cosine position. Every question then has its answer in the context, so the LM learns to look objects
up by name, count them, compare their positions and write their boxes at text speed, which it never learns
from text alone (without the scene those answers are guesses). Later stages can regress the adapter's tokens
on the same targets (``scene_distill``), so that an image arrives in the form the LM learnt to read.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.config import ConfigError
from polymodal.data.worlds.shapes_scene import Scene


def _overlap(box: tuple[float, float, float, float], x0: float, y0: float, side: int) -> float:
    """Fraction of the cell with top-left corner (x0, y0) and size 1 / side covered by ``box``."""
    width = min(box[2], x0 + 1 / side) - max(box[0], x0)
    height = min(box[3], y0 + 1 / side) - max(box[1], y0)
    return max(width, 0.0) * max(height, 0.0) * side * side


def cell_words(scene: Scene, side: int) -> list[list[tuple[str, float]]]:
    """Per cell of a ``side`` x ``side`` grid (row-major), the (word, weight) pairs of the objects over it."""
    cells: list[list[tuple[str, float]]] = [[] for _ in range(side * side)]
    for obj in scene.objects:
        cover = [_overlap(obj.bbox, (k % side) / side, (k // side) / side, side) for k in range(side * side)]
        peak = max(cover)
        if peak <= 0:
            continue
        for k, c in enumerate(cover):
            if c > 0:
                cells[k] += [(word, c / peak) for word in (obj.size, obj.color, obj.shape)]
    return cells


def scene_token_ids(scenes: list[Scene], side: int, tokenizer) -> tuple[Tensor, Tensor]:
    """Token ids (B, side * side, K) and weights (B, side * side, K) of :func:`cell_words`, a word's pieces
    sharing its weight; zero weights pad every cell to the longest one's K."""
    pieces: dict[str, list[int]] = {}
    rows = []
    for scene in scenes:
        cells = []
        for words in cell_words(scene, side):
            cell = []
            for word, weight in words:
                ids = pieces.setdefault(word, tokenizer.tokenizer.encode(word, add_special_tokens=False).ids)
                cell += [(i, weight / len(ids)) for i in ids]
            cells.append(cell)
        rows.append(cells)
    k = max(1, max(len(cell) for cells in rows for cell in cells))
    ids = torch.zeros(len(scenes), side * side, k, dtype=torch.long)
    weights = torch.zeros(len(scenes), side * side, k)
    for b, cells in enumerate(rows):
        for n, cell in enumerate(cells):
            for j, (i, w) in enumerate(cell):
                ids[b, n, j], weights[b, n, j] = i, w
    return ids, weights


def grid_side(model) -> int:
    """The side of the assistant's square token grid; scene tokens need one visual token per encoder cell."""
    tokens = model.tokens_per_image
    side = math.isqrt(tokens)
    if side * side != tokens or tokens != model.source_tokens:
        raise ConfigError(
            f"scene tokens need an adapter that keeps the encoder's square grid (linear or mlp); this one turns "
            f"{model.source_tokens} encoder tokens into {tokens}"
        )
    return side


# The words' weight against the positions. At 1 an object's cells are no larger than the ~60 empty ones
# (position only), and an LM trained on these tokens (600 VQA steps, answers given the true scene) answered
# colour and shape questions at chance (0.19 / 0.13); at 4 it answered them at 0.74 / 0.70 (8: 0.70 / 0.53).
# (In the mixed lm stage of the recipe, where captions teach reading every object, 1 and 4 were close.)
WORD_SCALE = 4.0


def scene_embeddings(token_embed: nn.Embedding, ids: Tensor, weights: Tensor) -> Tensor:
    """(B, N, K) ids and weights -> (B, N, width): weighted word embeddings (times :data:`WORD_SCALE`) plus
    a 2D grid position scaled to the embeddings' spread."""
    from polymodal.models.assistant import grid_positions

    words = (token_embed(ids) * weights[..., None].to(token_embed.weight.dtype)).sum(dim=2)  # (B, N, width)
    scale = token_embed.weight.detach().std()
    positions = grid_positions(ids.shape[1], words.shape[-1]).to(words.device, words.dtype)
    return WORD_SCALE * words + scale * positions


def _image_rows(input_ids: Tensor, image_id: int, scene_ids: Tensor) -> Tensor:
    """The image positions (B, T), after checking they hold one grid per conversation and per scene."""
    is_image = input_ids == image_id
    scenes, cells = scene_ids.shape[:2]
    if scenes != input_ids.shape[0] or int(is_image.sum()) != scenes * cells:
        raise ValueError(
            f"scene tokens need one image of {cells} positions per conversation: got {scenes} scenes and "
            f"{int(is_image.sum())} image positions in {input_ids.shape[0]} conversations"
        )
    return is_image


def scene_lm_loss(model, batch: dict[str, Tensor], per_sample: bool = False) -> dict[str, Tensor]:
    """``lm`` stage with ``scene_tokens``: the LM reads each image's scene tokens; loss on the text tokens."""
    from polymodal.models.assistant import answer_loss

    ids, scene_ids = batch["input_ids"], batch["scene_ids"]
    is_image = _image_rows(ids, model.config.image_token_id, scene_ids)
    scene = scene_embeddings(model.lm.token_embed, scene_ids, batch["scene_weights"])
    embeds = model.lm.token_embed(ids).masked_scatter(is_image[..., None], scene.reshape(-1, scene.shape[-1]))
    logits = model.lm(inputs_embeds=embeds, attention_mask=batch["attention_mask"])
    loss, accuracy = answer_loss(logits, batch["labels"], per_sample=per_sample)
    return {"loss": loss, "token_accuracy": accuracy}


def scene_distill_loss(
    model, batch: dict[str, Tensor], weight: float, per_sample: bool = False
) -> dict[str, Tensor]:
    """Answer loss plus ``weight`` x the adapter's squared error to the scene tokens, relative to their
    mean square (so 1.0 means "no better than zeros")."""
    from polymodal.models.assistant import answer_loss

    ids, scene_ids = batch["input_ids"], batch["scene_ids"]
    is_image = _image_rows(ids, model.config.image_token_id, scene_ids)
    embeds, memory = model.condition(ids, batch["images"])
    visual = embeds[is_image].view(scene_ids.shape[0], scene_ids.shape[1], -1)  # (B, N, width), row-major
    with torch.no_grad():
        target = scene_embeddings(model.lm.token_embed, scene_ids, batch["scene_weights"]).float()
    distill = F.mse_loss(visual.float(), target) / target.pow(2).mean()
    logits = model.lm(
        inputs_embeds=embeds, attention_mask=batch["attention_mask"], block_hook=model.block_hook(memory)
    )
    loss, accuracy = answer_loss(logits, batch["labels"], per_sample=per_sample)
    return {
        "loss": loss + weight * distill,
        "answer_loss": loss.detach(),
        "token_accuracy": accuracy,
        "distill": distill.detach(),
    }
