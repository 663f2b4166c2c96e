from functools import cache

import numpy as np
import pytest

from polymodal.eval.asr import (
    EditCounts,
    char_error_rate,
    edit_counts,
    error_rate,
    normalize_transcript,
    word_error_rate,
)


def test_identical_transcripts_have_no_errors():
    assert word_error_rate(["red circle seven"], ["red circle seven"]) == 0.0
    assert char_error_rate(["red circle seven"], ["red circle seven"]) == 0.0


def test_substitution_insertion_and_deletion_are_counted():
    ref = "red circle seven"
    cases = {
        "red square seven": EditCounts(substitutions=1),
        "red big circle seven": EditCounts(insertions=1),
        "red seven": EditCounts(deletions=1),
        "blue circle": EditCounts(substitutions=1, deletions=1),
    }
    for hyp, expected in cases.items():
        result = error_rate([ref], [hyp])
        assert result.edits == expected, hyp
        assert result.rate == pytest.approx(expected.errors / 3)
        assert result.reference_units == 3


def test_empty_hypothesis_deletes_every_reference_word():
    result = error_rate(["go left now"], [""])
    assert result.edits == EditCounts(deletions=3) and result.rate == 1.0


def test_insertions_can_push_the_rate_above_one():
    assert word_error_rate(["go"], ["go go go"]) == 2.0


def test_rates_are_corpus_level_not_a_mean_of_utterances():
    refs, hyps = ["a", "b c d e"], ["x", "b c d e"]
    assert word_error_rate(refs, hyps) == pytest.approx(1 / 5)  # a mean of per-utterance WERs would be 0.5


def test_an_empty_reference_inside_a_corpus_counts_insertions():
    assert word_error_rate(["", "stop now"], ["yes", "stop now"]) == pytest.approx(1 / 2)


def test_all_empty_references_are_an_error():
    with pytest.raises(ValueError, match="undefined"):
        word_error_rate(["", "  "], ["a", "b"])
    with pytest.raises(ValueError, match="undefined"):
        char_error_rate(["!!"], ["a"])  # nothing is left after normalisation


def test_char_error_rate_by_hand():
    assert char_error_rate(["kitten"], ["sitting"]) == pytest.approx(3 / 6)  # k->s, e->i, +g
    assert char_error_rate(["ab cd"], ["abcd"]) == pytest.approx(1 / 5)  # the space is a character
    assert error_rate(["abc"], ["xbc"], unit="char").edits == EditCounts(substitutions=1)


def test_normaliser_matches_the_spoken_world():
    assert normalize_transcript("  Red, CIRCLE!  7 ") == "red circle seven"
    assert normalize_transcript("42") == "four two"
    assert normalize_transcript("room 3b") == "room three b"
    assert normalize_transcript("Don't stop—go") == "dont stop go"
    assert normalize_transcript("left_right/up") == "left right up"
    assert normalize_transcript("") == ""


def test_normalisation_can_be_turned_off():
    assert word_error_rate(["Seven red."], ["7 red"]) == 0.0
    assert word_error_rate(["Seven red."], ["7 red"], normalize=False) == 1.0


def test_edit_counts_on_empty_sides():
    assert edit_counts(list("abc"), []) == EditCounts(deletions=3)
    assert edit_counts([], list("ab")) == EditCounts(insertions=2)
    assert edit_counts([], []) == EditCounts()


def test_edit_distance_matches_a_reference_recursion():
    rng = np.random.default_rng(0)

    def distance(a: str, b: str) -> int:
        @cache
        def d(i: int, j: int) -> int:
            if i == 0 or j == 0:
                return i + j
            return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

        return d(len(a), len(b))

    for _ in range(200):
        a = "".join(rng.choice(list("abc"), size=rng.integers(0, 8)))
        b = "".join(rng.choice(list("abc"), size=rng.integers(0, 8)))
        counts = edit_counts(list(a), list(b))
        assert counts.errors == distance(a, b)
        assert (
            len(a) - counts.deletions - counts.substitutions
            == len(b) - counts.insertions - counts.substitutions
        )


def test_bad_arguments_say_what_to_pass():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_error_rate(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="list of transcripts"):
        word_error_rate("red circle", "red circle")
    with pytest.raises(TypeError, match="strings"):
        word_error_rate(["a"], [None])
    with pytest.raises(ValueError, match="unknown unit"):
        error_rate(["a"], ["a"], unit="phone")
