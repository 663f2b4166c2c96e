"""The spoken world: words and digits spoken by the ``espeak-ng`` synthesiser, with exact transcripts.

An utterance is 1-4 words (configurable) drawn from ``VOCABULARY`` -- the ten digits, the shapes world's
colour, shape and size words, and simple command words -- spoken by one espeak-ng voice at a random speed
and pitch. The waveform is espeak's 22.05 kHz output read with :mod:`polymodal.data.audio_io` and resampled
to ``sample_rate`` (16 kHz by default), mono float32.

Splits, deterministic and O(1) to index: utterance ``i`` of a split is drawn from
``numpy.random.default_rng([seed, split_id, i])``.

- ``"train"``: spoken by ``train_voices``.
- ``"test"``: spoken only by ``test_voices``, voices never heard in training (by default every accent with
  two speaker variants, ``m4`` and ``f3``, that no training voice uses).

Synthesis runs espeak-ng as a subprocess (no shell; the text goes through stdin, never the command line)
and caches each clip as ``<cache>/<sha256>.npy``, keyed by the utterance, the output rate and the espeak-ng
version. The cache folder is ``SpokenConfig.cache_dir``, or when that is empty ``$POLYMODAL_CACHE/spoken``,
``$XDG_CACHE_HOME/polymodal/spoken`` or ``~/.cache/polymodal/spoken``, the first that is set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from polymodal.config import ConfigError
from polymodal.data.audio_io import AudioError, AudioLimits, read_audio
from polymodal.data.worlds.digits import DIGIT_NAMES
from polymodal.data.worlds.shapes_qa import QA
from polymodal.data.worlds.shapes_scene import COLORS, SHAPES, SIZES

__all__ = [
    "DEFAULT_TEST_VOICES", "DEFAULT_TRAIN_VOICES", "EVAL_TEMPLATES", "EspeakError", "SPLITS", "SpokenConfig",
    "SpokenSample", "SpokenWorld", "TRAIN_TEMPLATES", "Utterance", "VOCABULARY", "caption", "captions",
    "questions", "synthesize",
]  # fmt: skip

COMMAND_WORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
VOCABULARY: tuple[str, ...] = (*DIGIT_NAMES, *COLORS, *SHAPES, *SIZES, *COMMAND_WORDS)

ACCENTS: tuple[str, ...] = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029")
TRAIN_VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m5", "m7", "f1", "f2", "f4", "croak", "klatt")
TEST_VARIANTS: tuple[str, ...] = ("m4", "f3")  # speaker variants held out: test voices are never heard
DEFAULT_TRAIN_VOICES = tuple(f"{a}+{v}" for a in ACCENTS for v in TRAIN_VARIANTS)
DEFAULT_TEST_VOICES = tuple(f"{a}+{v}" for a in ACCENTS for v in TEST_VARIANTS)
SPLITS = {"train": 0, "test": 1}

ESPEAK_SPEED = (80, 450)  # words per minute espeak-ng accepts
ESPEAK_PITCH = (0, 99)
MAX_WORDS = 9  # word counts are asked about with DIGIT_NAMES
SYNTH_TIMEOUT_S = 30.0  # one clip takes ~15 ms; a stuck process is killed long before a test notices
_WORD = re.compile(r"^[a-z]+$")
_VOICE = re.compile(r"^[a-z0-9-]+(\+[A-Za-z0-9_-]+)?$")

# {text}: the transcript.
TRAIN_TEMPLATES: tuple[str, ...] = ("{text}", "someone says {text}", "a voice saying {text}")
EVAL_TEMPLATES: tuple[str, ...] = ("a recording of someone saying {text}", "the spoken words {text}")


class EspeakError(RuntimeError):
    """espeak-ng is missing or failed; the message says what to do."""


@dataclass
class SpokenConfig:
    """What the spoken world draws and where it caches clips."""

    seed: int = 0  # utterance i of a split is a pure function of (seed, split, i)
    train_voices: tuple[str, ...] = DEFAULT_TRAIN_VOICES  # espeak-ng voices, "language" or "language+variant"
    test_voices: tuple[str, ...] = DEFAULT_TEST_VOICES  # held-out voices, disjoint from train_voices
    vocabulary: tuple[str, ...] = VOCABULARY  # lowercase ascii words utterances are made of
    min_words: int = 1  # fewest words per utterance
    max_words: int = 4  # most words per utterance (<= 9)
    speed_range: tuple[int, int] = (130, 210)  # espeak-ng speed in words per minute, inclusive
    pitch_range: tuple[int, int] = (25, 75)  # espeak-ng pitch 0..99, inclusive
    sample_rate: int = 16000  # output rate after resampling espeak's 22.05 kHz
    cache_dir: str = ""  # clip cache folder; "" = $POLYMODAL_CACHE/spoken or ~/.cache/polymodal/spoken
    use_cache: bool = True  # False: synthesise every time and write nothing
    workers: int = 4  # threads for SpokenWorld.samples (each runs one espeak-ng process)
    question_share: float = (
        0.0  # fraction of utterances that are shapes-world questions instead of word lists
    )

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field that cannot work."""
        for name in ("train_voices", "test_voices"):
            voices = getattr(self, name)
            bad = [v for v in voices if not _VOICE.match(v)]
            if not voices or bad:
                raise ConfigError(
                    f"SpokenConfig.{name} needs espeak-ng voice names like 'en-us+f2', got {bad}"
                )
        shared = sorted(set(self.train_voices) & set(self.test_voices))
        if shared:
            raise ConfigError(f"SpokenConfig: voices {shared} are in both train_voices and test_voices")
        bad_words = [w for w in self.vocabulary if not _WORD.match(w)]
        if not self.vocabulary or bad_words or len(set(self.vocabulary)) != len(self.vocabulary):
            raise ConfigError(f"SpokenConfig.vocabulary needs unique lowercase a-z words, got {bad_words}")
        if not 1 <= self.min_words <= self.max_words <= MAX_WORDS:
            raise ConfigError(f"SpokenConfig needs 1 <= min_words <= max_words <= {MAX_WORDS}")
        for name, (lo, hi) in (("speed_range", ESPEAK_SPEED), ("pitch_range", ESPEAK_PITCH)):
            a, b = getattr(self, name)
            if not lo <= a <= b <= hi:
                raise ConfigError(f"SpokenConfig.{name} must lie within {lo}..{hi} with low <= high")
        if self.sample_rate < 8000:
            raise ConfigError(
                f"SpokenConfig.sample_rate {self.sample_rate} is too low for speech; use >= 8000"
            )
        if self.workers < 1:
            raise ConfigError(f"SpokenConfig.workers must be >= 1, got {self.workers}")
        if not 0.0 <= self.question_share <= 1.0:
            raise ConfigError(f"SpokenConfig.question_share must lie in [0, 1], got {self.question_share}")


