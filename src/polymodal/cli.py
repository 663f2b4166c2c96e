"""The ``polymodal`` command line. Heavy imports (torch, faiss) happen inside commands, so --help is instant."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from polymodal.allocator import keep_freed_memory

app = typer.Typer(
    name="polymodal",
    help="Build, train, evaluate and serve multimodal models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Bundled name, model folder or Hugging Face id.")
]
PrecisionOpt = Annotated[str, typer.Option(help="Inference precision: fp32 | bf16 | int8.")]


def fail(message: str) -> None:
    """Print a clear error and exit with status 2 (no traceback for expected user errors)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def load_with(model: str, method: str, what: str, suggestion: str):
    """Load ``model`` and fail clearly unless its pipeline has ``method`` (e.g. an assistant's ``chat``)."""
    pipeline = _load(model)
    if not hasattr(pipeline, method):
        fail(f"{model} is not {what} (it cannot {method}); try --model {suggestion}")
    return pipeline


def run_or_fail(action):
    """Run ``action``; bad input (a ValueError, which AudioError is, or an unreadable image) or a failing
    espeak-ng ends the command with the message instead of a traceback."""
    from polymodal.data.images import ImageLoadError
    from polymodal.data.worlds.spoken import EspeakError

    try:
        return action()
    except (ImageLoadError, ValueError, EspeakError) as e:
        fail(str(e))


def _load(model: str, precision: str = "fp32"):
    from polymodal.hub import load

    try:
        return load(model, precision=precision)
    except (FileNotFoundError, ValueError) as e:  # missing, unsupported, corrupt or misconfigured models
        fail(str(e))


@app.command("list-models")
def list_models_cmd() -> None:
    """List named architectures and the trained models bundled with polymodal."""
    from rich.console import Console
    from rich.table import Table

    from polymodal.hub import bundled_models
    from polymodal.registry import get_spec, list_models

    table = Table(title="architectures (polymodal.create_model)")
    table.add_column("name")
    table.add_column("description")
    for name in list_models():
        table.add_row(name, get_spec(name).description)
    console = Console()
    console.print(table)
    console.print("trained models (polymodal.load): " + (", ".join(bundled_models()) or "none"))


@app.command()
def train(
    recipe: Annotated[
        str, typer.Option(help="Recipe name (see polymodal/recipes) or path to a recipe JSON.")
    ],
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/<recipe>).")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Dotted override, e.g. train.lr=3e-4.")
    ] = None,
) -> None:
    """Train from a recipe; resumes from the run folder's latest checkpoint. Works under torchrun."""
    from polymodal.config import ConfigError
    from polymodal.train.recipe import load_recipe, run_recipe

    try:
        spec = load_recipe(recipe, set_ or [])
    except (ConfigError, FileNotFoundError) as e:
        fail(str(e))
    try:
        summary = run_recipe(spec, out or Path("runs") / spec.name)
    except ConfigError as e:  # found while building the run: a missing init_from, mismatched shapes
        fail(str(e))
    if "model_dir" in summary:  # rank 0 (the only rank that saves and evaluates) reports
        typer.echo(json.dumps(summary, indent=2))


