"""Two-rank data-parallel run of the toy contrastive model, launched by test_distributed.py via torchrun.

Checks all_gather_with_grad's gradient on its own, then trains; each rank saves its final weights
to OUT_DIR/rank{r}.safetensors so the test can compare ranks with each other and with one process.
Usage: torchrun --standalone --nproc_per_node=2 ddp_script.py OUT_DIR STEPS GRAD_ACCUM [CKPT_EVERY DROPOUT]
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from train_toys import PairEncoder, contrastive_loss, pair_batch

from polymodal.train import distributed as dist_utils
from polymodal.train.loop import TrainConfig, Trainer


def check_gather_gradient(out_dir: Path) -> None:
    """Every rank computes the same loss of the gathered tensor; the local slice gets the sum over ranks."""
    info = dist_utils.init_distributed("cpu")
    local = torch.full((3, 2), float(info.rank + 1), requires_grad=True)
    gathered = dist_utils.all_gather_with_grad(local)  # (W*3, 2)
    weights = torch.arange(gathered.numel(), dtype=torch.float32).reshape(gathered.shape)
    (gathered * weights).sum().backward()
    expected = info.world_size * weights[info.rank * 3 : (info.rank + 1) * 3]
    result = {
        "shape": list(gathered.shape),
        "values_ok": torch.equal(gathered[3:6], torch.full((3, 2), 2.0)),
        "grad_ok": torch.equal(local.grad, expected),
        "mean": dist_utils.all_reduce_mean(torch.tensor(float(info.rank))).item(),
    }
    (out_dir / f"gather_rank{info.rank}.json").write_text(json.dumps(result))


def main() -> None:
    out_dir, steps, grad_accum = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    ckpt_every, dropout = (int(sys.argv[4]), float(sys.argv[5])) if len(sys.argv) > 4 else (0, 0.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    check_gather_gradient(out_dir)
    torch.manual_seed(0)
    model = PairEncoder(dropout=dropout)
    cfg = TrainConfig(steps=steps, grad_accum=grad_accum, lr=5e-2, warmup_steps=2, log_every=1,
                      ckpt_every=ckpt_every, keep_checkpoints=2, device="cpu", progress=False, batch_size=4)  # fmt: skip
    trainer = Trainer(model, contrastive_loss, pair_batch, cfg, out_dir / "run")
    trainer.fit()
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        out_dir / f"rank{trainer.dist.rank}.safetensors",
    )


if __name__ == "__main__":
    main()
