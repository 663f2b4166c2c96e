"""VQA accuracy with the answer normalisation of the official VQAv2 evaluation (``vqaEval.py``).

Normalisation (``normalize_answer``) follows the official steps in their order: punctuation (removed next to
spaces or inside comma-grouped numbers, turned into a space elsewhere; periods stripped except between
digits), then lowercase words with number words turned into digits ("two" -> "2"), articles removed and
apostrophe-less contractions repaired ("dont" -> "don't"). Two deliberate differences: the official code's
period regex has a typo (``(?!<=\\d)``) that also strips the period of "2." -- here only a period between
two digits survives; and reference answers are always normalised (the official code skips this when all
ten human answers agree).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_DIGIT_OF = {"none": "0", **{w: str(i) for i, w in enumerate(_NUMBER_WORDS)}}
_ARTICLES = frozenset({"a", "an", "the"})
# Apostrophe-less forms that are unambiguous (not "well", "were", "ill", "its", "hell", "shell", ...).
_CONTRACTIONS = (
    "ain't", "aren't", "can't", "could've", "couldn't", "didn't", "doesn't", "don't", "hadn't", "hasn't",
    "haven't", "he's", "how's", "i'm", "i've", "isn't", "it'll", "let's", "ma'am", "mightn't", "might've",
    "mustn't", "must've", "needn't", "o'clock", "shan't", "she's", "should've", "shouldn't", "that's",
    "there's", "they'd", "they'll", "they're", "they've", "wasn't", "weren't", "what's", "where's",
    "who's", "won't", "would've", "wouldn't", "y'all", "you'd", "you'll", "you're", "you've",
)  # fmt: skip
_CONTRACTION_OF = {c.replace("'", ""): c for c in _CONTRACTIONS}
_PUNCT = tuple(';/[]"{}()=+\\_-><@`,?!')  # the official list of marks, in its order
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_IN_NUMBER = re.compile(r"(?<!\d)\.|\.(?!\d)")
FULL_CONSENSUS_ANSWERS = 10  # VQAv2 collects ten human answers per question


def _process_punctuation(text: str) -> str:
    has_grouped_number = _COMMA_IN_NUMBER.search(text) is not None
    for p in _PUNCT:
        # the official rule: drop a mark that touches a space (or any mark in "1,000"), else split on it
        if p + " " in text or " " + p in text or has_grouped_number:
            text = text.replace(p, "")
        else:
            text = text.replace(p, " ")
    return _PERIOD_NOT_IN_NUMBER.sub("", text)


def _process_words(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = _DIGIT_OF.get(word, word)
        if word in _ARTICLES:
            continue
        words.append(_CONTRACTION_OF.get(word, word))
    return " ".join(words)


def normalize_answer(answer: str) -> str:
    """The official VQAv2 normalisation: "Two." -> "2", "a Red circle!" -> "red circle", "dont" -> "don't"."""
    if not isinstance(answer, str):
        raise TypeError(f"answers must be strings, got {type(answer).__name__}: {answer!r}")
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return _process_words(_process_punctuation(text.lower()))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy of one prediction against the reference answers.

    With ten (or more) human answers this is the official consensus score: for each answer left out,
    ``min(#other answers equal to the prediction / 3, 1)``, averaged over the leave-one-out subsets.
    With fewer references (our worlds have exactly one exact answer) that formula would cap a correct
    answer below 1, so the score is exact match after normalisation: 1.0 if the prediction equals any
    reference, else 0.0.
    """
    if isinstance(answers, str):
        answers = [answers]
    if not answers:
        raise ValueError("vqa_accuracy needs at least one reference answer")
    pred = normalize_answer(prediction)
    refs = [normalize_answer(a) for a in answers]
    if len(refs) < FULL_CONSENSUS_ANSWERS:
        return float(pred in refs)
    total = 0.0
    for left_out in range(len(refs)):
        matches = sum(r == pred for i, r in enumerate(refs) if i != left_out)
        total += min(matches / 3.0, 1.0)
    return total / len(refs)


def vqa_scores(
    predictions: Sequence[str],
    answers_lists: Sequence[Sequence[str] | str],
    kinds: Sequence[str] | None = None,
) -> dict[str, float | int]:
    """Mean VQA accuracy, overall and per question kind.

    Args:
        predictions: one answer per question.
        answers_lists: per question, its reference answers (a single string is one reference).
        kinds: optional question kind per question ("count", "color", ...).

    Returns:
        ``{"vqa_accuracy", "n"}`` plus ``vqa_accuracy_<kind>`` and ``n_<kind>`` for each kind given.
    """
    if len(predictions) != len(answers_lists):
        raise ValueError(f"got {len(predictions)} predictions but {len(answers_lists)} answer lists")
    if kinds is not None and len(kinds) != len(predictions):
        raise ValueError(f"got {len(kinds)} kinds for {len(predictions)} predictions; pass one kind each")
    if not predictions:
        raise ValueError("no predictions to score")
    accs = [vqa_accuracy(p, a) for p, a in zip(predictions, answers_lists, strict=True)]
    out: dict[str, float | int] = {"vqa_accuracy": sum(accs) / len(accs), "n": len(accs)}
    if kinds is not None:
        for kind in sorted(set(kinds)):
            chosen = [acc for acc, k in zip(accs, kinds, strict=True) if k == kind]
            out[f"vqa_accuracy_{kind}"] = sum(chosen) / len(chosen)
            out[f"n_{kind}"] = len(chosen)
    return out
