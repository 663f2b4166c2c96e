"""Exact resume across a real SIGKILL: N steps, kill -9, resume to 2N == 2N uninterrupted, bit for bit."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from train_toys import load_weights

SCRIPT = Path(__file__).with_name("resume_script.py")
N = 5


def _run(out_dir: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parent)}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, str(SCRIPT), str(out_dir), str(2 * N), str(N), str(delay)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before {path} appeared:\n{proc.stdout.read()}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.005)


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    return out


def _train_losses(out_dir: Path) -> list[tuple[int, float]]:
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if r["split"] == "train"]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    straight = _run(tmp_path / "straight", delay=0.0)
    killed = _run(tmp_path / "killed", delay=0.1)  # 2 micro-batches per step: ~0.2 s per step
    ckpt_n = tmp_path / "killed" / "checkpoints" / f"step_{N:08d}"
    _wait_for(ckpt_n, killed)
    assert killed.poll() is None, "the run finished before it could be killed; raise the delay"
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    final_name = f"step_{2 * N:08d}"
    assert not (tmp_path / "killed" / "checkpoints" / final_name).exists()

    resumed_out = _finish(_run(tmp_path / "killed", delay=0.0))
    assert f"resumed from {ckpt_n}" in resumed_out
    _finish(straight)

    a = load_weights(tmp_path / "straight" / "checkpoints" / final_name / "model.safetensors")
    b = load_weights(tmp_path / "killed" / "checkpoints" / final_name / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the resumed log is the uninterrupted log: lines written after the checkpoint by the killed run are dropped
    assert _train_losses(tmp_path / "killed") == _train_losses(tmp_path / "straight")
    assert [s for s, _ in _train_losses(tmp_path / "killed")] == list(range(1, 2 * N + 1))
