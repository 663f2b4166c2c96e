"""``TrainConfig``: every knob of :class:`polymodal.train.loop.Trainer`, validated on construction via from_dict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from polymodal.config import ConfigError


@dataclass
class TrainConfig:
    steps: int = 1000  # optimizer steps to train for (in total, across resumes)
    grad_accum: int = 1  # micro-batches accumulated per optimizer step
    lr: float = 3e-4  # peak learning rate
    lr_scale: dict[str, float] = field(default_factory=dict)  # parameter-name prefix -> lr multiplier
    weight_decay: float = 0.1  # AdamW decay on weights with ndim >= 2 (never biases, norms, scalars)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    warmup_steps: int = 100  # linear warmup steps before the cosine decay
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at the last step
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    precision: str = "fp32"  # "fp32" or "bf16" (autocast around forward+loss; weights stay fp32)
    seed: int = 0  # seeds python/numpy/torch with seed + rank
    log_every: int = 10  # steps between metrics.jsonl lines
    ckpt_every: int = 500  # steps between checkpoints; 0 = only the final one
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    eval_every: int = 0  # steps between eval_fn calls (rank 0); 0 = only at the end
    max_nonfinite: int = 5  # stop after this many consecutive non-finite steps
    device: str = "auto"  # "auto" (cuda if available) | "cpu" | "cuda"
    compile: bool = False  # torch.compile the model
    batch_size: int = 1  # samples per micro-batch per rank (only used to report samples/s)
    resume: bool = True  # continue from out_dir's newest checkpoint if there is one
    progress: bool = True  # rich progress bar on rank 0 (only when stdout is a terminal)
    ddp_find_unused: bool = False  # DDP find_unused_parameters, for models that skip branches per batch

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        positive = ("steps", "grad_accum", "log_every", "keep_checkpoints", "max_nonfinite", "batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "ckpt_every", "eval_every", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"TrainConfig.lr must be a positive number, got {self.lr}")
        for prefix, scale in self.lr_scale.items():
            if not (scale > 0 and math.isfinite(scale)):
                raise ConfigError(f"TrainConfig.lr_scale[{prefix!r}] must be a positive number, got {scale}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas}")
        if self.eps <= 0:
            raise ConfigError(f"TrainConfig.eps must be > 0, got {self.eps}")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"TrainConfig.precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"TrainConfig.device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
