"""``polymodal transcribe`` and ``polymodal voice``: speech on the command line (torch imported lazily)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from polymodal.cli import app, load_with, run_or_fail

SpeechOpt = Annotated[
    str, typer.Option("--model", "-m", help="Speech model: bundled name, folder or Whisper.")
]


def _speech(model: str):
    return load_with(model, "transcribe", "a speech model", "tiny-asr")


@app.command()
def transcribe(
    files: Annotated[list[Path], typer.Argument(help="Audio files (WAV, FLAC or OGG).")],
    model: SpeechOpt = "tiny-asr",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Transcribe speech in audio files."""
    pipeline = _speech(model)
    texts = [run_or_fail(lambda f=f: pipeline.transcribe([f])[0]) for f in files]
    if as_json:
        typer.echo(json.dumps([{"file": str(f), "text": t} for f, t in zip(files, texts, strict=True)]))
        return
    for path, text in zip(files, texts, strict=True):
        typer.echo(f"{path}: {text}")


@app.command()
def voice(
    audio: Annotated[Path, typer.Argument(help="The spoken question (WAV, FLAC or OGG).")],
    image: Annotated[Path, typer.Option(help="The image the question is about.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the spoken answer (WAV).")] = Path(
        "answer.wav"
    ),
    speech_model: Annotated[str, typer.Option(help="Speech model for the question.")] = "tiny-asr",
    assistant: Annotated[str, typer.Option(help="Assistant that answers.")] = "tiny-assistant",
    speaker: Annotated[str, typer.Option(help="espeak-ng voice of the answer.")] = "en",
) -> None:
    """Speech -> text -> assistant -> speech: answer a spoken question about an image, out loud."""
    import soundfile as sf

    from polymodal.cli_assistant import _assistant
    from polymodal.pipelines.voice import voice_reply

    recogniser, answerer = _speech(speech_model), _assistant(assistant)
    reply = run_or_fail(lambda: voice_reply(recogniser, answerer, audio, str(image), voice=speaker))
    sf.write(out, reply.audio, reply.sample_rate, subtype="PCM_16")
    typer.echo(f"heard: {reply.question}\nanswer: {reply.answer}\nwrote {out}")
