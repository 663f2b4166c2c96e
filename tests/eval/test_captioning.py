"""Caption metrics against hand-computed BLEU values and the expected CIDEr ordering."""

import math

import pytest

from polymodal.eval.captioning import caption_scores, ptb_like_tokenize

REFS = [
    ["a red circle and a blue square", "two shapes: a red circle and a blue square"],
    ["a green star", "one shape: a green star"],
    ["a yellow cross and a white diamond", "two shapes"],
]


def test_tokenizer_lowercases_and_drops_punctuation_but_keeps_inner_hyphens():
    assert ptb_like_tokenize("Two shapes: a Red circle, and a blue-ish square.") == (
        "two shapes a red circle and a blue-ish square"
    )
    assert ptb_like_tokenize('  "it\'s" -- fine!  ') == "it's fine"


def test_exact_match_scores_one_on_bleu_and_rouge():
    preds = ["a red circle and a blue square", "a green star", "a yellow cross and a white diamond"]
    scores = caption_scores(preds, REFS)
    for n in range(1, 5):
        assert scores[f"bleu_{n}"] == pytest.approx(1.0, abs=1e-6)
    assert scores["rouge_l"] == pytest.approx(1.0)
    assert scores["n"] == 3


def test_bleu_brevity_penalty_and_bigram_precision_by_hand():
    # all 3 unigrams match, but the closest reference has 7 words: BP = exp(1 - 7/3)
    short = caption_scores(["a red circle"], [["a red circle and a blue square"]])
    assert short["bleu_1"] == pytest.approx(math.exp(1 - 7 / 3), rel=1e-6)
    # same length: p1 = 2/3 ("a", "blue"), p2 = 1/2 ("a blue"), BLEU-2 = sqrt(p1 * p2)
    swapped = caption_scores(["a blue circle"], [["a blue square"]])
    assert swapped["bleu_1"] == pytest.approx(2 / 3, rel=1e-6)
    assert swapped["bleu_2"] == pytest.approx(math.sqrt(1 / 3), rel=1e-6)


def test_case_and_punctuation_do_not_change_scores():
    plain = caption_scores(["a green star"], [["a green star"]])
    noisy = caption_scores(["A green STAR."], [["a green star!"]])
    assert noisy["bleu_3"] == pytest.approx(plain["bleu_3"])


def test_cider_ranks_good_captions_above_wrong_ones():
    good = caption_scores(["a red circle and a blue square", "a green star", "a yellow cross"], REFS)
    bad = caption_scores(["a green star", "a yellow cross", "a red circle"], REFS)
    assert good["cider"] > 1.0 > bad["cider"]
    assert good["bleu_4"] > bad["bleu_4"]


def test_cider_of_a_single_image_is_zero_because_idf_needs_a_corpus():
    assert caption_scores(["a red circle"], [["a red circle"]])["cider"] == 0.0


def test_java_metrics_are_reported_as_skipped():
    skipped = caption_scores(["a red circle"], [["a red circle"]])["skipped"]
    assert set(skipped) == {"meteor", "spice"}
    assert all("Java" in reason for reason in skipped.values())


@pytest.mark.parametrize(
    ("preds", "refs", "error"),
    [
        (["a", "b"], [["a"]], ValueError),
        (["a"], [[]], ValueError),
        (["a"], [["..."]], ValueError),
        ([], [], ValueError),
        ("a red circle", [["a red circle"]], TypeError),
        ([3], [["a"]], TypeError),
    ],
)
def test_bad_inputs_raise_clear_errors(preds, refs, error):
    with pytest.raises(error):
        caption_scores(preds, refs)
