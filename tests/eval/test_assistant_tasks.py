import pytest

from polymodal.eval.tasks import run_task

TASK_KEYS = {
    "shapes-caption": {"bleu_4", "cider", "bleu_4_detailed", "cider_detailed"},
    "shapes-vqa": {"vqa_accuracy", "vqa_accuracy_heldout"},
    "shapes-grounding": {"mean_iou", "acc_iou_0.5", "parse_rate"},
    "shapes-hallucination": {
        "chair_i",
        "chair_s",
        "pope_random_accuracy",
        "pope_adversarial_f1",
        "pope_random_unparsed",
    },
}


@pytest.mark.parametrize("task", sorted(TASK_KEYS))
def test_assistant_tasks_return_the_common_json_shape(make_assistant, task):
    pipe = make_assistant("perceiver")
    result = run_task(pipe, task, n=3)
    assert set(result) == {"model", "task", "n", "metrics"} and result["n"] == 3
    assert TASK_KEYS[task] <= set(result["metrics"])
    numbers = [v for v in result["metrics"].values() if isinstance(v, float)]
    assert numbers and all(v >= 0 for v in numbers)


def test_generation_tasks_refuse_a_dual_encoder(tiny_pipeline):
    with pytest.raises(ValueError, match="not an assistant"):
        run_task(tiny_pipeline, "shapes-vqa", n=2)


def test_vqa_scores_the_answer_after_a_rationale(make_assistant, monkeypatch):
    import polymodal.eval.assistant_tasks as tasks

    def scores(reply):
        monkeypatch.setattr(
            tasks, "ask_many", lambda pipe, images, prompts, max_tokens: [reply] * len(prompts)
        )
        return run_task(make_assistant("linear"), "shapes-vqa", n=40)["metrics"]

    plain = scores("yes")
    assert plain["vqa_accuracy_exists"] > 0  # "yes" is right about half the time
    assert scores("the red circle is further left, so yes") == plain
