"""Train the dropout toy for ``steps`` steps in ``out_dir`` (resuming if a checkpoint is there).

Run by test_resume_kill.py as a real process so that it can be SIGKILLed mid-run.
Usage: python resume_script.py OUT_DIR STEPS CKPT_EVERY STEP_DELAY_S
"""

import sys
import time

import torch
from train_toys import DropoutRegressor, regression_batch, regression_loss

from polymodal.train.loop import TrainConfig, Trainer


def main() -> None:
    out_dir, steps, ckpt_every, delay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = DropoutRegressor()

    def batches(index: int) -> dict:
        time.sleep(delay)  # slows the run so the test can kill it between checkpoints
        return regression_batch(index)

    cfg = TrainConfig(steps=steps, grad_accum=2, lr=1e-2, warmup_steps=3, ckpt_every=ckpt_every, log_every=1,
                      keep_checkpoints=2, device="cpu", progress=False, seed=7)  # fmt: skip
    summary = Trainer(model, regression_loss, batches, cfg, out_dir).fit()
    print("done", summary["steps"], flush=True)


if __name__ == "__main__":
    main()
