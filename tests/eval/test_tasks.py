import json

import pytest

from polymodal.eval.tasks import DUAL_ENCODER_TASKS, run_task
from polymodal.eval.zeroshot import classifier_from_prompts


@pytest.mark.parametrize("task", list(DUAL_ENCODER_TASKS))
def test_task_result_shape(tiny_pipeline, task):
    result = run_task(tiny_pipeline, task, n=12)
    assert set(result) == {"model", "task", "n", "metrics"}
    assert result["model"] == "tiny-test" and result["task"] == task and result["n"] == 12
    json.dumps(result)  # JSON-ready
    numbers = {k: v for k, v in result["metrics"].items() if isinstance(v, float)}
    assert numbers and all(0.0 <= v <= 1.0 for k, v in numbers.items() if "rank" not in k)


def test_required_metric_names(tiny_pipeline):
    assert "accuracy" in run_task(tiny_pipeline, "digits-zeroshot", n=10)["metrics"]
    assert {"color_accuracy", "shape_accuracy"} <= set(
        run_task(tiny_pipeline, "shapes-zeroshot", n=10)["metrics"]
    )
    assert {"t2i_r1", "t2i_r10", "i2t_r1"} <= set(
        run_task(tiny_pipeline, "shapes-retrieval", n=10)["metrics"]
    )


def test_unknown_task(tiny_pipeline):
    with pytest.raises(KeyError, match="unknown eval task 'nope'"):
        run_task(tiny_pipeline, "nope")


def test_classifier_from_prompts_averages_per_class():
    import numpy as np

    table = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 1.0]}
    weights = classifier_from_prompts(lambda texts: np.array([table[t] for t in texts]), [["a", "b"], ["c"]])
    np.testing.assert_allclose(weights, np.full((2, 2), 2**-0.5), atol=1e-6)
