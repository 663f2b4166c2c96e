"""What :func:`polymodal.keep_freed_memory` does to speed and memory, side by side in one run.

glibc's malloc settings are process-wide and stay once set, so each measurement runs in a child process
of its own, with glibc's defaults or after ``keep_freed_memory()``; the two alternate, round after round,
so this shared machine's drift hits both alike. For each workload it prints the median seconds of each,
the speed-up (median over rounds of default / kept), page faults per run, and the peak resident memory
of each (the price: freed pages stay in the process).

Workloads (tiny-clip unless named): embedding 256 images in batches of 8 (as the server does for one
client), 256 texts in batches of 64, the same 256 images with a 512-wide model, and training steps
(batch 64, the real loss and AdamW).

Run: ``python benchmarks/allocator.py [--rounds 3]`` (about five minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

WORKLOADS = ("image-b8", "text-b64", "image-b8-w512", "train-b64")
MODES = ("default", "kept")


def embedding(workload: str, folder: str) -> Callable[[], None]:
    """One pass of an embedding workload (inputs made before the clock starts)."""
    import polymodal
    from serve import images, texts, wider_model

    model = wider_model(Path(folder), 512) if workload.endswith("w512") else "tiny-clip"
    pipeline = polymodal.load(model)
    if workload.startswith("text"):
        captions = texts(256)
        return lambda: pipeline.embed_text(captions, batch_size=64)
    pngs = images(256, 64)
    return lambda: [pipeline.embed_image(pngs[i : i + 8]) for i in range(0, len(pngs), 8)]


def training() -> Callable[[], None]:
    """Four training steps of tiny-clip on batches of 64."""
    import torch

    from polymodal.registry import create_model
    from train_throughput import make_batches, train_step

    torch.manual_seed(0)
    source = make_batches("tiny-clip", 64)
    batches = [source.batch(i) for i in range(4)]
    model = create_model("tiny-clip").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def steps() -> None:
        for batch in batches:
            train_step(model, optimizer, batch, bf16=False)

    return steps


def child(mode: str, workload: str) -> None:
    """Measure one workload in this process and print its numbers as JSON."""
    if mode == "kept":
        from polymodal import keep_freed_memory

        assert keep_freed_memory(), "glibc's mallopt refused the settings"
    with tempfile.TemporaryDirectory() as tmp:
        run = training() if workload == "train-b64" else embedding(workload, tmp)
        run()  # warm-up: kernels, the heap's first growth
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        for _ in range(3):
            run()
        seconds = (time.perf_counter() - start) / 3
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 3
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "faults": faults, "peak_mb": peak_mb}))


def measure(mode: str, workload: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, workload], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "WORKLOAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    runs: dict[tuple[str, str], list[dict]] = {(w, m): [] for w in args.workloads for m in MODES}
    for r in range(args.rounds):
        for workload in args.workloads:
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                runs[workload, mode].append(measure(mode, workload))
        print(f"round {r + 1} done", flush=True)
    print(f"\n{'workload':15} {'default s':>10} {'kept s':>8} {'speed-up':>9} "
          f"{'faults default':>15} {'faults kept':>12} {'peak MB default':>16} {'peak MB kept':>13}")  # fmt: skip
    for workload in args.workloads:
        d, k = runs[workload, "default"], runs[workload, "kept"]

        def med(xs: list[dict], key: str) -> float:
            return statistics.median(x[key] for x in xs)

        speedup = statistics.median(a["seconds"] / b["seconds"] for a, b in zip(d, k, strict=True))
        print(
            f"{workload:15} {med(d, 'seconds'):10.3f} {med(k, 'seconds'):8.3f} {speedup:9.2f} "
            f"{med(d, 'faults'):15.0f} {med(k, 'faults'):12.0f} {med(d, 'peak_mb'):16.0f} {med(k, 'peak_mb'):13.0f}"
        )


if __name__ == "__main__":
    main()
