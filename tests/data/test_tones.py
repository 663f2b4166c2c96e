import json
import re

import numpy as np
import pytest

from polymodal.data.worlds.tones import (
    ANSWER_VOCAB,
    DEFAULT_HELDOUT,
    EVAL_TEMPLATES,
    KIND_NOUNS,
    TRAIN_TEMPLATES,
    ToneClip,
    TonesWorld,
    captions,
    questions,
)

SR = 16000


def event_audio(world, clip, e):
    audio = world.render(clip)
    s = round(e.start_s * SR)
    return audio[s : s + round(e.duration_s * SR)]


def dominant_hz(x):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=1 << 16))
    return float(np.fft.rfftfreq(1 << 16, 1 / SR)[np.argmax(spectrum)])


def events_of(world, n, predicate):
    return [(c, e) for c in (world.clip(i) for i in range(n)) for e in c.events if predicate(e)]


def test_same_seed_gives_same_bytes_and_other_seeds_or_splits_differ():
    a, b = TonesWorld(seed=3).sample(7), TonesWorld(seed=3).sample(7)
    assert a.audio.tobytes() == b.audio.tobytes() and a.caption == b.caption
    assert a.clip.to_dict() == b.clip.to_dict()
    assert TonesWorld(seed=4).clip(7).to_dict() != a.clip.to_dict()
    assert TonesWorld(seed=3, split="test").clip(7).to_dict() != a.clip.to_dict()


def test_clip_shape_range_and_round_trip():
    world = TonesWorld(seed=1)
    for i in range(60):
        clip = world.clip(i)
        audio = world.render(clip)
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert len(audio) == round(clip.duration_s * SR)
        assert 0.5 <= clip.duration_s <= 2.0 and 1 <= len(clip) <= 3
        assert np.abs(audio).max() <= 1.0 and np.abs(audio).max() > 0.1
        assert clip.events[-1].end_s < clip.duration_s
        assert all(a.end_s < b.start_s for a, b in zip(clip.events, clip.events[1:], strict=False))
        assert ToneClip.from_dict(json.loads(json.dumps(clip.to_dict()))) == clip


def test_heldout_pairs_never_in_train_or_test_and_always_in_heldout():
    held = set(DEFAULT_HELDOUT)
    for split in ("train", "test"):
        world = TonesWorld(seed=0, split=split)
        assert not any((e.kind, e.pitch) in held for _, e in events_of(world, 300, lambda e: True))
    world = TonesWorld(seed=0, split="heldout")
    for i in range(200):
        assert any((e.kind, e.pitch) in held for e in world.clip(i).events)


def test_sine_and_square_dominant_frequency_matches_freq_hz():
    world = TonesWorld(seed=2)
    found = events_of(world, 80, lambda e: e.kind in ("sine", "square"))
    assert len(found) >= 10
    for clip, e in found:
        assert dominant_hz(event_audio(world, clip, e)) == pytest.approx(e.freq_hz, rel=0.03)


def test_chirps_sweep_in_their_stated_direction():
    world = TonesWorld(seed=2)
    found = events_of(world, 80, lambda e: e.kind.startswith("chirp"))
    assert len(found) >= 10
    for clip, e in found:
        x = event_audio(world, clip, e)
        q = len(x) // 4
        first, last = dominant_hz(x[:q]), dominant_hz(x[-q:])
        assert (last > first * 1.2) if e.kind == "chirp_up" else (last < first / 1.2)


def test_pitch_bands_are_ordered_for_noise_and_clicks():
    world = TonesWorld(seed=5)
    found = events_of(world, 200, lambda e: e.kind in ("noise_burst", "clicks"))
    by_pitch = {
        p: [dominant_hz(event_audio(world, c, e)) for c, e in found if e.pitch == p] for p in ("low", "high")
    }
    assert by_pitch["low"] and by_pitch["high"]
    assert max(by_pitch["low"]) < min(by_pitch["high"])


