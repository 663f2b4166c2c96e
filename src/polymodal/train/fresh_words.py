"""Fresh embeddings for chosen words, before a stage that has to tell them apart.

Text-only or contrastive pre-training can leave words the images disambiguate almost equal: a language
model trained on scene texts alone sees "above" and "below" in the same places (cosine 0.96 after
tiny-assistant's lm stage), a bag-of-words text tower sees "left" and "right" alike. A nearly shared
embedding gives the gradient little to separate them, so a fresh random row per word is restarted instead.
"""

from __future__ import annotations

from polymodal.config import ConfigError


def restart_word_embeddings(table, tokenizer, words: list[str], generator=None) -> None:
    """Give each word (one token each) of ``table`` (an embedding weight, rows = token ids) a fresh random
    row of the table's mean row norm (``generator``: a ``torch.Generator``; default, torch's global one)."""
    import torch

    specials = {tokenizer.bos_id, tokenizer.eos_id}
    with torch.no_grad():
        norm = table.norm(dim=1).mean()
        for word in words:
            ids = [i for i in tokenizer.encode(word) if i not in specials]
            if len(ids) != 1:
                raise ConfigError(f"fresh_words: {word!r} is {len(ids)} tokens; only one-token words restart")
            row = torch.randn(table.shape[1], generator=generator)
            table[ids[0]] = (row / row.norm() * norm).to(table.dtype)
