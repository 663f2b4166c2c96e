"""The tones world: generated audio clips of simple sound events with exact ground truth.

A clip is 16 kHz mono float32 in [-1, 1], 0.5-2.0 s long, holding 1-3 sound events in sequence with
short silent gaps. Each event has a kind (``KINDS``), a pitch band, a loudness, a duration class and, for
clicks, a rhythm; the exact frequencies and times are recorded, so captions and questions are derived from
the event list and can be checked against the waveform.

Splits, all deterministic and O(1) to index: clip ``i`` of a split is drawn from
``numpy.random.default_rng([seed, split_id, i])``.

- ``"train"``: events use every (kind, pitch) pair except the held-out pairs (``heldout``).
- ``"test"``: the same distribution as train, drawn from a disjoint seed stream.
- ``"heldout"``: every clip contains at least one held-out (kind, pitch) pair.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np

from polymodal.data.worlds.shapes_qa import QA
from polymodal.data.worlds.shapes_scene import NUMBER_WORDS

__all__ = [
    "ANSWER_VOCAB", "DEFAULT_HELDOUT", "EVAL_TEMPLATES", "KINDS", "LOUDNESS", "PITCHES", "QA", "SPLITS",
    "TRAIN_TEMPLATES", "ToneClip", "ToneEvent", "ToneSample", "TonesWorld", "caption", "captions",
    "detailed_caption", "kind_prompts", "sequence_caption", "questions", "render_clip",
]  # fmt: skip

KINDS: tuple[str, ...] = ("sine", "square", "chirp_up", "chirp_down", "noise_burst", "clicks")
PITCHES: dict[str, tuple[float, float]] = {
    "low": (150.0, 300.0),
    "mid": (400.0, 800.0),
    "high": (1000.0, 2000.0),
}
LOUDNESS: dict[str, float] = {
    "quiet": 0.2,
    "loud": 0.7,
}  # peak amplitude; events never overlap, so |x| <= 0.7
DURATIONS: dict[str, tuple[float, float]] = {"short": (0.15, 0.25), "long": (0.35, 0.5)}  # seconds
RHYTHMS: dict[str, tuple[float, float]] = {"slow": (8.0, 10.0), "fast": (20.0, 30.0)}  # clicks per second
LEAD_S = (0.02, 0.1)  # silence before the first event
GAP_S = (0.08, 0.15)  # silence between events: long enough to separate them in an energy envelope
TAIL_S = 0.05  # minimum silence after the last event
CLIP_S = (0.5, 2.0)  # clip duration bounds
FADE_S = 0.005  # raised-cosine fade at event edges, so tones start and stop without a click
CLICK_S = 0.01  # length of one click: a decaying tone burst at the event's frequency
CHIRP_RATIO = 2.0  # a chirp sweeps one octave, centred (geometrically) on its pitch band frequency
MAX_EVENTS = 3

# One held-out pair per pitch band and no kind twice, so every kind and pitch is still seen in training.
DEFAULT_HELDOUT: tuple[tuple[str, str], ...] = (("sine", "high"), ("square", "low"), ("chirp_down", "mid"))
SPLITS = {"train": 0, "test": 1, "heldout": 2}

# Noun for each kind in captions (clicks take their rhythm as an adjective) and its one-word answer.
KIND_NOUNS = {
    "sine": "sine tone",
    "square": "square wave",
    "chirp_up": "rising chirp",
    "chirp_down": "falling chirp",
    "noise_burst": "noise burst",
    "clicks": "clicks",
}
PLAIN_NOUNS = {**KIND_NOUNS, "noise_burst": "burst of noise"}
KIND_ANSWERS = {k: v.split()[-1] if k.startswith("chirp") else k.split("_")[0] for k, v in KIND_NOUNS.items()}
ORDINALS = ("first", "second", "third")
ANSWER_VOCAB: tuple[str, ...] = tuple(
    sorted(
        {"yes", "no", *NUMBER_WORDS[1 : MAX_EVENTS + 1], *LOUDNESS, *PITCHES, *DURATIONS, *RHYTHMS}
        | set(KIND_ANSWERS.values())
    )
)

Templates = dict[str, tuple[str, ...]]
# {events}: the events joined by "then"; {count} / {noun}: "three" / "sounds".
TRAIN_TEMPLATES: Templates = {
    "sequence": ("{events}", "the sound of {events}", "audio of {events}"),
    "count": ("{count} {noun}: {events}", "{count} {noun}"),
}
EVAL_TEMPLATES: Templates = {
    "sequence": ("a recording of {events}", "you can hear {events}"),
    "count": ("a clip with {count} {noun}: {events}", "a clip containing {count} {noun}"),
}


@dataclass(frozen=True)
class ToneEvent:
    """One sound event of a clip; times in seconds from the clip start."""

    kind: str  # one of KINDS
    pitch: str  # a key of PITCHES (for chirps: the band of the sweep's geometric centre)
    loudness: str  # a key of LOUDNESS
    duration: str  # a key of DURATIONS
    duration_s: float  # exact event length
    start_s: float  # exact event onset
    freq_hz: float  # tone frequency; a chirp's start frequency; a noise band's centre; a click's tone
    end_freq_hz: float | None = None  # a chirp's end frequency, else None
    rate_hz: float | None = None  # clicks per second for clicks, else None
    rhythm: str | None = None  # a key of RHYTHMS for clicks, else None

    @property
    def end_s(self) -> float:
        """When the event stops."""
        return self.start_s + self.duration_s


@dataclass
class ToneClip:
    """A clip's ground truth: its events in time order."""

    events: tuple[ToneEvent, ...]
    sample_rate: int  # samples per second
    duration_s: float  # clip length; the audio has round(duration_s * sample_rate) samples

    def __len__(self) -> int:
        return len(self.events)

    def fingerprint(self) -> int:
        """A stable 32-bit id of the clip content, used to seed noise and language choices."""
        return zlib.crc32(repr((self.events, self.sample_rate, self.duration_s)).encode())

    def to_dict(self) -> dict:
        """A JSON-ready copy (for ground-truth files and eval metrics)."""
        return {
            "sample_rate": self.sample_rate,
            "duration_s": self.duration_s,
            "events": [asdict(e) for e in self.events],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ToneClip:
        """Inverse of :meth:`to_dict`."""
        events = tuple(ToneEvent(**e) for e in data["events"])
        return cls(events=events, sample_rate=int(data["sample_rate"]), duration_s=float(data["duration_s"]))


@dataclass
class ToneSample:
    """A rendered clip with its ground truth and one training caption."""

    audio: np.ndarray  # (samples,) float32 in [-1, 1]
    clip: ToneClip
    caption: str


# ---------------------------------------------------------------- synthesis


def _fade(x: np.ndarray, n_fade: int) -> np.ndarray:
    n_fade = min(n_fade, len(x) // 2)
    if n_fade > 0:
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n_fade, dtype=np.float32))).astype(np.float32)
        x[:n_fade] *= ramp
        x[-n_fade:] *= ramp[::-1]
    return x