def test_loud_events_have_more_energy_than_quiet_ones_of_the_same_kind():
    world = TonesWorld(seed=3)
    found = events_of(world, 200, lambda e: True)
    for kind in KIND_NOUNS:
        rms = {
            level: [
                float(np.sqrt(np.mean(event_audio(world, c, e) ** 2)))
                for c, e in found
                if (e.kind, e.loudness) == (kind, level)
            ]
            for level in ("loud", "quiet")
        }
        assert rms["loud"] and rms["quiet"], kind
        assert min(rms["loud"]) > max(rms["quiet"]), kind


def test_fast_clicks_are_denser_than_slow_clicks():
    world = TonesWorld(seed=6)
    found = events_of(world, 200, lambda e: e.kind == "clicks")
    for clip, e in found:
        x = np.abs(event_audio(world, clip, e))
        onsets = np.flatnonzero((x[1:] > 0.05) & (x[:-1] <= 0.05))
        distinct = np.sum(np.diff(onsets, prepend=-SR) > 0.02 * SR)  # onsets of separate clicks
        assert distinct == len(np.arange(0, e.duration_s, 1 / e.rate_hz))
        assert (e.rate_hz >= 20) == (e.rhythm == "fast")


def test_event_count_matches_energy_envelope_segments():
    world = TonesWorld(seed=4)
    frame = SR // 100  # 10 ms frames
    checked = 0
    for i in range(150):
        clip = world.clip(i)
        if any(e.kind == "clicks" for e in clip.events):  # clicks have silences between clicks
            continue
        audio = world.render(clip)
        n = len(audio) // frame
        rms = np.sqrt((audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1))  # (frames,)
        active = rms > 0.01
        segments = int(active[0]) + int(np.sum(active[1:] & ~active[:-1]))
        assert segments == len(clip), i
        checked += 1
    assert checked > 50


def test_captions_agree_with_the_clip_and_eval_phrasings_are_new():
    world = TonesWorld(seed=0)
    for i in range(40):
        clip = world.clip(i)
        train, evals = captions(clip), captions(clip, EVAL_TEMPLATES)
        assert train and evals and not set(train) & set(evals)
        phrases = [
            " ".join(w for w in (e.loudness, e.pitch, e.rhythm, KIND_NOUNS[e.kind]) if w) for e in clip.events
        ]
        without_articles = [re.sub(r"\b(an?) ", "", c) for c in train]
        assert any(c.endswith(" then ".join(phrases)) for c in without_articles)  # every event, in time order
        assert world.sample(i).caption in train
    single = next(c for c in map(world.clip, range(100)) if len(c) == 1 and c.events[0].kind == "sine")
    e = single.events[0]
    assert f"a {e.loudness} {e.pitch} sine tone" in captions(single)
    assert "one sound" in captions(single)
    assert set(TRAIN_TEMPLATES) == set(EVAL_TEMPLATES)


def test_questions_agree_with_the_clip_and_answers_are_in_vocab():
    world = TonesWorld(seed=0)
    kinds_seen = set()
    for i in range(100):
        clip = world.clip(i)
        qa = {q.question: q.answer for q in questions(clip)}
        assert all(a in ANSWER_VOCAB and a == a.lower() for a in qa.values())
        assert qa["how many sounds are there?"] == ("one", "two", "three")[len(clip) - 1]
        if len(clip) == 1:
            e = clip.events[0]
            kinds_seen.add(e.kind)
            assert qa["is it loud or quiet?"] == e.loudness
            if e.kind.startswith("chirp") or e.kind in ("sine", "square"):
                assert qa["is the pitch rising?"] == ("yes" if e.kind == "chirp_up" else "no")
            if e.kind == "clicks":
                assert qa["are the clicks fast or slow?"] == e.rhythm
        else:
            assert qa["is the second sound loud or quiet?"] == clip.events[1].loudness
            assert qa["is there a sine tone?"] == (
                "yes" if any(e.kind == "sine" for e in clip.events) else "no"
            )
    assert {"chirp_up", "clicks"} <= kinds_seen


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="split"):
        TonesWorld(split="val")
    with pytest.raises(ValueError, match="max_events"):
        TonesWorld(max_events=4)
    with pytest.raises(ValueError, match="held-out pairs"):
        TonesWorld(heldout=(("sine", "ultra"),))
    with pytest.raises(IndexError):
        TonesWorld().clip(-1)