@app.command("eval")
def eval_cmd(
    model: Annotated[str, typer.Argument(help="Bundled model name or model folder.")],
    task: Annotated[
        str,
        typer.Argument(
            help="digits-zeroshot | shapes-zeroshot | shapes-retrieval (dual encoders); shapes-caption | "
            "shapes-vqa | shapes-grounding | shapes-hallucination (assistants); shapes-vqa | shapes-mismatch | "
            "shapes-rerank | shapes-vqa-blind (fusion encoders)"
        ),
    ],
    n: Annotated[int | None, typer.Option(help="Evaluate on the first N samples only.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    precision: PrecisionOpt = "fp32",
    rerank: Annotated[
        int,
        typer.Option(
            help="shapes-retrieval with a fusion encoder: re-score each query's ITC top-K with ITM "
            "(adds *_rerank recalls and the R@1 lift); 0 = off."
        ),
    ] = 0,
) -> None:
    """Evaluate a model on a named task."""
    from polymodal.eval.tasks import RERANK_TASKS, TASKS, run_task

    if task not in TASKS:
        fail(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if rerank < 0 or (rerank and task not in RERANK_TASKS):
        fail(f"--rerank K (K >= 1) applies to {', '.join(RERANK_TASKS)} only, not {task!r} with K={rerank}")
    pipeline = _load(model, precision)
    if rerank and not hasattr(pipeline, "match_tokens"):
        fail(f"--rerank needs a fusion encoder with an ITM head; {model} is not one")
    result = run_task(pipeline, task, n=n, rerank=rerank)
    if as_json:
        typer.echo(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['model']} on {task} (n={result['n']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result["metrics"].items():
        if isinstance(value, int | float):
            table.add_row(key, f"{value:.4f}")
    Console().print(table)


@app.command()
def embed(
    inputs: Annotated[
        list[str], typer.Argument(help="Texts, or image paths with --images (audio: --audio).")
    ],
    model: ModelOpt = "tiny-clip",
    images: Annotated[bool, typer.Option("--images", help="Treat inputs as image files.")] = False,
    audio: Annotated[
        bool, typer.Option("--audio", help="Treat inputs as audio files (an audio model).")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Write a .npy file instead of printing JSON.")] = None,
    precision: PrecisionOpt = "fp32",
) -> None:
    """Embed texts, images or audio; prints JSON lists or writes a .npy array."""
    import numpy as np

    from polymodal.data.images import ImageLoadError

    if images and audio:
        fail("give --images or --audio, not both")
    pipeline = _load(model, precision)
    try:
        if audio:
            vectors = pipeline.embed_audio(inputs)
        else:
            vectors = pipeline.embed_image(inputs) if images else pipeline.embed_text(inputs)
    except (ImageLoadError, ValueError) as e:  # AudioError is a ValueError
        fail(str(e))
    if out:
        np.save(out, vectors)
        typer.echo(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings to {out}")
    else:
        typer.echo(json.dumps([[round(float(v), 6) for v in row] for row in vectors]))


@app.command()
def index(
    folder: Annotated[Path, typer.Argument(help="Folder of images (optional captions.csv/jsonl).")],
    out: Annotated[Path, typer.Option(help="Index folder to write.")] = Path("index"),
    model: ModelOpt = "tiny-clip",
    kind: Annotated[str, typer.Option(help="flat (exact) | hnsw (approximate, large galleries)")] = "flat",
    precision: PrecisionOpt = "fp32",
) -> None:
    """Embed every image in a folder and save a FAISS index with its metadata. Bad files are skipped."""
    from polymodal.search import build_folder_index

    try:
        report = build_folder_index(_load(model, precision), folder, out, kind=kind)
    except FileNotFoundError as e:
        fail(str(e))
    typer.echo(report)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Text query, or an image path with --image.")],
    index_dir: Annotated[Path, typer.Option("--index", help="Index folder from `polymodal index`.")] = Path(
        "index"
    ),
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Default: the model the index was built with.")
    ] = None,
    k: Annotated[int, typer.Option("-k", help="Results to show.")] = 5,
    image: Annotated[bool, typer.Option("--image", help="The query is an image file.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Search an index by text (or by image)."""
    from polymodal.index import EmbeddingIndexError
    from polymodal.search import open_index, search_index

    try:
        idx = open_index(index_dir)
        pipeline = _load(model or idx.model_name or "tiny-clip")
        hits = search_index(pipeline, idx, query, k=k, by_image=image)
    except (EmbeddingIndexError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps([{"score": h.score, **h.metadata} for h in hits]))
        return
    for rank, hit in enumerate(hits, 1):
        caption = f"  ({hit.metadata['caption']})" if hit.metadata.get("caption") else ""
        typer.echo(f"{rank:2d}. {hit.score:.3f}  {hit.metadata.get('path', hit.id)}{caption}")


@app.command()
def classify(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    labels: Annotated[str, typer.Option(help="Comma-separated candidate labels.")],
    model: ModelOpt = "tiny-clip",
    template: Annotated[
        list[str] | None, typer.Option(help="Prompt template(s) with {}; repeat to ensemble.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Zero-shot classify images among the given labels."""
    from polymodal.data.images import ImageLoadError

    names = [x.strip() for x in labels.split(",") if x.strip()]
    pipeline = _load(model)
    try:
        results = pipeline.classify([str(p) for p in images], names, templates=template)
    except (ImageLoadError, ValueError) as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps([{"image": str(p), "probs": r} for p, r in zip(images, results, strict=True)]))
        return
    for path, probs in zip(images, results, strict=True):
        best = max(probs, key=probs.get)
        typer.echo(f"{path}: {best} ({probs[best]:.2f})")


@app.command()
def convert(
    src: Annotated[str, typer.Argument(help="Bundled name, model folder, transformers folder or hub id.")],
    dst: Annotated[Path, typer.Argument(help="polymodal model folder to write.")],
    dtype: Annotated[str, typer.Option(help="float32 | float16 | bfloat16 weights.")] = "float32",
) -> None:
    """Convert any loadable model (e.g. a Hugging Face CLIP) to a polymodal folder, optionally re-typed."""
    import shutil

    import torch

    from polymodal.hub import resolve
    from polymodal.interop import is_hub_id

    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in dtypes:
        fail(f"dtype must be one of {', '.join(dtypes)}")
    pipeline = _load(src)
    pipeline.save(dst, dtype=dtypes[dtype])
    card = None if is_hub_id(src) else resolve(src) / "README.md"  # the source's model card, if any
    size = sum(f.stat().st_size for f in dst.iterdir()) / 1e6
    if card is not None and card.is_file():
        shutil.copyfile(card, dst / "README.md")
        with open(dst / "README.md", "a") as f:
            f.write(f"\nThis folder stores the weights as {dtype} ({size:.1f} MB in all).\n")
    typer.echo(f"wrote {dst} ({dtype} weights, {size:.1f} MB)")


app.command("export", hidden=True, help="Alias of convert.")(convert)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the gallery, index and contact sheets.")] = Path(
        "demo_out"
    ),
    model: ModelOpt = "tiny-clip",
    gallery_size: Annotated[int, typer.Option(help="Images to generate and index.")] = 300,
    assistant: Annotated[
        str, typer.Option(help="Assistant for captions and answers ('' skips that part).")
    ] = "tiny-assistant",
    audio: Annotated[
        bool, typer.Option(help="Also classify sounds, transcribe speech and answer aloud.")
    ] = True,
) -> None:
    """The main job: generate a gallery, index it, search it, classify zero-shot, write contact sheets;
    then caption, answer and ground a few images with the assistant; then the audio models."""
    from polymodal.demo import run_demo

    helper = _load(assistant) if assistant else None
    ears = {"clap": "tiny-clap", "asr": "tiny-asr", "ears": "tiny-audio-assistant"} if audio else {}
    audio_models = {role: _load(name) for role, name in ears.items()} | (
        {"assistant": helper} if audio else {}
    )
    run_demo(
        _load(model), out, gallery_size=gallery_size, assistant=helper, audio_models=audio_models or None
    )


# the command modules register caption, ask, chat (assistant), transcribe, voice (audio) and serve on the app
from polymodal import cli_assistant, cli_audio, cli_serve  # noqa: E402, F401


def main() -> None:
    """Console-script entry point."""
    keep_freed_memory()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
