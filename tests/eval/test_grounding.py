"""Box IoU, box parsing from generated text and grounding accuracy on hand-computed cases."""

import pytest

from polymodal.eval.grounding import box_iou, grounding_scores, parse_box


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 1, 1), (0, 0, 1, 1), 1.0),
        ((0, 0, 2, 2), (1, 1, 3, 3), 1 / 7),  # intersection 1, union 4 + 4 - 1
        ((0, 0, 1, 1), (0, 0, 0.5, 1), 0.5),
        ((0, 0, 1, 1), (1, 0, 2, 1), 0.0),  # touching edges
        ((0.1, 0.2, 0.3, 0.4), (0.5, 0.5, 0.9, 0.9), 0.0),
        ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),  # no area anywhere
    ],
)
def test_box_iou_known_values(a, b, expected):
    assert box_iou(a, b) == pytest.approx(expected)
    assert box_iou(b, a) == pytest.approx(expected)


def test_box_iou_rejects_inverted_boxes():
    with pytest.raises(ValueError, match="x0 <= x1"):
        box_iou((0.5, 0, 0.1, 1), (0, 0, 1, 1))
    with pytest.raises(ValueError):
        box_iou((0, 0, 1), (0, 0, 1, 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[0.1, 0.2, 0.3, 0.4]", (0.1, 0.2, 0.3, 0.4)),
        ("the box is [0.1,0.2 ,0.3,  0.4] and [0, 0, 1, 1]", (0.1, 0.2, 0.3, 0.4)),
        ("[0, .5, 1, 1.]", (0.0, 0.5, 1.0, 1.0)),
        ("[12, 30, 40, 64]", (12.0, 30.0, 40.0, 64.0)),  # not clipped to 0..1
        ("[0.3, 0.2, 0.1, 0.4]", None),  # x1 < x0: not reordered
        ("[0.1, 0.4, 0.3, 0.2]", None),  # y1 < y0
        ("[0.1, 0.2, 0.3]", None),
        ("[0.1, 0.2, 0.3, 0.4, 0.5]", None),
        ("0.1, 0.2, 0.3, 0.4", None),
        ("[a, b, c, d]", None),
        ("[0, 0, 1e999, 1]", None),
        ("", None),
    ],
)
def test_parse_box(text, expected):
    assert parse_box(text) == expected


def test_grounding_scores_with_an_unparsed_prediction():
    truth = [(0, 0, 1, 1), (0, 0, 2, 2), (0, 0, 1, 1), (0, 0, 1, 1)]
    preds = [(0, 0, 1, 1), (1, 1, 3, 3), (0, 0, 0.5, 1), None]
    out = grounding_scores(preds, truth)
    assert out["mean_iou"] == pytest.approx((1 + 1 / 7 + 0.5 + 0) / 4)
    assert out["acc_iou_0.5"] == pytest.approx(2 / 4)  # IoU exactly 0.5 counts
    assert out["parse_rate"] == pytest.approx(3 / 4)
    assert out["n"] == 4
    more = grounding_scores(preds, truth, thresholds=(0.1, 0.75))
    assert more["acc_iou_0.1"] == pytest.approx(3 / 4)
    assert more["acc_iou_0.75"] == pytest.approx(1 / 4)


def test_grounding_scores_parsed_from_text():
    texts = ["[0.0, 0.0, 0.5, 0.5]", "I think it is on the left"]
    out = grounding_scores([parse_box(t) for t in texts], [(0, 0, 0.5, 0.5), (0, 0, 0.5, 1)])
    assert out == {"mean_iou": 0.5, "acc_iou_0.5": 0.5, "parse_rate": 0.5, "n": 2}


def test_grounding_scores_bad_inputs():
    with pytest.raises(ValueError, match="true boxes"):
        grounding_scores([None], [])
    with pytest.raises(ValueError):
        grounding_scores([], [])
