"""The training loop: AdamW + warmup/cosine, accumulation, clipping, non-finite guards, DDP, exact resume.

The data position is the step: micro-batch ``(step * grad_accum + micro) * world_size + rank`` is asked
of a pure ``batches(index)`` function, so a resumed run needs no data-loader state to continue exactly.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polymodal.config import to_dict
from polymodal.train import checkpoint as ckpt
from polymodal.train import distributed as dist_utils
from polymodal.train.metrics import CURVES_FILE, Console, MetricsLog, format_log_line, plot_curves
from polymodal.train.schedule import build_scheduler
from polymodal.train.train_config import TrainConfig

__all__ = ["Trainer", "TrainConfig", "TrainingDiverged", "build_optimizer", "seed_everything"]

LossFn = Callable[[nn.Module, dict], dict[str, Tensor]]
BatchFn = Callable[[int], dict]
EvalFn = Callable[[nn.Module], dict[str, float]]


class TrainingDiverged(RuntimeError):
    """Raised after ``max_nonfinite`` consecutive steps with a non-finite loss or gradient norm."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay for matrices/embeddings, none for ndim < 2 (biases, norms, scalars), and
    ``cfg.lr_scale``'s multiplier on parameters whose name starts with one of its prefixes (the longest
    prefix wins; the first group holds the unscaled parameters, whose lr the trainer logs)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    unused = [prefix for prefix in cfg.lr_scale if not any(n.startswith(prefix) for n, _ in named)]
    if unused:
        raise ValueError(f"lr_scale prefix {unused[0]!r} names no trainable parameter of the model")
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, param in named:
        groups.setdefault((lr_scale_of(name, cfg.lr_scale), param.ndim >= 2), []).append(param)
    ordered = sorted(groups.items(), key=lambda item: (item[0][0] != 1.0, not item[0][1]))
    return torch.optim.AdamW(
        [
            {"params": params, "lr": cfg.lr * scale, "weight_decay": cfg.weight_decay if decay else 0.0}
            for (scale, decay), params in ordered
        ],
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
    )


def lr_scale_of(name: str, scales: dict[str, float]) -> float:
    """The multiplier of the longest prefix in ``scales`` that ``name`` starts with (1 if none)."""
    matches = [prefix for prefix in scales if name.startswith(prefix)]
    return scales[max(matches, key=len)] if matches else 1.0


def move_to_device(obj: Any, device: torch.device) -> Any:
    """Move every tensor inside nested dicts/lists/tuples to ``device``."""
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: move_to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(move_to_device(v, device) for v in obj)
    return obj


def _scalar_outputs(out: Any) -> dict[str, Tensor]:
    """Check loss_fn's result and return its metrics as detached float32 scalars (loss included)."""
    if not isinstance(out, dict) or "loss" not in out:
        raise TypeError(f"loss_fn must return a dict with a 'loss' entry, got {type(out).__name__}")
    loss = out["loss"]
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise TypeError("loss_fn's 'loss' must be a scalar tensor")
    if not loss.requires_grad:
        raise ValueError("loss_fn's 'loss' does not require grad: loss_fn must call the model it is given")
    metrics = {}
    for key, value in out.items():
        value = torch.as_tensor(value.detach() if isinstance(value, Tensor) else value, device=loss.device)
        if value.numel() != 1:
            raise TypeError(f"loss_fn metric {key!r} must be a scalar, got shape {tuple(value.shape)}")
        metrics[key] = value.reshape(()).float()
    return metrics


