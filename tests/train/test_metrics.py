"""metrics.jsonl handling, curves.png, console lines."""

import json

import pytest
import torch
from train_toys import DropoutRegressor, load_weights, regression_batch, regression_loss

from polymodal.train.loop import TrainConfig, Trainer
from polymodal.train.metrics import Console, MetricsLog, format_log_line, plot_curves

TRAIN = {"step": 1, "split": "train", "loss": 0.5, "lr": 1e-3, "grad_norm": 0.25, "samples_per_s": 100.0}


def test_log_keeps_json_valid_for_non_finite_values_and_reset_rewrites_the_file(tmp_path):
    log = MetricsLog(tmp_path, write=True)
    log.reset([])
    log.log({**TRAIN, "loss": float("nan")})
    log.log({**TRAIN, "step": 2, "loss": float("inf")})
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in lines] == ["nan", "inf"]
    log.reset(lines[:1])  # as on resume: later lines vanish
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_non_writing_ranks_write_nothing(tmp_path):
    log = MetricsLog(tmp_path, write=False)
    log.reset([])
    log.log(TRAIN)
    assert log.records and not (tmp_path / "metrics.jsonl").exists()


def test_plot_curves_with_and_without_eval(tmp_path):
    records = [{**TRAIN, "step": s, "loss": 1.0 / s} for s in range(1, 6)]
    plot_curves(records, tmp_path / "a.png")
    plot_curves(records + [{"step": 5, "split": "eval", "acc": 0.9}], tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "b.png").stat().st_size > (tmp_path / "a.png").stat().st_size * 0.5
    assert not list(tmp_path.glob("*.tmp*"))


def test_format_log_line():
    assert format_log_line(TRAIN, 10) == "step 1/10 | loss 0.5000 | lr 1.00e-03 | gnorm 0.250 | 100 samples/s"
    skipped = format_log_line({**TRAIN, "loss": "nan", "skipped": True}, 10)
    assert "loss nan" in skipped and "SKIPPED" in skipped
    assert format_log_line({"step": 3, "split": "eval", "acc": 0.5}, 10) == "step 3/10 | eval | acc 0.5"


def test_console_prints_plain_lines_without_a_terminal(capsys):
    console = Console(enabled=True, progress_bar=True, total=5, start=0)
    assert console.progress is None  # pytest's stdout is not a TTY
    console.print("hello")
    console.close()
    Console(enabled=False, progress_bar=True, total=5, start=0).print("hidden")
    assert capsys.readouterr().out == "hello\n"


@pytest.mark.slow
def test_compiled_model_trains_and_saves_plain_keys(tmp_path):
    torch.manual_seed(0)
    model = DropoutRegressor()
    cfg = TrainConfig(steps=3, compile=True, device="cpu", progress=False, log_every=1, ckpt_every=0)
    Trainer(model, regression_loss, regression_batch, cfg, tmp_path).fit()
    keys = load_weights(tmp_path / "checkpoints" / "step_00000003" / "model.safetensors").keys()
    assert set(keys) == set(DropoutRegressor().state_dict())