def _band_noise(n: int, centre_hz: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with a flat spectrum over one octave around ``centre_hz``, peak-normalised to 1."""
    freqs = np.fft.rfftfreq(n, 1 / sr)
    band = (freqs > centre_hz / np.sqrt(2)) & (freqs < centre_hz * np.sqrt(2))
    spectrum = np.zeros(len(freqs), np.complex64)
    spectrum[band] = np.exp(2j * np.pi * rng.random(int(band.sum())))
    x = np.fft.irfft(spectrum, n).astype(np.float32)
    return x / max(float(np.abs(x).max()), 1e-9)


def _clicks(n: int, e: ToneEvent, sr: int) -> np.ndarray:
    x = np.zeros(n, np.float32)
    m = min(int(CLICK_S * sr), n)
    t = np.arange(m, dtype=np.float32) / sr
    burst = np.exp(-t / (CLICK_S / 5)) * np.sin(2 * np.pi * e.freq_hz * t)  # decays ~99% within CLICK_S
    for onset in np.arange(0, e.duration_s, 1 / e.rate_hz):
        s = int(round(onset * sr))
        k = min(m, n - s)
        x[s : s + k] += burst[:k]
    return x


def _event_wave(e: ToneEvent, sr: int, seed: int) -> np.ndarray:
    """The event's waveform at unit peak amplitude (before loudness)."""
    n = int(round(e.duration_s * sr))
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    if e.kind == "clicks":
        return _clicks(n, e, sr)
    if e.kind == "noise_burst":
        x = _band_noise(n, e.freq_hz, sr, np.random.default_rng(seed))
    elif e.kind in ("chirp_up", "chirp_down"):
        k = e.end_freq_hz / e.freq_hz  # exponential sweep: f(t) = f0 * k ** (t / T)
        phase = 2 * np.pi * e.freq_hz * e.duration_s / np.log(k) * (np.power(k, t / e.duration_s) - 1)
        x = np.sin(phase.astype(np.float32))
    else:
        x = np.sin(np.float32(2 * np.pi * e.freq_hz) * t)
        if e.kind == "square":
            x = np.sign(x)
    return _fade(x.astype(np.float32), int(FADE_S * sr))


def render_clip(clip: ToneClip) -> np.ndarray:
    """The clip's waveform: (round(duration_s * sample_rate),) float32 in [-1, 1]."""
    sr = clip.sample_rate
    audio = np.zeros(int(round(clip.duration_s * sr)), np.float32)
    for idx, e in enumerate(clip.events):
        wave = _event_wave(e, sr, clip.fingerprint() + idx) * LOUDNESS[e.loudness]
        s = int(round(e.start_s * sr))
        audio[s : s + len(wave)] += wave[: len(audio) - s]
    return np.clip(audio, -1.0, 1.0, out=audio)


# ---------------------------------------------------------------- language


def _event_phrase(e: ToneEvent, detail: int) -> str:
    """detail 0: 'a burst of noise'; 1: 'a loud noise burst'; 2: 'a loud high noise burst'."""
    words = [e.loudness] if detail >= 1 else []
    words += [e.pitch] if detail >= 2 else []
    words += [e.rhythm] if e.kind == "clicks" else []
    words.append((PLAIN_NOUNS if detail == 0 else KIND_NOUNS)[e.kind])
    text = " ".join(words)
    if e.kind == "clicks":
        return text
    return f"{'an' if text[0] in 'aeiou' else 'a'} {text}"


def captions_by_family(clip: ToneClip, templates: Templates = TRAIN_TEMPLATES) -> dict[str, list[str]]:
    """True captions of ``clip`` grouped by template family."""
    sequences = list(dict.fromkeys(" then ".join(_event_phrase(e, d) for e in clip.events) for d in range(3)))
    count, noun = NUMBER_WORDS[len(clip)], "sound" if len(clip) == 1 else "sounds"
    out: dict[str, list[str]] = {}
    for family, family_templates in templates.items():
        texts = []
        for t in family_templates:
            options = sequences if "{events}" in t else [""]
            texts += [t.format(events=s, count=count, noun=noun) for s in options]
        out[family] = list(dict.fromkeys(texts))
    return out


def sequence_caption(clip: ToneClip, detail: int) -> str:
    """The events in order at one level of detail: 0 "a burst of noise then a sine tone", 1 adds the
    loudness, 2 the pitch band too."""
    return " then ".join(_event_phrase(e, detail) for e in clip.events)


def detailed_caption(clip: ToneClip, template: str = "{events}") -> str:
    """The most specific caption: every event with its loudness, pitch (and rhythm) and kind, in order."""
    return template.format(events=sequence_caption(clip, 2))


def kind_prompts(kind: str) -> list[str]:
    """The ways captions name one event of ``kind`` with no other detail ("a burst of noise", "a noise
    burst"): a prompt ensemble for zero-shot classification."""
    nouns = dict.fromkeys((PLAIN_NOUNS[kind], KIND_NOUNS[kind]))
    return [n if kind == "clicks" else f"{'an' if n[0] in 'aeiou' else 'a'} {n}" for n in nouns]


def captions(clip: ToneClip, templates: Templates = TRAIN_TEMPLATES) -> list[str]:
    """Every true caption of ``clip`` under ``templates``, in a fixed order."""
    return [c for texts in captions_by_family(clip, templates).values() for c in texts]


def caption(clip: ToneClip, rng: np.random.Generator, templates: Templates = TRAIN_TEMPLATES) -> str:
    """One true caption chosen uniformly from :func:`captions`."""
    options = captions(clip, templates)
    return options[int(rng.integers(len(options)))]


def _event_questions(e: ToneEvent, subject: str) -> list[QA]:
    """Questions about one event; ``subject`` is 'it' or 'the second sound'."""
    pitch_of = "the pitch" if subject == "it" else f"the pitch of {subject}"
    qs = [
        QA(f"what kind of sound is {subject}?", KIND_ANSWERS[e.kind], "kind"),
        QA(f"is {subject} loud or quiet?", e.loudness, "loudness"),
        QA(f"is {subject} long or short?", e.duration, "duration"),
        QA(f"is {pitch_of} low, mid or high?", e.pitch, "pitch"),
    ]
    if e.kind in ("sine", "square", "chirp_up", "chirp_down"):
        qs.append(QA(f"is {pitch_of} rising?", "yes" if e.kind == "chirp_up" else "no", "direction"))
        qs.append(QA(f"is {pitch_of} falling?", "yes" if e.kind == "chirp_down" else "no", "direction"))
    if e.kind == "clicks":
        clicks = "the clicks" if subject == "it" else f"the clicks of {subject}"
        qs.append(QA(f"are {clicks} fast or slow?", e.rhythm, "rhythm"))
    return qs


def questions(clip: ToneClip) -> list[QA]:
    """All questions about ``clip`` with short lowercase answers (in ANSWER_VOCAB)."""
    qs = [QA("how many sounds are there?", NUMBER_WORDS[len(clip)], "count")]
    if len(clip) == 1:
        return qs + _event_questions(clip.events[0], "it")
    for idx, e in enumerate(clip.events):
        qs += _event_questions(e, f"the {ORDINALS[idx]} sound")
    present = {e.kind for e in clip.events}
    for kind in KINDS:  # existence, balanced by asking about every kind
        qs.append(QA(f"is there {_event_phrase_kind(kind)}?", "yes" if kind in present else "no", "exists"))
    return qs


def _event_phrase_kind(kind: str) -> str:
    noun = PLAIN_NOUNS[kind]
    return noun if kind == "clicks" else f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


# ---------------------------------------------------------------- world


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


class TonesWorld:
    """Deterministic, streamable audio clips: ``clip(i)``, ``render(clip)``, ``sample(i)``."""

    def __init__(
        self,
        seed: int = 0,
        split: str = "train",
        sample_rate: int = 16000,
        min_events: int = 1,
        max_events: int = MAX_EVENTS,
        heldout: tuple[tuple[str, str], ...] = DEFAULT_HELDOUT,
    ):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        if not 1 <= min_events <= max_events <= MAX_EVENTS:
            raise ValueError(
                f"need 1 <= min_events <= max_events <= {MAX_EVENTS}, got {min_events}..{max_events}"
            )
        if sample_rate < 2 * CHIRP_RATIO * PITCHES["high"][1]:
            raise ValueError(f"sample_rate {sample_rate} is too low for the high band; use >= 8000")
        unknown = [p for p in heldout if p[0] not in KINDS or p[1] not in PITCHES]
        if unknown:
            raise ValueError(f"held-out pairs {unknown} are not (kind, pitch) pairs of the vocabulary")
        if split == "heldout" and not heldout:
            raise ValueError("split 'heldout' needs at least one held-out (kind, pitch) pair")
        self.seed, self.split, self.sample_rate = seed, split, sample_rate
        self.min_events, self.max_events = min_events, max_events
        self.heldout = tuple(tuple(p) for p in heldout)
        self.train_pairs = [(k, p) for k in KINDS for p in PITCHES if (k, p) not in set(self.heldout)]

    def _rng(self, i: int, stream: int = 0) -> np.random.Generator:
        if i < 0:
            raise IndexError(f"clip index must be >= 0, got {i}")
        return np.random.default_rng([self.seed, SPLITS[self.split], i, stream])

    def _snap(self, seconds: float) -> float:
        """Round a time to a whole sample, so rendered boundaries match the recorded ones exactly."""
        return round(seconds * self.sample_rate) / self.sample_rate

    def _event(self, rng: np.random.Generator, kind: str, pitch: str, start_s: float) -> ToneEvent:
        loudness = list(LOUDNESS)[int(rng.integers(len(LOUDNESS)))]
        duration = list(DURATIONS)[int(rng.integers(len(DURATIONS)))]
        duration_s = self._snap(_uniform(rng, DURATIONS[duration]))
        lo, hi = PITCHES[pitch]
        freq = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))  # log-uniform: even in musical pitch
        end_freq = rate = rhythm = None
        if kind in ("chirp_up", "chirp_down"):
            up = kind == "chirp_up"
            half_sweep = float(np.sqrt(CHIRP_RATIO)) ** (1 if up else -1)
            freq, end_freq = freq / half_sweep, freq * half_sweep
        if kind == "clicks":
            rhythm = list(RHYTHMS)[int(rng.integers(len(RHYTHMS)))]
            rate = _uniform(rng, RHYTHMS[rhythm])
        return ToneEvent(kind, pitch, loudness, duration, duration_s, start_s, freq, end_freq, rate, rhythm)

    def clip(self, i: int) -> ToneClip:
        """Clip ``i`` of this split (a pure function of seed, split, sample rate and i)."""
        rng = self._rng(i)
        n = int(rng.integers(self.min_events, self.max_events + 1))
        pairs = [self.train_pairs[k] for k in rng.integers(len(self.train_pairs), size=n)]
        if self.split == "heldout":
            pairs[int(rng.integers(n))] = self.heldout[int(rng.integers(len(self.heldout)))]
        events, t = [], self._snap(_uniform(rng, LEAD_S))
        for kind, pitch in pairs:
            e = self._event(rng, kind, pitch, t)
            events.append(e)
            t = self._snap(e.end_s + _uniform(rng, GAP_S))
        shortest = max(CLIP_S[0], events[-1].end_s + TAIL_S)
        duration_s = self._snap(_uniform(rng, (shortest, CLIP_S[1])))
        return ToneClip(events=tuple(events), sample_rate=self.sample_rate, duration_s=duration_s)

    def render(self, clip: ToneClip) -> np.ndarray:
        """The waveform of ``clip``: (samples,) float32 in [-1, 1]."""
        return render_clip(clip)

    def sample(self, i: int, templates: Templates | None = None) -> ToneSample:
        """Clip ``i`` rendered, with a caption drawn from ``templates`` (training phrasings by default)."""
        clip = self.clip(i)
        text = caption(clip, self._rng(i, stream=1), templates or TRAIN_TEMPLATES)
        return ToneSample(audio=self.render(clip), clip=clip, caption=text)
