"""VQA answer normalisation and accuracy, with the official consensus formula computed by hand."""

import pytest

from polymodal.eval.vqa import normalize_answer, vqa_accuracy, vqa_scores


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Two.", "2"),
        ("  zero\n", "0"),
        ("none", "0"),
        ("a Red circle!", "red circle"),
        ("The blue one", "blue 1"),
        ("2.5", "2.5"),
        ("1,000", "1000"),
        ("yes.", "yes"),
        ("left-side", "left side"),
        ("left - side", "left side"),
        ("dont know", "don't know"),
        ("isnt it", "isn't it"),
        ("well", "well"),
        ("what?", "what"),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_normalize_rejects_non_strings():
    with pytest.raises(TypeError):
        normalize_answer(2)


def test_single_reference_is_exact_match_after_normalisation():
    assert vqa_accuracy("Two.", ["two"]) == 1.0
    assert vqa_accuracy("a red", "red") == 1.0
    assert vqa_accuracy("three", ["two"]) == 0.0
    assert vqa_accuracy("red circle", ["red"]) == 0.0


@pytest.mark.parametrize(
    ("matching", "expected"),
    [
        (0, 0.0),
        (1, 0.9 * (1 / 3)),  # 9 subsets keep the match: 1/3 each; the subset without it scores 0
        (2, (2 * (1 / 3) + 8 * (2 / 3)) / 10),  # = 0.6
        (3, (3 * (2 / 3) + 7 * 1.0) / 10),  # = 0.9
        (4, 1.0),
    ],
)
def test_ten_answers_use_the_leave_one_out_consensus(matching, expected):
    answers = ["two"] * matching + ["3"] * (10 - matching)
    assert vqa_accuracy("2", answers) == pytest.approx(expected)


def test_vqa_scores_overall_and_per_kind():
    preds = ["2", "red", "Yes", "no", "circle"]
    answers = [["two"], "blue", ["yes"], ["no"], ["square"]]
    kinds = ["count", "color", "exists", "exists", "shape"]
    out = vqa_scores(preds, answers, kinds)
    assert out["vqa_accuracy"] == pytest.approx(3 / 5)
    assert out["vqa_accuracy_count"] == 1.0
    assert out["vqa_accuracy_color"] == 0.0
    assert out["vqa_accuracy_exists"] == 1.0
    assert out["n_exists"] == 2
    assert out["n"] == 5
    assert "vqa_accuracy_count" not in vqa_scores(preds, answers)


def test_vqa_bad_inputs():
    with pytest.raises(ValueError, match="predictions"):
        vqa_scores(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="kind"):
        vqa_scores(["a"], [["a"]], kinds=["x", "y"])
    with pytest.raises(ValueError):
        vqa_scores([], [])
    with pytest.raises(ValueError):
        vqa_accuracy("a", [])
