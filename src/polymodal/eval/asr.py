"""Speech recognition metrics: word and character error rate over a corpus, with a transcript normaliser.

Rates are corpus-level, as in jiwer and the usual ASR reports: the edits (substitutions + deletions +
insertions) of every pair are summed and divided by the total number of reference units, so long
utterances weigh more than short ones. The alignment is a plain Levenshtein dynamic program, O(len(ref) *
len(hyp)) per pair in Python -- fine for the short transcripts of the spoken world and eval sets of a few
thousand utterances; install jiwer for hour-long transcripts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from polymodal.data.worlds.digits import DIGIT_NAMES

__all__ = ["EditCounts", "ErrorRate", "char_error_rate", "edit_counts", "error_rate", "normalize_transcript", "word_error_rate"]  # fmt: skip

_APOSTROPHES = re.compile(r"['\u2019]")
_NOT_WORD = re.compile(r"[^\w]|_")  # punctuation and symbols; \w keeps letters of any script and digits
_DIGIT = re.compile(r"[0-9]")
UNITS = ("word", "char")


def normalize_transcript(text: str) -> str:
    """Lowercase, digits spelled one by one as the spoken world says them ("42" -> "four two"),
    apostrophes dropped ("don't" -> "dont"), other punctuation turned into spaces, spaces collapsed."""
    text = _APOSTROPHES.sub("", text.lower())
    text = _DIGIT.sub(lambda m: f" {DIGIT_NAMES[int(m.group())]} ", text)
    return " ".join(_NOT_WORD.sub(" ", text).split())


@dataclass(frozen=True)
class EditCounts:
    """The edits of one minimal alignment of a hypothesis to its reference."""

    substitutions: int = 0
    deletions: int = 0  # reference units the hypothesis misses
    insertions: int = 0  # hypothesis units the reference lacks

    @property
    def errors(self) -> int:
        """Substitutions + deletions + insertions: the Levenshtein distance."""
        return self.substitutions + self.deletions + self.insertions

    def __add__(self, other: EditCounts) -> EditCounts:
        return EditCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
        )


@dataclass(frozen=True)
class ErrorRate:
    """A corpus-level error rate with the counts behind it."""

    rate: float  # edits.errors / reference_units (can exceed 1 with many insertions)
    edits: EditCounts  # summed over every pair
    reference_units: int  # words or characters in all references


def edit_counts(ref: Sequence[str], hyp: Sequence[str]) -> EditCounts:
    """Substitutions, deletions and insertions turning ``ref`` into ``hyp`` (minimal total).

    Among alignments of equal cost, a substitution is preferred to a deletion and a deletion to an
    insertion, so the counts are deterministic.
    """
    # row[j]: (cost, subs, dels, ins) aligning ref[:i] to hyp[:j]
    row = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i, r in enumerate(ref, start=1):
        new = [(i, 0, i, 0)]
        for j, h in enumerate(hyp, start=1):
            c, s, d, n = row[j - 1]
            diagonal = (c, s, d, n) if r == h else (c + 1, s + 1, d, n)
            c, s, d, n = row[j]
            delete = (c + 1, s, d + 1, n)
            c, s, d, n = new[j - 1]
            insert = (c + 1, s, d, n + 1)
            new.append(min(diagonal, delete, insert, key=lambda t: t[0]))
        row = new
    _, s, d, n = row[-1]
    return EditCounts(s, d, n)


def _units(text: str, unit: str, normalize: bool) -> list[str]:
    text = normalize_transcript(text) if normalize else text
    return text.split() if unit == "word" else list(text)


def _check_pairs(refs: Sequence[str], hyps: Sequence[str]) -> None:
    for name, texts in (("refs", refs), ("hyps", hyps)):
        if isinstance(texts, str):
            raise TypeError(f"{name} must be a list of transcripts, not one string; wrap it in a list")
        bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
        if bad:
            raise TypeError(f"{name} must hold strings, found {bad[0]}")
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses; pass one per reference")


def error_rate(
    refs: Sequence[str], hyps: Sequence[str], unit: str = "word", normalize: bool = True
) -> ErrorRate:
    """Corpus-level error rate of ``hyps`` against ``refs`` in words or characters.

    Args:
        refs: reference transcripts.
        hyps: one hypothesis per reference ("" when the model said nothing).
        unit: "word" (WER) or "char" (CER; spaces between words count as characters).
        normalize: apply :func:`normalize_transcript` to both sides first.

    Raises:
        ValueError: unequal lengths, an unknown unit, or references with no units at all (the rate
            would divide by zero).
    """
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")
    _check_pairs(refs, hyps)
    edits, total = EditCounts(), 0
    for ref, hyp in zip(refs, hyps, strict=True):
        ref_units = _units(ref, unit, normalize)
        edits += edit_counts(ref_units, _units(hyp, unit, normalize))
        total += len(ref_units)
    if total == 0:
        raise ValueError(f"the references hold no {unit}s (after normalisation); the error rate is undefined")
    return ErrorRate(edits.errors / total, edits, total)


def word_error_rate(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True) -> float:
    """Corpus WER: total word edits / total reference words."""
    return error_rate(refs, hyps, "word", normalize).rate


def char_error_rate(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True) -> float:
    """Corpus CER: total character edits / total reference characters (spaces included)."""
    return error_rate(refs, hyps, "char", normalize).rate