@dataclass(frozen=True)
class Utterance:
    """What is said and how: everything espeak-ng needs, and the ground truth."""

    text: str  # the transcript: lowercase words joined by single spaces
    voice: str  # espeak-ng voice
    speed: int  # words per minute
    pitch: int  # 0..99

    @property
    def words(self) -> list[str]:
        """The transcript's words in order."""
        return self.text.split()


@dataclass
class SpokenSample:
    """A synthesised utterance."""

    text: str  # the transcript
    voice: str  # espeak-ng voice
    speed: int  # words per minute
    pitch: int  # 0..99
    waveform: np.ndarray  # (samples,) float32 mono
    sample_rate: int  # of waveform

    @property
    def utterance(self) -> Utterance:
        """The utterance this sample was synthesised from."""
        return Utterance(self.text, self.voice, self.speed, self.pitch)


# ---------------------------------------------------------------- espeak-ng


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise EspeakError(
            "the spoken world needs the espeak-ng synthesiser, which is not on PATH: install it with "
            "`apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS)"
        )
    return exe


@cache
def espeak_version() -> str:
    """The installed espeak-ng's version line (part of every cache key)."""
    out = subprocess.run([_espeak(), "--version"], capture_output=True, timeout=SYNTH_TIMEOUT_S, check=False)
    return out.stdout.decode(errors="replace").strip()


@cache
def espeak_variants() -> frozenset[str]:
    """Voice variant names espeak-ng knows (the part after '+'); it would silently ignore others."""
    cmd = [_espeak(), "--voices=variant"]
    out = subprocess.run(cmd, capture_output=True, timeout=SYNTH_TIMEOUT_S, check=False).stdout.decode()
    return frozenset(f.split("/", 1)[1] for f in re.findall(r"!v/\S+", out))


