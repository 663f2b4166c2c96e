"""Training throughput and model FLOP utilisation (MFU) of the dual encoder, measured side by side.

In one run it measures, on this machine:
- the matmul peak (fp32 and bf16) as the yardstick,
- training steps of the tiny-clip architecture (the real loss, hard negatives, AdamW, clipping) in fp32 and
  under bf16 autocast: samples/s, achieved GFLOP/s (FLOPs counted by torch's FlopCounterMode),
- the data pipeline alone (world rendering + augmentation + tokenisation) in samples/s,
and prints ratios: MFU = achieved / peak, bf16 / fp32 speed, data / training speed.

    python benchmarks/train_throughput.py [--batch 128] [--steps 8] [--model tiny-clip]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from peak import count_flops, measure_matmul_peak  # noqa: E402
from polymodal.data.contrastive import ContrastiveBatches, ContrastiveDataConfig  # noqa: E402
from polymodal.data.images import ImageProcessor, ImageProcessorConfig  # noqa: E402
from polymodal.data.tokenizer import TextTokenizer, world_corpus  # noqa: E402
from polymodal.models.dual_encoder import contrastive_loss  # noqa: E402
from polymodal.registry import create_model, get_spec  # noqa: E402


def make_batches(model_name: str, batch: int) -> ContrastiveBatches:
    spec = get_spec(model_name)
    tokenizer = TextTokenizer.train_bpe(world_corpus(5000), vocab_size=1024)
    processor = ImageProcessor(ImageProcessorConfig(**spec.image_processor))
    data = ContrastiveDataConfig(image_size=processor.config.image_size, hard_negatives=True)
    return ContrastiveBatches(data, processor, tokenizer, batch)


def train_step(model, optimizer, batch, bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = contrastive_loss(model, batch)["loss"]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def time_training(model_name: str, batches: list[dict], bf16: bool, steps: int) -> tuple[float, int]:
    """Median seconds per step (after warm-up) and FLOPs per step (forward + backward)."""
    torch.manual_seed(0)
    model = create_model(model_name).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for b in batches[:2]:
        train_step(model, optimizer, b, bf16)  # warm-up: allocator, kernels
    times = []
    for i in range(steps):
        start = time.perf_counter()
        train_step(model, optimizer, batches[i % len(batches)], bf16)
        times.append(time.perf_counter() - start)

    def forward_backward():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            contrastive_loss(model, batches[0])["loss"].backward()

    flops = count_flops(forward_backward)
    optimizer.zero_grad(set_to_none=True)
    return statistics.median(times), flops


def time_data(batches: ContrastiveBatches, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        batches.batch(10_000 + i)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny-clip")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    source = make_batches(args.model, args.batch)
    batches = [source.batch(i) for i in range(4)]
    peak = {"fp32": measure_matmul_peak(torch.float32), "bf16": measure_matmul_peak(torch.bfloat16)}
    data_s = time_data(source, 4)
    print(f"{args.model}, batch {args.batch}, {torch.get_num_threads()} threads")
    print(f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s (measured now)")
    rates = {}
    for precision in ("fp32", "bf16"):
        seconds, flops = time_training(args.model, batches, precision == "bf16", args.steps)
        rates[precision] = args.batch / seconds
        achieved = flops / seconds / 1e9
        print(
            f"train {precision}: {rates[precision]:7.1f} samples/s | {flops / args.batch / 1e9:.3f} GFLOP/sample | "
            f"{achieved:6.1f} GFLOP/s | MFU {achieved / peak[precision]:.3f} of the {precision} matmul peak"
        )
    print(f"data pipeline: {args.batch / data_s:7.1f} samples/s on one thread")
    print(f"ratio bf16/fp32 training speed: {rates['bf16'] / rates['fp32']:.2f}")
    print(f"ratio data/training speed (fp32): {args.batch / data_s / rates['fp32']:.2f} (>1: data keeps up)")


if __name__ == "__main__":
    main()
