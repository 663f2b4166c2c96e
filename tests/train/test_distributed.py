"""Distributed helpers, single-process and with a real 2-process gloo job (torchrun)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_toys import PairEncoder, contrastive_loss, load_weights, pair_batch

from polymodal.train import distributed as dist_utils
from polymodal.train.loop import TrainConfig, Trainer

SCRIPT = Path(__file__).with_name("ddp_script.py")


def test_single_process_helpers_are_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = dist_utils.init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_distributed) == (0, 1, False)
    assert info.device == torch.device("cpu")
    t = torch.randn(3, 2, requires_grad=True)
    assert dist_utils.all_gather_with_grad(t) is t
    assert torch.equal(dist_utils.all_reduce_mean(t), t.detach())
    assert dist_utils.is_main()
    dist_utils.barrier()


def test_bad_device_and_env_are_explained(monkeypatch):
    with pytest.raises(ValueError, match="device must be"):
        dist_utils.resolve_device("tpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        dist_utils.init_distributed("cpu")


def _torchrun(out_dir: Path, steps: int, grad_accum: int, *extra: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(SCRIPT.parent)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(SCRIPT), str(out_dir), str(steps), str(grad_accum), *extra]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _single_process_reference(out_dir: Path, steps: int, grad_accum: int) -> dict[str, torch.Tensor]:
    """One process on the concatenated batches of both ranks: what the 2-rank job must reproduce."""

    def both_ranks(index: int) -> dict:
        parts = [pair_batch(2 * index), pair_batch(2 * index + 1)]  # rank order, as all_gather concatenates
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    torch.manual_seed(0)
    model = PairEncoder()
    cfg = TrainConfig(steps=steps, grad_accum=grad_accum, lr=5e-2, warmup_steps=2, log_every=1, ckpt_every=0,
                      device="cpu", progress=False, batch_size=8)  # fmt: skip
    Trainer(model, contrastive_loss, both_ranks, cfg, out_dir).fit()
    return model.state_dict()


def test_two_process_contrastive_training_matches_one_process_on_the_full_batch(tmp_path):
    steps, grad_accum = 6, 2  # grad_accum 2 exercises DDP no_sync on the first micro-step
    _torchrun(tmp_path / "ddp", steps, grad_accum)

    for rank in (0, 1):
        gather = json.loads((tmp_path / "ddp" / f"gather_rank{rank}.json").read_text())
        assert gather == {"shape": [6, 2], "values_ok": True, "grad_ok": True, "mean": 0.5}

    rank0 = load_weights(tmp_path / "ddp" / "rank0.safetensors")
    rank1 = load_weights(tmp_path / "ddp" / "rank1.safetensors")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)

    records = [
        json.loads(line) for line in (tmp_path / "ddp" / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(1, steps + 1))
    assert all(r["gathered"] == 8.0 for r in train)  # 2 ranks x 4: the loss saw both ranks' samples
    assert train[-1]["loss"] < train[0]["loss"]

    reference = _single_process_reference(tmp_path / "single", steps, grad_accum)
    torch.manual_seed(0)
    initial = PairEncoder().state_dict()
    for key, value in reference.items():
        torch.testing.assert_close(rank0[key], value, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(rank0[key], initial[key], atol=1e-3), f"{key} did not train"


@pytest.mark.slow
def test_two_process_resume_restores_each_ranks_rng_exactly(tmp_path):
    """Dropout differs per rank, so an exact resume needs every rank's own RNG state back."""
    _torchrun(tmp_path / "full", 6, 1, "3", "0.3")
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "run" / "checkpoints" / "step_00000006")
    _torchrun(tmp_path / "resumed", 6, 1, "3", "0.3")
    state_file = tmp_path / "full" / "run" / "checkpoints" / "step_00000003" / "trainer_state.pt"
    state = torch.load(state_file, weights_only=True)
    assert len(state["rng"]) == 2 and not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    a = load_weights(tmp_path / "full" / "rank0.safetensors")
    b = load_weights(tmp_path / "resumed" / "rank0.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
