"""Trainer behaviour on toy models, in-process (the SIGKILL and 2-process tests live in their own files)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from train_toys import DropoutRegressor, load_weights, regression_batch, regression_loss

from polymodal.config import ConfigError, from_dict
from polymodal.train.loop import TrainConfig, Trainer, TrainingDiverged, build_optimizer
from polymodal.train.schedule import build_scheduler

torch.set_num_threads(1)


def _cfg(**overrides) -> TrainConfig:
    base = dict(steps=6, lr=1e-2, warmup_steps=2, log_every=1, ckpt_every=0, device="cpu", progress=False)
    return TrainConfig(**{**base, **overrides})


def _records(out_dir, split="train"):
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def _fit(out_dir, cfg, dropout=0.0, loss_fn=regression_loss, batches=regression_batch, eval_fn=None):
    torch.manual_seed(0)
    model = DropoutRegressor(p=dropout)
    summary = Trainer(model, loss_fn, batches, cfg, out_dir, eval_fn=eval_fn).fit()
    return model, summary


def test_config_is_strict_and_validated():
    cfg = from_dict(TrainConfig, {"steps": 5, "betas": [0.9, 0.95]})
    assert cfg.betas == (0.9, 0.95)
    with pytest.raises(ConfigError, match="unknown key 'stesp'"):
        from_dict(TrainConfig, {"stesp": 5})
    for bad, message in [
        ({"steps": 0}, "steps must be >= 1"),
        ({"precision": "fp16"}, "precision"),
        ({"min_lr_ratio": 2.0}, "min_lr_ratio"),
        ({"lr": 0.0}, "lr must be"),
        ({"grad_clip": -1.0}, "grad_clip"),
        ({"device": "gpu"}, "device"),
    ]:
        with pytest.raises(ConfigError, match=message):
            from_dict(TrainConfig, bad)


def test_no_weight_decay_on_biases_norms_and_scalars():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    model.scale = nn.Parameter(torch.tensor(1.0))
    groups = build_optimizer(model, _cfg(weight_decay=0.3)).param_groups
    assert [g["weight_decay"] for g in groups] == [0.3, 0.0]
    assert [p.shape for p in groups[0]["params"]] == [torch.Size([4, 3])]
    assert len(groups[1]["params"]) == 4  # linear bias, norm weight and bias, scale


def test_lr_scale_multiplies_the_lr_of_named_parameters_and_follows_the_schedule():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    cfg = _cfg(lr=0.1, weight_decay=0.3, lr_scale={"1.": 10.0, "1.bias": 2.0})
    optimizer = build_optimizer(model, cfg)
    groups = optimizer.param_groups
    by_param = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    lrs = {n: by_param[id(p)] for n, p in model.named_parameters()}
    assert lrs == {
        "0.weight": (0.1, 0.3), "0.bias": (0.1, 0.0), "1.weight": (1.0, 0.3), "1.bias": (0.2, 0.0)
    }  # fmt: skip
    assert groups[0]["lr"] == 0.1  # the unscaled group first: the trainer logs its lr
    build_scheduler(optimizer, warmup_steps=4, total_steps=10, min_lr_ratio=0.1)  # warmup: 1/4 at first
    assert sorted(g["lr"] for g in groups) == pytest.approx([0.025, 0.025, 0.05, 0.25])
    with pytest.raises(ValueError, match="'2.' names no trainable parameter"):
        build_optimizer(model, _cfg(lr_scale={"2.": 3.0}))
    with pytest.raises(ConfigError, match="lr_scale"):
        from_dict(TrainConfig, {"lr_scale": {"1.": 0.0}})


def test_training_learns_and_writes_logs_plots_checkpoint_and_summary(tmp_path):
    evals = []

    def eval_fn(model):
        assert not model.training and not torch.is_grad_enabled()
        evals.append(1)
        return {"mse": regression_loss(model, regression_batch(-1))["loss"].item()}

    cfg = _cfg(steps=40, lr=3e-2, log_every=10, eval_every=20, batch_size=16, grad_clip=1.0)
    _, summary = _fit(tmp_path, cfg, eval_fn=eval_fn)
    train = _records(tmp_path)
    assert [r["step"] for r in train] == [10, 20, 30, 40]
    assert set(train[0]) >= {"step", "loss", "lr", "grad_norm", "samples_per_s", "elapsed", "pred_mean"}
    assert train[-1]["loss"] < 0.5 * train[0]["loss"]
    assert [r["step"] for r in _records(tmp_path, "eval")] == [20, 40] and len(evals) == 2
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert (tmp_path / "checkpoints" / "step_00000040" / "model.safetensors").is_file()
    assert summary["steps"] == 40 and summary["skipped_nonfinite"] == 0
    assert summary["final_loss"] == train[-1]["loss"] and summary["samples_per_s"] > 0
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 40


def test_grad_accumulation_matches_one_big_batch(tmp_path):
    def big_batch(index):
        parts = [regression_batch(2 * index), regression_batch(2 * index + 1)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    accumulated, _ = _fit(tmp_path / "a", _cfg(grad_accum=2))
    single, _ = _fit(tmp_path / "b", _cfg(grad_accum=1), batches=big_batch)
    for a, b in zip(accumulated.parameters(), single.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _nan_at(indices):
    def loss_fn(model, batch):
        out = regression_loss(model, batch)
        if int(batch["index"]) in indices:
            out["loss"] = out["loss"] * float("nan")
        return out

    def batches(index):
        return {**regression_batch(index), "index": torch.tensor(index)}

    return loss_fn, batches


def test_non_finite_step_is_skipped_counted_and_logged(tmp_path):
    loss_fn, batches = _nan_at({2})
    snapshots = {}

    def recording_loss(model, batch):
        snapshots[int(batch["index"])] = [p.detach().clone() for p in model.parameters()]
        return loss_fn(model, batch)

    _, summary = _fit(tmp_path, _cfg(steps=5), loss_fn=recording_loss, batches=batches)
    assert summary["skipped_nonfinite"] == 1 and summary["steps"] == 5
    skipped = [r for r in _records(tmp_path) if r.get("skipped")]
    assert [(r["step"], r["loss"]) for r in skipped] == [(3, "nan")]
    assert all(torch.equal(a, b) for a, b in zip(snapshots[2], snapshots[3], strict=True))  # no update
    assert not all(torch.equal(a, b) for a, b in zip(snapshots[3], snapshots[4], strict=True))


def test_consecutive_non_finite_steps_raise_training_diverged(tmp_path):
    loss_fn, batches = _nan_at(set(range(3, 100)))
    with pytest.raises(TrainingDiverged, match="3 consecutive steps"):
        _fit(tmp_path, _cfg(steps=20, max_nonfinite=3), loss_fn=loss_fn, batches=batches)
    assert [r["step"] for r in _records(tmp_path) if r.get("skipped")] == [4, 5, 6]
    assert (tmp_path / "curves.png").is_file()


def test_resume_from_checkpoint_is_bitwise_exact_and_eval_does_not_touch_rng(tmp_path):
    cfg = _cfg(steps=6, ckpt_every=3, keep_checkpoints=2, grad_accum=2, eval_every=2)

    def noisy_eval(model):  # draws from every RNG; must not change training
        return {"noise": torch.rand(1).item()}

    model, _ = _fit(tmp_path / "full", cfg, dropout=0.3, eval_fn=noisy_eval)
    no_eval, _ = _fit(tmp_path / "no_eval", cfg, dropout=0.3)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), no_eval.parameters(), strict=True))

    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step_00000006")  # as if stopped after step 3
    torch.manual_seed(123)  # a different init: everything must come from the checkpoint
    summary = Trainer(DropoutRegressor(p=0.3), regression_loss, regression_batch, cfg, tmp_path / "resumed",
                         eval_fn=noisy_eval).fit()  # fmt: skip
    assert summary["start_step"] == 3 and summary["steps_run"] == 3
    a = load_weights(tmp_path / "full" / "checkpoints" / "step_00000006" / "model.safetensors")
    b = load_weights(tmp_path / "resumed" / "checkpoints" / "step_00000006" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    step = Path("checkpoints") / "step_00000006" / "trainer_state.pt"
    a_state = torch.load(tmp_path / "full" / step, weights_only=True)
    b_state = torch.load(tmp_path / "resumed" / step, weights_only=True)
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(a_state["optimizer"]["state"][0][key], b_state["optimizer"]["state"][0][key])
    assert [r["loss"] for r in _records(tmp_path / "full")] == [
        r["loss"] for r in _records(tmp_path / "resumed")
    ]


def test_finished_run_resumes_to_nothing_and_resume_false_refuses_existing_checkpoints(tmp_path):
    _fit(tmp_path, _cfg(steps=3))
    _, summary = _fit(tmp_path, _cfg(steps=3))
    assert summary["steps_run"] == 0 and summary["final_loss"] is not None
    with pytest.raises(FileExistsError, match="resume=True"):
        _fit(tmp_path, _cfg(steps=3, resume=False))


def test_bf16_autocast_keeps_fp32_weights(tmp_path):
    model, summary = _fit(tmp_path, _cfg(steps=3, precision="bf16"))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert summary["skipped_nonfinite"] == 0


def test_bad_loss_functions_are_explained(tmp_path):
    with pytest.raises(ValueError, match="must call the model"):
        _fit(tmp_path / "a", _cfg(), loss_fn=lambda model, batch: {"loss": batch["y"].mean()})
    with pytest.raises(TypeError, match="'loss' entry"):
        _fit(tmp_path / "b", _cfg(), loss_fn=lambda model, batch: model(batch["x"]).mean())
