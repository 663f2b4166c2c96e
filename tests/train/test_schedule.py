"""Warmup + cosine schedule."""

import math

import pytest
import torch

from polymodal.train.schedule import build_scheduler, warmup_cosine_factor


def test_warmup_rises_linearly_then_cosine_reaches_min_ratio():
    f = warmup_cosine_factor(warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0)
    assert f(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(14) == pytest.approx(0.1)
    assert f(100) == pytest.approx(0.1)  # past the end it stays at the floor
    decay = [f(s) for s in range(4, 15)]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))


def test_no_warmup_starts_at_peak():
    f = warmup_cosine_factor(0, 10, 0.0)
    assert f(0) == 1.0 and f(10) == pytest.approx(0.0)


@pytest.mark.parametrize("args", [(-1, 10, 0.1), (0, 0, 0.1), (0, 10, 1.5)])
def test_bad_arguments_raise(args):
    with pytest.raises(ValueError):
        warmup_cosine_factor(*args)


def test_scheduler_state_round_trips_through_weights_only_load(tmp_path):
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([param], lr=1.0)
    sched = build_scheduler(opt, 3, 10, 0.1)
    for _ in range(5):
        opt.step()
        sched.step()
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    sched2 = build_scheduler(opt2, 3, 10, 0.1)
    sched2.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert sched2.get_last_lr() == sched.get_last_lr()
    opt.step(), sched.step(), opt2.step(), sched2.step()
    assert (
        opt2.param_groups[0]["lr"]
        == opt.param_groups[0]["lr"]
        == pytest.approx(warmup_cosine_factor(3, 10, 0.1)(6))
    )
