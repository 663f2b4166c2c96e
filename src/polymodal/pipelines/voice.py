"""The voice assistant: speech -> text (a speech model) -> answer (an assistant, with an image) -> speech.

Text to speech is espeak-ng (a Debian package), the same engine the spoken world is made with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SILENCE_PEAK = 1e-3  # a clip whose loudest sample is below this (-60 dBFS) holds no speech


@dataclass
class VoiceReply:
    question: str  # what the speech model heard
    answer: str  # what the assistant said
    audio: np.ndarray  # the answer spoken: (samples,) float32 mono
    sample_rate: int  # of audio


def speak(
    text: str, voice: str = "en", speed: int = 160, pitch: int = 50, sample_rate: int = 16000
) -> np.ndarray:
    """``text`` spoken by espeak-ng: (samples,) float32 mono at ``sample_rate``."""
    from polymodal.data.worlds.spoken import Utterance, synthesize

    if not text.strip():
        raise ValueError("nothing to say: the text is empty")
    return synthesize(Utterance(text.strip(), voice, speed, pitch), sample_rate)


def voice_reply(
    speech_model, assistant, audio: Any, image: Any, sample_rate: int | None = None, voice: str = "en"
) -> VoiceReply:
    """Transcribe ``audio`` (a path, bytes or array at ``sample_rate``), ask ``assistant`` about ``image``
    and speak its answer. An empty transcript is an error (the assistant would answer nothing)."""
    wave = speech_model.load_audio([audio], sample_rate)[0]
    if float(np.abs(wave).max(initial=0.0)) < SILENCE_PEAK:
        raise ValueError("the audio is silent: there is no speech to recognise")
    rate = speech_model.audio_processor.config.sample_rate
    question = speech_model.transcribe([wave], sample_rate=rate)[0].strip()
    if not question:
        raise ValueError("no words were recognised in the audio; speak closer or louder and try again")
    answer = assistant.ask(image, question if question.endswith("?") else question + "?")
    return VoiceReply(question, answer, speak(answer, voice=voice, sample_rate=rate), rate)