class Trainer:
    """Trains ``model`` on ``batches`` by minimising ``loss_fn``; see the module docstring for the data contract.

    Args:
        model: the plain module (wrapped in DDP when world_size > 1, compiled when config.compile).
        loss_fn: ``loss_fn(model, batch) -> {"loss": scalar, **scalar metrics}``; must call ``model``.
        batches: pure function from a global micro-batch index to a batch dict.
        config: a validated :class:`TrainConfig`.
        out_dir: where metrics.jsonl, curves.png, summary.json and checkpoints/ go.
        eval_fn: ``eval_fn(model) -> {name: float}``, run on rank 0 without grad, RNG left untouched.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, batches: BatchFn, config: TrainConfig,
                 out_dir: str | Path, eval_fn: EvalFn | None = None):  # fmt: skip
        config.validate()
        self.cfg, self.loss_fn, self.batches, self.eval_fn = config, loss_fn, batches, eval_fn
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.dist = dist_utils.init_distributed(config.device)
        self.is_main = self.dist.rank == 0
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.model = model.to(self.dist.device)
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = build_scheduler(
            self.optimizer, config.warmup_steps, config.steps, config.min_lr_ratio
        )
        self.train_model = self._wrap(self.model)
        self.metrics = MetricsLog(self.out_dir, write=self.is_main)
        self.step = 0
        self.nonfinite_total = 0
        self.nonfinite_in_row = 0
        self.elapsed_before = 0.0  # wall time spent by earlier (resumed-from) runs
        self.last_checkpoint: Path | None = None

    def _wrap(self, model: nn.Module) -> nn.Module:
        wrapped = torch.compile(model) if self.cfg.compile else model
        if self.dist.is_distributed:
            device_ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(
                wrapped, device_ids=device_ids, find_unused_parameters=self.cfg.ddp_find_unused
            )
        return wrapped

    # ------------------------------------------------------------ state

    def _state(self) -> dict[str, Any]:
        """Everything besides the weights, as plain containers (collective: every rank must call it)."""
        rng = ckpt.capture_rng_state()
        rng_all = [rng]
        if self.dist.is_distributed:
            rng_all = [None] * self.dist.world_size
            torch.distributed.all_gather_object(rng_all, rng)
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_all,  # one entry per rank
            "nonfinite_total": self.nonfinite_total,
            "nonfinite_in_row": self.nonfinite_in_row,
            "elapsed": self.elapsed_before + (time.time() - self._t_start),
            "metrics": self.metrics.records,
        }

    def _restore(self, path: Path) -> None:
        state, meta = ckpt.load_checkpoint(path, self.model, self.dist.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.nonfinite_total = int(state["nonfinite_total"])
        self.nonfinite_in_row = int(state["nonfinite_in_row"])
        self.elapsed_before = float(state["elapsed"])
        self.metrics.reset(state["metrics"])
        self.last_checkpoint = path
        same_layout = (
            meta.get("world_size") == self.dist.world_size and meta.get("grad_accum") == self.cfg.grad_accum
        )
        if same_layout and len(state["rng"]) == self.dist.world_size:
            ckpt.restore_rng_state(state["rng"][self.dist.rank])
        else:
            warnings.warn(
                f"resuming {path} with a different world_size/grad_accum than it was saved with: "
                "data order and RNG continue differently from an uninterrupted run",
                stacklevel=2,
            )
            seed_everything(self.cfg.seed + self.dist.rank + 1_000_003 * self.step)

    def _start(self) -> None:
        """Resume from the newest checkpoint, or start fresh (seeded, empty metrics)."""
        if self.is_main:
            ckpt.clean_partial_checkpoints(self.ckpt_dir)
        dist_utils.barrier()
        latest = ckpt.find_latest_checkpoint(self.ckpt_dir)
        if latest is not None and not self.cfg.resume:
            raise FileExistsError(
                f"{self.out_dir} already holds checkpoints (newest {latest.name}) and resume=False; "
                "set resume=True to continue that run, or use a new or emptied out_dir"
            )
        if latest is not None:
            self._restore(latest)
            self._print(f"resumed from {latest} at step {self.step}")
        else:
            seed_everything(self.cfg.seed + self.dist.rank)
            self.metrics.reset([])

    def save_checkpoint(self) -> None:
        """Write a checkpoint of the current step (collective; rank 0 writes) and refresh curves.png."""
        state = self._state()
        if self.is_main:
            meta = {"step": self.step, "world_size": self.dist.world_size, "grad_accum": self.cfg.grad_accum,
                    "time": time.time(), "config": to_dict(self.cfg)}  # fmt: skip
            self.last_checkpoint = ckpt.save_checkpoint(
                self.ckpt_dir, self.step, self.model, state, meta, self.cfg.keep_checkpoints
            )
            plot_curves(self.metrics.records, self.out_dir / CURVES_FILE)
        dist_utils.barrier()

    # ------------------------------------------------------------ one step

    def _autocast(self) -> contextlib.AbstractContextManager:
        enabled = self.cfg.precision == "bf16"
        return torch.autocast(self.dist.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _forward_backward(self) -> dict[str, Tensor]:
        """Run every micro-step of the current step; returns metrics averaged over micro-steps."""
        accum, world, rank = self.cfg.grad_accum, self.dist.world_size, self.dist.rank
        totals: dict[str, Tensor] = {}
        for micro in range(accum):
            index = (self.step * accum + micro) * world + rank
            batch = move_to_device(self.batches(index), self.dist.device)
            defer_sync = self.dist.is_distributed and micro < accum - 1
            with self.train_model.no_sync() if defer_sync else contextlib.nullcontext():
                with self._autocast():
                    out = self.loss_fn(self.train_model, batch)
                metrics = _scalar_outputs(out)
                (out["loss"] / accum).backward()
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value
        return {key: value / accum for key, value in totals.items()}

    def _grad_norm(self) -> Tensor:
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.dist.device)
        if self.cfg.grad_clip > 0:
            params = [p for p in self.model.parameters() if p.grad is not None]
            return torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        return torch.nn.utils.get_total_norm(grads)

    def _train_step(self) -> tuple[dict[str, Tensor], float, bool]:
        """One optimizer step (or a skipped one); returns (metrics incl. grad_norm, lr used, skipped)."""
        self.train_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        metrics = self._forward_backward()
        metrics["grad_norm"] = self._grad_norm().float()
        lr = float(self.optimizer.param_groups[0]["lr"])
        finite = torch.isfinite(metrics["loss"]) & torch.isfinite(metrics["grad_norm"])
        # every rank must take the same branch, or DDP ranks fall out of step
        skipped = bool(dist_utils.all_reduce_max((~finite).float()).item())
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
            with warnings.catch_warnings():  # LR follows the step count even when the update is skipped
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")
                self.scheduler.step()
        else:
            self.optimizer.step()
            self.scheduler.step()
        return metrics, lr, skipped

    # ------------------------------------------------------------ logging and eval

    def _print(self, line: str) -> None:
        if not self.is_main:
            return
        console = getattr(self, "_console", None)
        if console is not None:
            console.print(line)
        else:
            print(line, flush=True)

    def _log_train(self, metrics: dict[str, Tensor], lr: float, skipped: bool, rate: float) -> dict:
        keys = sorted(metrics)
        # one collective for all metrics; grad_norm is already identical on every rank
        values = dist_utils.all_reduce_mean(torch.stack([metrics[k] for k in keys]))
        record: dict[str, Any] = {"step": self.step, "split": "train"}
        record.update({k: float(v) for k, v in zip(keys, values.tolist(), strict=True)})
        record.update(lr=lr, samples_per_s=rate, elapsed=self.elapsed_before + time.time() - self._t_start)
        if skipped:
            record["skipped"] = True
        record = self.metrics.log(record)
        self._print(format_log_line(record, self.cfg.steps))
        return record

    def run_eval(self) -> dict[str, float] | None:
        """Call eval_fn on rank 0 (eval mode, no grad, RNG restored after); logs and returns its metrics."""
        result = None
        if self.is_main and self.eval_fn is not None:
            rng = ckpt.capture_rng_state()
            self.model.eval()
            with torch.no_grad(), self._autocast():
                result = {k: float(v) for k, v in self.eval_fn(self.model).items()}
            self.model.train()
            ckpt.restore_rng_state(rng)
            record = self.metrics.log({"step": self.step, "split": "eval", **result})
            self._print(format_log_line(record, self.cfg.steps))
        dist_utils.barrier()
        return result

    # ------------------------------------------------------------ fit

    def _is_due(self, every: int) -> bool:
        return self.step == self.cfg.steps or (every > 0 and self.step % every == 0)

    def fit(self) -> dict[str, Any]:
        """Train up to ``config.steps`` (resuming if possible); returns a summary dict (also summary.json)."""
        self._t_start = time.time()
        self._start()
        start_step = self.step
        samples_per_step = self.cfg.batch_size * self.cfg.grad_accum * self.dist.world_size
        self._console = Console(self.is_main, self.cfg.progress, self.cfg.steps, self.step)
        window_time, window_steps = 0.0, 0  # train time only: evals and checkpoints do not dilute samples/s
        try:
            while self.step < self.cfg.steps:
                step_start = time.time()
                metrics, lr, skipped = self._train_step()
                self.step += 1
                window_steps += 1
                window_time += time.time() - step_start
                self._count_nonfinite(skipped)
                self._console.advance(self.step)
                if skipped or self._is_due(self.cfg.log_every):
                    self._log_train(
                        metrics, lr, skipped, window_steps * samples_per_step / max(window_time, 1e-9)
                    )
                    window_time, window_steps = 0.0, 0
                if self.nonfinite_in_row >= self.cfg.max_nonfinite:
                    self._diverged()
                if self.eval_fn is not None and self._is_due(self.cfg.eval_every):
                    self.run_eval()
                if self._is_due(self.cfg.ckpt_every):
                    self.save_checkpoint()
        finally:
            self._console.close()
        return self._summary(start_step)

    def _count_nonfinite(self, skipped: bool) -> None:
        if skipped:
            self.nonfinite_total += 1
            self.nonfinite_in_row += 1
        else:
            self.nonfinite_in_row = 0

    def _diverged(self) -> None:
        if self.is_main:
            plot_curves(self.metrics.records, self.out_dir / CURVES_FILE)
        where = f"; last good checkpoint: {self.last_checkpoint}" if self.last_checkpoint else ""
        raise TrainingDiverged(
            f"loss or gradient norm was non-finite for {self.nonfinite_in_row} consecutive steps "
            f"(max_nonfinite={self.cfg.max_nonfinite}) at step {self.step}; lower lr, enable grad_clip "
            f"or use precision='fp32'{where}"
        )

    def _final_loss(self) -> float | str | None:
        train = [r for r in self.metrics.records if r.get("split") == "train"]
        return train[-1]["loss"] if train else None

    def _summary(self, start_step: int) -> dict[str, Any]:
        wall = time.time() - self._t_start
        steps_run = self.step - start_step
        samples = steps_run * self.cfg.batch_size * self.cfg.grad_accum * self.dist.world_size
        summary = {
            "steps": self.step,
            "start_step": start_step,
            "steps_run": steps_run,
            "final_loss": self._final_loss(),
            "skipped_nonfinite": self.nonfinite_total,
            "wall_time_s": wall,
            "samples_per_s": samples / wall if wall > 0 else 0.0,
            "world_size": self.dist.world_size,
            "device": str(self.dist.device),
            "last_checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
            "out_dir": str(self.out_dir),
        }
        if self.is_main:
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary
