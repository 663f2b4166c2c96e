"""The audio part of ``polymodal demo``: zero-shot sound classification (tiny-clap), transcription of
voices never heard in training (tiny-asr), captions of sounds (tiny-audio-assistant) and the voice
assistant (a spoken question about a scene answered out loud), each checked against the ground truth."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

DEMO_CLIPS = 6
SPOKEN_QUESTION = "how many shapes are there"


def _classify_sounds(clap, console: Console, seed: int) -> float:
    from polymodal.data.worlds.tones import KINDS, TonesWorld, kind_prompts

    world = TonesWorld(seed=seed, split="test", min_events=1, max_events=1)
    clips = [world.clip(i) for i in range(DEMO_CLIPS)]
    labels = [kind_prompts(k)[0] for k in KINDS]
    probs = clap.classify([world.render(c) for c in clips], labels, templates=["{}"], sample_rate=16000)
    table = Table(title=f"zero-shot sound classification · {clap.name}")
    for col in ("clip", "truth", "predicted", "p"):
        table.add_column(col)
    correct = 0
    for i, (clip, p) in enumerate(zip(clips, probs, strict=True)):
        truth, best = labels[KINDS.index(clip.events[0].kind)], max(p, key=p.get)
        correct += best == truth
        table.add_row(f"tone_{i}", truth, f"{best} ({'ok' if best == truth else 'wrong'})", f"{p[best]:.2f}")
    console.print(table)
    return correct / len(clips)


def _transcribe_voices(asr, console: Console, seed: int) -> float:
    from polymodal.data.worlds.spoken import SpokenConfig, SpokenWorld
    from polymodal.eval.asr import word_error_rate

    world = SpokenWorld(SpokenConfig(seed=seed, question_share=0.5))
    samples = world.samples(range(DEMO_CLIPS), "test")
    heard = asr.transcribe([s.waveform for s in samples], sample_rate=samples[0].sample_rate)
    table = Table(title=f"speech recognition · {asr.name} (voices never heard in training)")
    for col in ("voice", "said", "heard"):
        table.add_column(col)
    for s, h in zip(samples, heard, strict=True):
        table.add_row(s.voice, s.text, h)
    console.print(table)
    return word_error_rate([s.text for s in samples], heard)


def _caption_sounds(ears, console: Console, seed: int) -> None:
    from polymodal.data.audio_instructions import detailed_caption
    from polymodal.data.worlds.tones import TonesWorld

    world = TonesWorld(seed=seed, split="test")
    table = Table(title=f"sound captions · {ears.name}")
    for col in ("clip", "truth", "caption"):
        table.add_column(col)
    for i in range(DEMO_CLIPS // 2):
        clip = world.clip(i)
        table.add_row(f"clip_{i}", detailed_caption(clip), ears.caption(world.render(clip), style="detailed"))
    console.print(table)


def _voice(asr, assistant, out: Path, console: Console) -> str:
    import soundfile as sf

    from polymodal.data.worlds.shapes import ShapesWorld
    from polymodal.data.worlds.shapes_scene import NUMBER_WORDS
    from polymodal.pipelines.voice import speak, voice_reply

    scene_world = ShapesWorld(seed=3, split="test", min_objects=2, max_objects=3)
    image = scene_world.render(scene_world.scene(0))
    question = speak(SPOKEN_QUESTION, voice="en-us+m4")
    reply = voice_reply(asr, assistant, question, image, sample_rate=16000)
    sf.write(out / "voice_question.wav", question, 16000, subtype="PCM_16")
    sf.write(out / "voice_answer.wav", reply.audio, reply.sample_rate, subtype="PCM_16")
    truth = NUMBER_WORDS[len(scene_world.scene(0))]
    console.print(
        f"voice assistant: heard {reply.question!r} · answered {reply.answer!r} (truth: {truth!r}) · "
        f"wrote {out / 'voice_answer.wav'}"
    )
    return reply.answer


def run_audio_demo(models: dict[str, Any], out: Path, console: Console, seed: int = 5) -> dict[str, Any]:
    """The audio demo with whichever of ``clap``, ``asr``, ``ears`` and ``assistant`` are given; speech parts
    need espeak-ng and are skipped (with a note) without it."""
    results: dict[str, Any] = {}
    if models.get("clap") is not None:
        results["sound_classification_accuracy"] = _classify_sounds(models["clap"], console, seed)
    has_tts = shutil.which("espeak-ng") is not None
    if not has_tts and models.get("asr") is not None:
        console.print("speech parts skipped: espeak-ng is not installed (apt-get install espeak-ng)")
    if has_tts and models.get("asr") is not None:
        results["asr_wer"] = _transcribe_voices(models["asr"], console, seed)
        if models.get("assistant") is not None:
            results["voice_answer"] = _voice(models["asr"], models["assistant"], out, console)
    if models.get("ears") is not None:
        _caption_sounds(models["ears"], console, seed)
    return results
