"""Matmul peak throughput and FLOP counting: the yardsticks that throughput benchmarks divide by.

Run ``python benchmarks/peak.py`` to print this machine's fp32 and bf16 square-matmul peaks.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch.utils.flop_counter import FlopCounterMode


@contextmanager
def _num_threads(threads: int | None):
    """Temporarily set torch's intra-op thread count (None leaves it unchanged)."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_matmul_peak(
    dtype: torch.dtype = torch.float32,
    n: int = 1024,
    repeats: int = 10,
    threads: int | None = None,
    warmup: int = 3,
    device: str | torch.device = "cpu",
) -> float:
    """Achieved GFLOP/s of an ``n x n @ n x n`` matmul: the median over ``repeats`` timed runs.

    Args:
        dtype: element type (float32, bfloat16, ...).
        n: matrix side; 2 * n**3 FLOPs per matmul.
        repeats: timed runs; the median resists scheduler noise.
        threads: torch intra-op threads for the measurement (restored afterwards); None keeps the current.
        warmup: untimed runs first (thread pools, caches, kernel selection).
        device: where to run; CUDA runs are synchronised around each timing.
    """
    if n < 1 or repeats < 1 or warmup < 0:
        raise ValueError(
            f"need n >= 1, repeats >= 1, warmup >= 0; got n={n}, repeats={repeats}, warmup={warmup}"
        )
    device = torch.device(device)
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)  # preallocated so timing excludes allocation

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with _num_threads(threads), torch.inference_mode():
        for _ in range(warmup):
            torch.mm(a, b, out=out)
        sync()
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            sync()
            seconds.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(seconds) / 1e9


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs that ``fn()`` performs, counted by ``torch.utils.flop_counter.FlopCounterMode``.

    Includes the backward pass when ``fn`` calls ``.backward()``. Only ops with registered FLOP formulas
    (matmuls, convolutions, attention) count; elementwise ops are treated as free, as is customary for MFU.
    """
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1024, help="matrix side")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per dtype")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    threads = args.threads or torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} thread(s), n={args.n}, median of {args.repeats}")
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        gflops = measure_matmul_peak(dtype, n=args.n, repeats=args.repeats, threads=threads)
        print(f"{name:>5}: {gflops:8.1f} GFLOP/s")


if __name__ == "__main__":
    main()
