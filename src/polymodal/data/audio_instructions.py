"""Instruction data for an assistant that hears, derived from the tones world's event lists.

Kinds: short captions (the events in order), detailed captions (count, then each event with loudness and
pitch), questions about the clip (count, kind, pitch, loudness, duration, order, existence) and multi-turn
conversations mixing them. Every answer is exact with respect to the clip's ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from polymodal.config import ConfigError
from polymodal.data.chat import AUDIO_TOKEN
from polymodal.data.instructions import KindMix
from polymodal.data.worlds.shapes_scene import NUMBER_WORDS
from polymodal.data.worlds.tones import MAX_EVENTS, ToneClip, TonesWorld, questions, sequence_caption

SHORT_PROMPTS = ("describe the sound briefly.", "what do you hear?", "give a short caption of the sound.")
DETAILED_PROMPTS = ("describe the sound in detail.", "give a detailed description of the sound.")
AUDIO_INSTRUCTION_KINDS = ("caption_short", "caption_detailed", "vqa", "conversation")


def short_caption(clip: ToneClip) -> str:
    """'a burst of noise then a sine tone'."""
    return sequence_caption(clip, 0)


def detailed_caption(clip: ToneClip) -> str:
    """'two sounds: a loud low burst of noise then a quiet high sine tone.'"""
    noun = "sound" if len(clip) == 1 else "sounds"
    return f"{NUMBER_WORDS[len(clip)]} {noun}: {sequence_caption(clip, 2)}."


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _single(clip: ToneClip, kind: str, rng: np.random.Generator) -> tuple[str, str]:
    if kind == "caption_short":
        return _pick(rng, SHORT_PROMPTS), short_caption(clip)
    if kind == "caption_detailed":
        return _pick(rng, DETAILED_PROMPTS), detailed_caption(clip)
    if kind == "vqa":
        qa = _pick(rng, questions(clip))
        return qa.question, qa.answer
    raise ValueError(f"unknown instruction kind {kind!r}; expected one of {AUDIO_INSTRUCTION_KINDS}")


def audio_conversation(
    clip: ToneClip, kind: str, rng: np.random.Generator, turns: int = 3
) -> list[dict[str, str]]:
    """One training conversation about ``clip``; the audio comes with the first user message."""
    kinds = (
        [kind]
        if kind != "conversation"
        else [_pick(rng, ("caption_short", "vqa", "vqa")) for _ in range(turns)]
    )
    messages: list[dict[str, str]] = []
    for t, sub in enumerate(kinds):
        prompt, answer = _single(clip, sub, rng)
        content = f"{AUDIO_TOKEN} {prompt}" if t == 0 else prompt
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]
    return messages


@dataclass
class AudioInstructionDataConfig:
    mix: dict[str, float] = field(
        default_factory=lambda: {
            "caption_short": 0.2,
            "caption_detailed": 0.2,
            "vqa": 0.45,
            "conversation": 0.15,
        }
    )  # instruction kind -> sampling weight
    min_events: int = 1  # sound events per clip, lower bound
    max_events: int = MAX_EVENTS  # sound events per clip, upper bound
    seed: int = 0  # world seed (clip i of the train split is fixed by it)

    def validate(self) -> None:
        unknown = sorted(set(self.mix) - set(AUDIO_INSTRUCTION_KINDS))
        if unknown or not self.mix or min(self.mix.values()) < 0 or sum(self.mix.values()) <= 0:
            raise ConfigError(
                f"AudioInstructionDataConfig.mix needs non-negative weights over {AUDIO_INSTRUCTION_KINDS}, "
                f"got {self.mix}"
            )


class AudioInstructionSamples:
    """Sample ``i`` = (waveform, conversation): a pure function of (config, i), for exact resumes."""

    def __init__(self, config: AudioInstructionDataConfig, split: str = "train", sample_rate: int = 16000):
        config.validate()
        self.config = config
        self.world = TonesWorld(
            seed=config.seed,
            split=split,
            sample_rate=sample_rate,
            min_events=config.min_events,
            max_events=config.max_events,
        )
        self.mix = KindMix(config.mix, AUDIO_INSTRUCTION_KINDS)

    def __call__(self, i: int):
        rng = np.random.default_rng([self.config.seed, 7, i])
        kind = self.mix.draw(rng)
        clip = self.world.clip(i)
        return self.world.render(clip), audio_conversation(clip, kind, rng)


def audio_text_corpus(n: int, seed: int = 0) -> list[str]:
    """About ``n`` texts of the audio assistant's language (every prompt and answer kind), for its tokenizer."""
    world = TonesWorld(seed=seed, split="train")
    rng = np.random.default_rng([seed, 11])
    texts: list[str] = [*SHORT_PROMPTS, *DETAILED_PROMPTS]
    i = 0
    while len(texts) < n:
        clip = world.clip(i)
        for kind in AUDIO_INSTRUCTION_KINDS[:-1]:
            for message in audio_conversation(clip, kind, rng):
                texts.append(message["content"].replace(AUDIO_TOKEN, "").strip())
        i += 1
    return texts[:n]
