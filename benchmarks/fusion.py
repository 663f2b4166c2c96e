"""Which fusion strategy? Every fusion of ``polymodal.modules.fusion`` (and ALBEF's query-stream style of the
transformer) trained on the shapes world with the same data and budget, measured side by side in one run.

Every strategy gets the tiny-fusion-base recipe with the same frozen tiny-clip towers (so the budget goes to the
fusion and its heads, and every fusion reads the same features), the same batches and steps, and the heads
it can feed: pooled fusions give no per-token outputs, so they train ITC + ITM + VQA without MLM / MIM;
ALBEF's style updates only the text stream, so it has no MIM. The curriculum is the recipe's (single-modality
tasks first, then joint ones, ITM on easy negatives before hard ones; phase bounds scaled to the budget).
Each strategy trains twice: with the recipe's modality dropout in the joint phases and without it. It prints one Markdown table: VQA accuracy on test scenes and on held-out-pair scenes, ITM
accuracy (the shapes-mismatch probe: true caption accepted and contradicting caption rejected), fusion
parameters, training samples/s (x the joint transformer), and VQA accuracy with the image missing at test
time, without and with modality dropout in training (the question alone; its ceiling is the answer prior).

    python benchmarks/fusion.py [--steps 100] [--batch 16] [--n 200] [--out runs/bench-fusion]
    python benchmarks/fusion.py --quick   # a tiny budget that checks the whole pipeline in minutes
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polymodal
from polymodal.config import from_dict, load_json
from polymodal.eval.tasks import run_task
from polymodal.modules.fusion import FUSIONS, FusionConfig
from polymodal.train.fusion_recipe import FusionRecipe
from polymodal.train.recipe import RECIPE_DIR, run_recipe

STRATEGIES: dict[str, dict] = {name: {"type": name} for name in FUSIONS} | {
    "transformer-albef": {"type": "transformer", "style": "albef", "query": "text"}
}
TOKEN_HEADS = {"mlm": "text", "mim": "image"}


def heads_for(fusion: dict) -> list[str]:
    """The heads a fusion can feed: MLM / MIM only where it returns fused text / image tokens."""
    config = from_dict(FusionConfig, {"width": 128, "depth": 2, "heads": 4, **fusion}, where="benchmark")
    fused = FUSIONS[config.type].token_outputs(config, ["image", "text"])
    return ["itc", "itm", *[h for h, m in TOKEN_HEADS.items() if m in fused], "vqa"]


def curriculum_for(base: dict, heads: list[str], dropout: bool, scale: float) -> dict:
    """The recipe's phases restricted to ``heads``, their bounds scaled by ``scale`` (budget / recipe
    steps); without ``dropout`` the joint phases drop nothing (the first, single-modality phase hides the
    other modality by design)."""
    phases = []
    for i, base_phase in enumerate(base["phases"]):
        phase = dict(base_phase, tasks={t: w for t, w in base_phase["tasks"].items() if t in heads})
        if phase.get("until_step") is not None:
            phase["until_step"] = max(len(phases) + 1, round(phase["until_step"] * scale))
        if i > 0 and not dropout:
            phase["modality_dropout"] = {}
        phases.append(phase)
    return {"phases": phases}


def recipe_for(strategy: str, dropout: bool, args) -> FusionRecipe:
    data = load_json(RECIPE_DIR / "tiny-fusion-base.json")
    fusion = STRATEGIES[strategy]
    heads = heads_for(fusion)
    data["name"] = f"bench-{strategy}-{'dropout' if dropout else 'plain'}"
    data["model_overrides"] = {**data.get("model_overrides", {}), "fusion": fusion, "heads": heads}
    data["freeze_towers"] = True
    scale = args.steps / data["train"]["steps"]
    data["curriculum"] = curriculum_for(data["curriculum"], heads, dropout, scale)
    data["eval_tasks"] = []
    data["batch_size"] = args.batch
    data["data"]["questions_per_scene"] = args.questions
    data["train"] |= {"steps": args.steps, "warmup_steps": max(1, args.steps // 10), "ckpt_every": 0}
    data["train"]["log_every"] = max(1, min(25, args.steps // 4))
    return from_dict(FusionRecipe, data, where="fusion benchmark")


def training_speed(run_dir: Path, after_step: int) -> float:
    """Median samples/s logged after ``after_step`` (the joint phases: the first runs fewer tasks)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = sorted(r["samples_per_s"] for r in records if r.get("samples_per_s") and r["step"] > after_step)
    return rates[len(rates) // 2] if rates else float("nan")


def train_and_load(strategy: str, dropout: bool, args):
    out = Path(args.out) / f"{strategy}-{'dropout' if dropout else 'plain'}"
    recipe = recipe_for(strategy, dropout, args)
    run_recipe(recipe, out)
    return polymodal.load(out / "model"), training_speed(out, recipe.curriculum.phases[0].until_step)


def measure(strategy: str, args) -> dict:
    """Train ``strategy`` with and without modality dropout; every number the table prints."""
    plain, speed = train_and_load(strategy, False, args)
    with_dropout, _ = train_and_load(strategy, True, args)
    vqa = run_task(plain, "shapes-vqa", n=args.n)["metrics"]
    itm = run_task(plain, "shapes-mismatch", n=args.n)["metrics"]
    model = plain.model
    return {
        "strategy": strategy,
        "vqa": vqa["vqa_accuracy"],
        "vqa_heldout": vqa["vqa_accuracy_heldout"],
        "itm": itm["accuracy"],
        "fusion_params": sum(p.numel() for p in model.fusion.parameters()),
        "trainable_params": sum(p.numel() for n, p in model.named_parameters() if "_encoder." not in n),
        "train_samples_per_s": speed,
        "vqa_no_image_plain": run_task(plain, "shapes-vqa-blind", n=args.n)["metrics"]["vqa_accuracy"],
        "vqa_no_image_dropout": run_task(with_dropout, "shapes-vqa-blind", n=args.n)["metrics"][
            "vqa_accuracy"
        ],
        "vqa_dropout": run_task(with_dropout, "shapes-vqa", n=args.n)["metrics"]["vqa_accuracy"],
        "heads": list(model.heads),
    }


def table(rows: list[dict]) -> str:
    base = next((r for r in rows if r["strategy"] == "transformer"), rows[0])
    lines = [
        "| fusion | heads | VQA (test) | VQA (held-out pairs) | ITM (mismatch probe) | fusion params | "
        "train samples/s (x transformer) | VQA, image missing: no dropout | with dropout | VQA with dropout |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        speed = r["train_samples_per_s"] / base["train_samples_per_s"]
        heads = "+".join(h for h in r["heads"])
        lines.append(
            f"| {r['strategy']} | {heads} | {r['vqa']:.3f} | {r['vqa_heldout']:.3f} | {r['itm']:.3f} | "
            f"{r['fusion_params'] / 1e3:.0f} k | {r['train_samples_per_s']:.0f} ({speed:.2f}x) | "
            f"{r['vqa_no_image_plain']:.3f} | {r['vqa_no_image_dropout']:.3f} | {r['vqa_dropout']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per run (phases scaled)")
    parser.add_argument("--batch", type=int, default=16, help="scenes per step")
    parser.add_argument("--questions", type=int, default=3, help="VQA questions per scene")
    parser.add_argument("--n", type=int, default=200, help="evaluation scenes per task")
    parser.add_argument("--out", default="runs/bench-fusion")
    parser.add_argument("--fusions", default=",".join(STRATEGIES), help="comma-separated strategies")
    parser.add_argument("--quick", action="store_true", help="tiny budget: 8 steps of 8 scenes, n=20")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.batch, args.n = 8, 8, 20
        args.out = args.out + "-quick"
    unknown = sorted(set(args.fusions.split(",")) - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown fusions {unknown}; choose from {', '.join(STRATEGIES)}")
    if args.steps < 4:
        parser.error("--steps must be >= 4 (one per curriculum phase and more)")
    rows = []
    for strategy in args.fusions.split(","):
        rows.append(measure(strategy, args))
        print(json.dumps(rows[-1]), flush=True)
    print(
        f"\nSame data and budget: {args.steps} steps of {args.batch} scenes ({args.questions} questions each) "
        f"through the tiny-fusion-base curriculum scaled to that length; towers frozen from tiny-clip; "
        f"n={args.n} eval scenes.\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
