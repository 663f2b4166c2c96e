"""``polymodal caption``, ``ask`` and ``chat``: the assistant on the command line (torch imported lazily)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from polymodal.cli import app, load_with, run_or_fail

AssistantOpt = Annotated[str, typer.Option("--model", "-m", help="Assistant: bundled name or model folder.")]
MaxTokensOpt = Annotated[int, typer.Option(help="Most tokens to generate.")]
TemperatureOpt = Annotated[float, typer.Option(help="0 = greedy; higher samples more freely.")]


def _assistant(model: str):
    return load_with(model, "chat", "an assistant", "tiny-assistant")


@app.command()
def caption(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    style: Annotated[str, typer.Option(help="short | detailed")] = "short",
    model: AssistantOpt = "tiny-assistant",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Caption images."""
    pipeline = _assistant(model)
    texts = [run_or_fail(lambda p=p: pipeline.caption(str(p), style=style)) for p in images]
    if as_json:
        typer.echo(json.dumps([{"image": str(p), "caption": t} for p, t in zip(images, texts, strict=True)]))
        return
    for path, text in zip(images, texts, strict=True):
        typer.echo(f"{path}: {text}")


@app.command()
def ask(
    image: Annotated[Path, typer.Argument(help="Image file.")],
    question: Annotated[str, typer.Argument(help="The question, e.g. 'how many shapes are there?'.")],
    model: AssistantOpt = "tiny-assistant",
    max_tokens: MaxTokensOpt = 64,
    temperature: TemperatureOpt = 0.0,
) -> None:
    """Answer a question about an image."""
    pipeline = _assistant(model)
    typer.echo(
        run_or_fail(
            lambda: pipeline.ask(str(image), question, max_tokens=max_tokens, temperature=temperature)
        )
    )


@app.command()
def chat(
    image: Annotated[
        Path | None, typer.Option(help="Image to talk about (sent with the first message).")
    ] = None,
    model: AssistantOpt = "tiny-assistant",
    max_tokens: MaxTokensOpt = 96,
    temperature: TemperatureOpt = 0.0,
) -> None:
    """Interactive chat with streaming replies; an empty line or Ctrl-D ends it."""
    from polymodal.data.images import load_image

    pipeline = _assistant(model)
    images = [run_or_fail(lambda: load_image(str(image)))] if image else []
    messages: list[dict[str, str]] = []
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if not line:
            break
        content = pipeline.user_prompt(line) if images and not messages else line
        turn = [*messages, {"role": "user", "content": content}]
        typer.echo("assistant> ", nl=False)
        reply = ""
        try:
            for piece in pipeline.chat(
                turn, images=images, max_tokens=max_tokens, temperature=temperature, stream=True
            ):
                typer.echo(piece, nl=False)
                reply += piece
        except ValueError as e:  # e.g. the conversation outgrew the context: say so, keep the session
            typer.secho(f"\nerror: {e}", fg=typer.colors.RED, err=True)
            continue
        typer.echo("")
        messages = [*turn, {"role": "assistant", "content": reply.strip()}]
