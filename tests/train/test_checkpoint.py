"""Atomic checkpoints: layout, tied weights, weights_only state, pruning, crash leftovers, RNG round trip."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from polymodal.train import checkpoint as ckpt


class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied, as in GPT-2


def _save(root, step, model=None, keep=5):
    model = model or nn.Linear(3, 2)
    state = {"step": step, "rng": [ckpt.capture_rng_state()], "lst": [1, 2.5, "x"]}
    return ckpt.save_checkpoint(root, step, model, state, {"step": step}, keep=keep)


def test_save_load_round_trip_with_tied_weights(tmp_path):
    torch.manual_seed(0)
    model = TiedLM()
    path = _save(tmp_path, 100, model)
    assert path.name == "step_00000100"
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "model.safetensors", "trainer_state.pt"]
    assert (tmp_path / "latest").read_text().strip() == "step_00000100"

    other = TiedLM()
    state, meta = ckpt.load_checkpoint(path, other)
    assert torch.equal(other.embed.weight, model.embed.weight)
    assert other.head.weight is other.embed.weight  # still tied after loading
    assert meta == {"step": 100} and state["step"] == 100 and state["lst"] == [1, 2.5, "x"]
    torch.load(path / "trainer_state.pt", weights_only=True)  # plain containers only


def test_load_unwraps_compiled_or_ddp_style_wrappers(tmp_path):
    model = nn.Linear(3, 2)
    path = _save(tmp_path, 1, model)

    class Wrapper(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    target = nn.Linear(3, 2)
    ckpt.load_checkpoint(path, Wrapper(target))
    assert torch.equal(target.weight, model.weight)


def test_keeps_only_the_newest_and_finds_latest(tmp_path):
    for step in (10, 20, 30, 40):
        _save(tmp_path, step, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000030", "step_00000040"]
    assert ckpt.find_latest_checkpoint(tmp_path).name == "step_00000040"
    assert ckpt.checkpoint_step(ckpt.find_latest_checkpoint(tmp_path)) == 40


def test_crash_leftovers_are_ignored_and_cleaned(tmp_path):
    _save(tmp_path, 10)
    half = tmp_path / ".tmp-step_00000020-999"  # killed while writing step 20
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"partial")
    (tmp_path / "latest.tmp").write_text("step_00000020")
    incomplete = tmp_path / "step_00000030"  # a step folder without its files is not a checkpoint
    incomplete.mkdir()
    assert ckpt.find_latest_checkpoint(tmp_path).name == "step_00000010"
    removed = ckpt.clean_partial_checkpoints(tmp_path)
    assert {p.name for p in removed} == {".tmp-step_00000020-999", "latest.tmp"}
    assert not half.exists()


def test_newer_folder_wins_over_stale_latest(tmp_path):
    _save(tmp_path, 10)
    _save(tmp_path, 20)
    (tmp_path / "latest").write_text("step_00000010\n")  # crash between rename and latest update
    assert ckpt.find_latest_checkpoint(tmp_path).name == "step_00000020"
    (tmp_path / "latest").unlink()
    assert ckpt.find_latest_checkpoint(tmp_path).name == "step_00000020"
    assert ckpt.find_latest_checkpoint(tmp_path / "nothing") is None


def test_resaving_an_existing_step_replaces_it(tmp_path):
    _save(tmp_path, 10, nn.Linear(3, 2))
    model = nn.Linear(3, 2)
    path = _save(tmp_path, 10, model)
    target = nn.Linear(3, 2)
    ckpt.load_checkpoint(path, target)
    assert torch.equal(target.weight, model.weight)


def test_incomplete_checkpoint_load_explains(tmp_path):
    (tmp_path / "step_00000001").mkdir()
    with pytest.raises(FileNotFoundError, match="missing"):
        ckpt.load_checkpoint(tmp_path / "step_00000001", nn.Linear(3, 2))


def test_rng_state_round_trip_restores_all_generators(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leave a cached gaussian in numpy's state
    torch.save(ckpt.capture_rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt.restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])