def _check_voice(voice: str) -> None:
    _, _, variant = voice.partition("+")
    if variant and variant not in espeak_variants():
        raise EspeakError(
            f"espeak-ng has no voice variant {variant!r} (voice {voice!r}); list them with "
            "`espeak-ng --voices=variant`"
        )


def synthesize(utt: Utterance, sample_rate: int = 16000) -> np.ndarray:
    """Speak ``utt`` with espeak-ng: (samples,) float32 mono at ``sample_rate``.

    Raises:
        EspeakError: espeak-ng is missing, does not know the voice, fails or writes no audio.
    """
    _check_voice(utt.voice)
    cmd = [_espeak(), "--stdout", "-v", utt.voice, "-s", str(utt.speed), "-p", str(utt.pitch)]
    try:
        done = subprocess.run(
            cmd, input=utt.text.encode(), capture_output=True, timeout=SYNTH_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise EspeakError(f"espeak-ng took over {SYNTH_TIMEOUT_S:g} s on {utt}") from None
    if done.returncode != 0:
        raise EspeakError(f"espeak-ng failed on {utt}: {done.stderr.decode(errors='replace').strip()}")
    try:  # espeak's streamed WAV header claims ~2 GB of data; audio_io reads only what exists
        return read_audio(done.stdout, sample_rate, AudioLimits(max_seconds=60.0))
    except AudioError as e:
        raise EspeakError(f"espeak-ng wrote no usable audio for {utt}: {e}") from None


# ---------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """``$POLYMODAL_CACHE/spoken``, else ``$XDG_CACHE_HOME/polymodal/spoken``, else ``~/.cache/...``."""
    if os.environ.get("POLYMODAL_CACHE"):
        return Path(os.environ["POLYMODAL_CACHE"]) / "spoken"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "polymodal" / "spoken"


def _cache_key(utt: Utterance, sample_rate: int) -> str:
    fields = {**utt.__dict__, "sample_rate": sample_rate, "espeak": espeak_version()}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _load_cached(path: Path) -> np.ndarray | None:
    try:
        wave = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # missing, or half-written by a killed process: redo it
        return None
    ok = wave.dtype == np.float32 and wave.ndim == 1 and len(wave) > 0
    return wave if ok else None


def _save_atomic(path: Path, wave: np.ndarray) -> None:
    """Write next to ``path`` then rename, so readers in other threads never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, wave, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- language


def captions(utt: Utterance, templates: tuple[str, ...] = TRAIN_TEMPLATES) -> list[str]:
    """Every caption of ``utt`` under ``templates`` (the transcript is always the first training one)."""
    return [t.format(text=utt.text) for t in templates]


def caption(utt: Utterance, rng: np.random.Generator, templates: tuple[str, ...] = TRAIN_TEMPLATES) -> str:
    """One caption chosen uniformly from :func:`captions`."""
    options = captions(utt, templates)
    return options[int(rng.integers(len(options)))]


def questions(utt: Utterance, vocabulary: tuple[str, ...] = VOCABULARY) -> list[QA]:
    """Questions with one-word answers: word count, first and last word, and balanced word presence."""
    words = utt.words
    qs = [
        QA("how many words are spoken?", DIGIT_NAMES[len(words)], "count"),
        QA("what is the first word?", words[0], "first"),
        QA("what is the last word?", words[-1], "last"),
    ]
    present = list(dict.fromkeys(words))
    absent = [w for w in vocabulary if w not in set(words)]
    seed = int.from_bytes(hashlib.sha256(utt.text.encode()).digest()[:4], "little")
    picked = np.random.default_rng(seed).permutation(len(absent))[: len(present)]
    qs += [QA(f"is the word {w} said?", "yes", "exists") for w in present]
    qs += [QA(f"is the word {absent[k]} said?", "no", "exists") for k in sorted(picked)]
    return qs


# ---------------------------------------------------------------- world


class SpokenWorld:
    """Deterministic spoken utterances: ``utterance(i, split)`` (cheap) and ``sample(i, split)`` (audio)."""

    def __init__(self, config: SpokenConfig | None = None):
        self.config = config or SpokenConfig()
        self.config.validate()
        self.cache_dir = Path(self.config.cache_dir) if self.config.cache_dir else default_cache_dir()
        self._scenes: dict = {}  # split -> ShapesWorld, for question utterances

    def voices(self, split: str) -> tuple[str, ...]:
        """The voices that speak ``split``."""
        _check_split(split)
        return self.config.train_voices if split == "train" else self.config.test_voices

    def classes(self) -> list[str]:
        """The vocabulary, in order: class names for zero-shot word classification."""
        return list(self.config.vocabulary)

    def label(self, utt: Utterance | SpokenSample) -> int:
        """The class index of a one-word utterance."""
        words = utt.text.split()
        if len(words) != 1:
            raise ValueError(f"only one-word utterances have a class label; {utt.text!r} has {len(words)}")
        return self.config.vocabulary.index(words[0])

    def utterance(self, i: int, split: str = "train") -> Utterance:
        """Utterance ``i`` of ``split`` without synthesising it (a pure function of seed, split and i)."""
        _check_split(split)
        if i < 0:
            raise IndexError(f"utterance index must be >= 0, got {i}")
        c = self.config
        rng = np.random.default_rng([c.seed, SPLITS[split], i])
        n = int(rng.integers(c.min_words, c.max_words + 1))
        words = [c.vocabulary[k] for k in rng.integers(len(c.vocabulary), size=n)]
        voices = self.voices(split)
        voice = voices[int(rng.integers(len(voices)))]
        speed = int(rng.integers(c.speed_range[0], c.speed_range[1] + 1))
        pitch = int(rng.integers(c.pitch_range[0], c.pitch_range[1] + 1))
        text = self._question(i, split) if self.is_question(i, split) else " ".join(words)
        return Utterance(text, voice, speed, pitch)

    def _question_rng(self, i: int, split: str) -> np.random.Generator:
        # a separate stream, so word-list utterances are the same whatever question_share is
        return np.random.default_rng([self.config.seed, SPLITS[split], i, 1])

    def is_question(self, i: int, split: str = "train") -> bool:
        """Whether utterance ``i`` of ``split`` is a spoken shapes-world question (else a word list)."""
        share = self.config.question_share
        return share > 0 and self._question_rng(i, split).random() < share

    def _question(self, i: int, split: str) -> str:
        """A question about scene ``i`` of the shapes world's same split, as spoken words (no "?")."""
        from polymodal.data.worlds.shapes import ShapesWorld, questions

        rng = self._question_rng(i, split)
        rng.random()  # the draw is_question made
        if split not in self._scenes:
            self._scenes[split] = ShapesWorld(seed=self.config.seed, split=split)
        qa = questions(self._scenes[split].scene(i), rng)
        return " ".join(re.findall(r"[a-z]+", qa[int(rng.integers(len(qa)))].question.lower()))

    def synthesize(self, utt: Utterance) -> np.ndarray:
        """``utt`` spoken at the config's rate, from the cache when it holds the clip."""
        rate = self.config.sample_rate
        if not self.config.use_cache:
            return synthesize(utt, rate)
        path = self.cache_dir / f"{_cache_key(utt, rate)}.npy"
        wave = _load_cached(path)
        if wave is None:
            wave = synthesize(utt, rate)
            _save_atomic(path, wave)
        return wave

    def sample(self, i: int, split: str = "train") -> SpokenSample:
        """Utterance ``i`` of ``split``, synthesised."""
        utt = self.utterance(i, split)
        return _to_sample(utt, self.synthesize(utt), self.config.sample_rate)

    def samples(
        self, indices: Iterable[int], split: str = "train", workers: int | None = None
    ) -> list[SpokenSample]:
        """Many samples in order, synthesised by a thread pool (each thread waits on its own espeak-ng)."""
        utts = [self.utterance(i, split) for i in indices]
        with ThreadPoolExecutor(max_workers=workers or self.config.workers) as pool:
            waves = list(pool.map(self.synthesize, utts))
        return [_to_sample(u, w, self.config.sample_rate) for u, w in zip(utts, waves, strict=True)]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def _to_sample(utt: Utterance, wave: np.ndarray, sample_rate: int) -> SpokenSample:
    return SpokenSample(utt.text, utt.voice, utt.speed, utt.pitch, wave, sample_rate)
