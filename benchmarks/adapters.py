"""Which vision-language adapter? Linear vs MLP vs Q-Former vs Perceiver vs gated cross-attention,
trained on the same data with the same budget, measured side by side in one run.

Every adapter gets the from-scratch tiny-assistant-base recipe with the same pre-trained LM (the recipe's
``lm`` stage, copied from ``--lm-from`` when it exists, else trained once and shared), the same frozen
tiny-clip image tower, and the same ``align`` + ``instruct`` steps. It prints one Markdown table: VQA
accuracy on test and held-out-pair scenes, CIDEr of short captions, visual tokens per image, trainable
adapter parameters, training samples/s (instruct stage) and generation tokens/s, plus each speed relative
to the MLP adapter.

    python benchmarks/adapters.py [--align-steps 150] [--instruct-steps 500] [--n 200] [--out runs/bench-adapters]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import polymodal
from polymodal.config import from_dict, load_json
from polymodal.eval.assistant_tasks import ask_many
from polymodal.eval.tasks import run_task
from polymodal.modules.adapters import ADAPTER_TYPES
from polymodal.train.assistant_recipe import AssistantRecipe
from polymodal.train.recipe import RECIPE_DIR, run_recipe


def recipe_for(adapter: str, args) -> AssistantRecipe:
    data = load_json(RECIPE_DIR / "tiny-assistant-base.json")
    data["name"] = f"bench-{adapter}"
    data["model_overrides"] = {"adapter": {"type": adapter}}
    data["eval_tasks"] = []
    data["stages"]["align"]["train"]["steps"] = args.align_steps
    data["stages"]["instruct"]["train"]["steps"] = args.instruct_steps
    for stage in data["stages"].values():
        stage["train"]["ckpt_every"] = 0
    return from_dict(AssistantRecipe, data, where="adapters benchmark")


def share_lm_stage(out: Path, lm_from: Path | None) -> None:
    """Reuse a finished LM stage so every adapter starts from the same pre-trained LM."""
    if lm_from is not None and lm_from.is_dir() and not (out / "lm").exists():
        shutil.copytree(lm_from, out / "lm")


def training_speed(stage_dir: Path) -> float:
    """Median samples/s logged by the trainer in a stage (also right when the stage was resumed, finished)."""
    rates = [
        json.loads(line).get("samples_per_s")
        for line in (stage_dir / "metrics.jsonl").read_text().splitlines()
    ]
    rates = sorted(r for r in rates if r)
    return rates[len(rates) // 2] if rates else float("nan")


def generation_speed(pipeline, images: list) -> float:
    """New tokens per second for greedy short captions of ``images`` (batched like the eval tasks)."""
    start = time.perf_counter()
    replies = ask_many(pipeline, images, ["describe the image briefly."] * len(images), max_tokens=48)
    elapsed = time.perf_counter() - start
    tokens = sum(
        len(pipeline.tokenizer.tokenizer.encode(r, add_special_tokens=False).ids) + 1 for r in replies
    )
    return tokens / elapsed


def measure(adapter: str, args) -> dict:
    from polymodal.data.worlds.shapes import ShapesWorld

    out = Path(args.out) / adapter
    out.mkdir(parents=True, exist_ok=True)
    share_lm_stage(out, Path(args.lm_from) if args.lm_from else None)
    run_recipe(recipe_for(adapter, args), out)
    if args.lm_from is None:  # the first adapter trained the LM: the others copy it
        args.lm_from = str(out / "lm")
    pipeline = polymodal.load(out / "model")
    model = pipeline.model
    vqa = run_task(pipeline, "shapes-vqa", n=args.n)["metrics"]
    caption = run_task(pipeline, "shapes-caption", n=args.n)["metrics"]
    world = ShapesWorld(split="test")
    images = [world.render(world.scene(i)) for i in range(64)]
    return {
        "adapter": adapter,
        "vqa": vqa["vqa_accuracy"],
        "vqa_heldout": vqa["vqa_accuracy_heldout"],
        "cider": caption["cider"],
        "visual_tokens": model.adapter.num_tokens(model.source_tokens),
        "adapter_params": sum(p.numel() for p in model.adapter.parameters()),
        "train_samples_per_s": training_speed(out / "instruct"),
        "generate_tokens_per_s": generation_speed(pipeline, images),
    }


def table(rows: list[dict]) -> str:
    base = next((r for r in rows if r["adapter"] == "mlp"), rows[0])
    lines = [
        "| adapter | VQA (test) | VQA (held-out pairs) | CIDEr | visual tokens / image | adapter params | "
        "train samples/s (x MLP) | generate tokens/s (x MLP) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        train = r["train_samples_per_s"] / base["train_samples_per_s"]
        gen = r["generate_tokens_per_s"] / base["generate_tokens_per_s"]
        lines.append(
            f"| {r['adapter']} | {r['vqa']:.3f} | {r['vqa_heldout']:.3f} | {r['cider']:.2f} | {r['visual_tokens']} | "
            f"{r['adapter_params'] / 1e3:.0f} k | {r['train_samples_per_s']:.0f} ({train:.2f}x) | "
            f"{r['generate_tokens_per_s']:.0f} ({gen:.2f}x) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--align-steps", type=int, default=150)
    parser.add_argument("--instruct-steps", type=int, default=500)
    parser.add_argument("--n", type=int, default=200, help="evaluation scenes per task")
    parser.add_argument("--out", default="runs/bench-adapters")
    parser.add_argument(
        "--lm-from", default="runs/tiny-assistant-base/lm", help="a finished lm stage to share"
    )
    parser.add_argument("--adapters", default=",".join(ADAPTER_TYPES))
    args = parser.parse_args()
    if args.lm_from and not Path(args.lm_from).is_dir():
        args.lm_from = None
    rows = []
    for adapter in args.adapters.split(","):
        rows.append(measure(adapter, args))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nSame data and budget: {args.align_steps} align + {args.instruct_steps} instruct steps of 32.\n")
    print(table(rows))


if __name__ == "__main__":
    main()
