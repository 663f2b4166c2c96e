"""Caption metrics: BLEU-1..4, CIDEr and ROUGE-L from pycocoevalcap's own scorers.

The COCO caption evaluation tokenises with Stanford's PTBTokenizer, which needs Java. We tokenise in
Python instead, the way PTBTokenizer (``-lowerCase``, then dropping punctuation tokens) treats the plain
captions our worlds and models produce: lowercase, punctuation replaced by spaces, split on whitespace.
It differs from PTB only on clitics ("don't" stays one token here, PTB gives "do n't") and similar cases
that simple captions do not contain. METEOR and SPICE also need Java, so they are reported as skipped.
"""

from __future__ import annotations

import re
from typing import Any

# Apostrophes and hyphens inside a word stay (PTB keeps "two-headed" whole); all other punctuation goes.
_PUNCTUATION = re.compile(r"[^\w\s'-]|(?<!\w)['-]|['-](?!\w)")
JAVA_METRICS = ("meteor", "spice")


def ptb_like_tokenize(text: str) -> str:
    """Lowercase, strip punctuation and rejoin with single spaces: "A red circle." -> "a red circle"."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def _check_inputs(predictions: list[str], references: list[list[str]]) -> None:
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions must be a list of strings and references a list of lists of strings")
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(references)} reference lists; pass one list of "
            "references per prediction"
        )
    if not predictions:
        raise ValueError("no predictions to score; pass at least one (prediction, references) pair")
    for i, (pred, refs) in enumerate(zip(predictions, references, strict=True)):
        if not isinstance(pred, str):
            raise TypeError(f"prediction {i} is {type(pred).__name__}, expected str")
        if isinstance(refs, str) or not refs:
            raise ValueError(f"references[{i}] must be a non-empty list of strings, got {refs!r}")
        if any(not isinstance(r, str) or not ptb_like_tokenize(r) for r in refs):
            raise ValueError(f"references[{i}] holds an empty or non-string reference: {refs!r}")


def _load_scorers():
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError as err:
        raise ImportError(
            "caption metrics need the 'pycocoevalcap' package: pip install pycocoevalcap"
        ) from err
    return Bleu, Cider, Rouge


def caption_scores(predictions: list[str], references: list[list[str]]) -> dict[str, Any]:
    """Corpus-level BLEU-1..4, CIDEr(-D) and ROUGE-L of generated captions.

    Args:
        predictions: one generated caption per image.
        references: for each image, one or more true captions.

    Returns:
        ``{"bleu_1".."bleu_4", "cider", "rouge_l", "n", "skipped"}``. CIDEr weighs n-grams by their
        rarity across the images scored, so it needs a corpus: with a single image every idf is 0 and
        CIDEr is 0. ``skipped`` names the metrics not computed (METEOR, SPICE: they need Java).
    """
    _check_inputs(predictions, references)
    bleu, cider, rouge = _load_scorers()
    res = {i: [ptb_like_tokenize(p)] for i, p in enumerate(predictions)}
    gts = {i: [ptb_like_tokenize(r) for r in refs] for i, refs in enumerate(references)}
    bleu_values, _ = bleu(4).compute_score(gts, res, verbose=0)
    cider_value, _ = cider().compute_score(gts, res)
    rouge_value, _ = rouge().compute_score(gts, res)
    scores: dict[str, Any] = {f"bleu_{n}": float(v) for n, v in enumerate(bleu_values, start=1)}
    scores["cider"] = float(cider_value)
    scores["rouge_l"] = float(rouge_value)
    scores["n"] = len(predictions)
    scores["skipped"] = {
        name: "needs Java (pycocoevalcap runs it as a Java subprocess)" for name in JAVA_METRICS
    }
    return scores
