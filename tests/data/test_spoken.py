import io
import shutil
import subprocess

import numpy as np
import pytest

from polymodal.config import ConfigError, from_dict
from polymodal.data.worlds.spoken import (
    DEFAULT_TEST_VOICES,
    DEFAULT_TRAIN_VOICES,
    EVAL_TEMPLATES,
    VOCABULARY,
    EspeakError,
    SpokenConfig,
    SpokenWorld,
    Utterance,
    captions,
    questions,
)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture
def world(tmp_path) -> SpokenWorld:
    return SpokenWorld(SpokenConfig(seed=3, cache_dir=str(tmp_path / "cache"), workers=2))


# ---------------------------------------------------------------- without audio


def test_utterances_are_deterministic_in_seed_split_and_index(world):
    same = SpokenWorld(SpokenConfig(seed=3))
    assert [world.utterance(i) for i in range(20)] == [same.utterance(i) for i in range(20)]
    assert world.utterance(0, "train") != world.utterance(0, "test")
    other_seed = SpokenWorld(SpokenConfig(seed=4))
    assert [world.utterance(i) for i in range(5)] != [other_seed.utterance(i) for i in range(5)]


def test_held_out_voices_never_speak_the_train_split(world):
    train = {world.utterance(i, "train").voice for i in range(600)}
    test = {world.utterance(i, "test").voice for i in range(200)}
    assert train <= set(DEFAULT_TRAIN_VOICES) and len(train) > 40
    assert test == set(DEFAULT_TEST_VOICES)
    assert not train & test


def test_utterances_respect_the_config_ranges():
    cfg = SpokenConfig(min_words=2, max_words=3, speed_range=(150, 160), pitch_range=(10, 20))
    utts = [SpokenWorld(cfg).utterance(i) for i in range(200)]
    assert {len(u.words) for u in utts} == {2, 3}
    assert all(150 <= u.speed <= 160 and 10 <= u.pitch <= 20 for u in utts)
    assert all(w in VOCABULARY for u in utts for w in u.words)
    assert all(u.text == u.text.lower() and "  " not in u.text for u in utts)


def test_vocabulary_has_digits_colours_shapes_and_commands(world):
    classes = world.classes()
    assert classes[:10] == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert {"red", "blue", "circle", "triangle", "stop", "go", "left"} <= set(classes)
    assert len(classes) == len(set(classes)) >= 30
    assert world.label(Utterance("circle", "en", 170, 50)) == classes.index("circle")
    with pytest.raises(ValueError, match="one-word"):
        world.label(Utterance("red circle", "en", 170, 50))


def test_captions_and_questions_follow_the_transcript():
    utt = Utterance("red circle red", "en", 170, 50)
    assert captions(utt)[0] == "red circle red"
    assert captions(utt, EVAL_TEMPLATES) == [
        "a recording of someone saying red circle red",
        "the spoken words red circle red",
    ]
    qa = {q.question: q.answer for q in questions(utt)}
    assert qa["how many words are spoken?"] == "three"
    assert qa["what is the first word?"] == "red" and qa["what is the last word?"] == "red"
    exists = [q for q in questions(utt) if q.kind == "exists"]
    assert [q.answer for q in exists].count("yes") == [q.answer for q in exists].count("no") == 2
    assert questions(utt) == questions(utt)


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"test_voices": ["en+m1"]}, "both train_voices and test_voices"),
        ({"vocabulary": ["red", "Blue"]}, "lowercase"),
        ({"vocabulary": ["red", "red"]}, "unique"),
        ({"vocabulary": ["-v"]}, "lowercase"),
        ({"min_words": 3, "max_words": 2}, "min_words"),
        ({"max_words": 12}, "max_words"),
        ({"speed_range": [50, 100]}, "speed_range"),
        ({"pitch_range": [60, 40]}, "pitch_range"),
        ({"train_voices": ["en; rm -rf /"]}, "voice names"),
        ({"train_voices": []}, "voice names"),
        ({"sample_rate": 4000}, "too low"),
        ({"voices": ["en"]}, "unknown key 'voices'"),
    ],
)
def test_config_rejects_what_cannot_work(overrides, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(SpokenConfig, overrides)


def test_unknown_split_and_negative_index(world):
    with pytest.raises(ValueError, match="unknown split"):
        world.utterance(0, "heldout")
    with pytest.raises(IndexError):
        world.utterance(-1)


def test_missing_espeak_says_how_to_install_it(tmp_path, monkeypatch):
    from polymodal.data.worlds import spoken

    spoken.espeak_variants.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))
    world = SpokenWorld(SpokenConfig(use_cache=False))
    with pytest.raises(EspeakError, match="apt-get install espeak-ng"):
        world.sample(0)
    spoken.espeak_variants.cache_clear()


# ---------------------------------------------------------------- with espeak-ng


@needs_espeak
def test_samples_are_16_khz_float32_and_not_silent(world):
    s = world.sample(0)
    assert s.sample_rate == 16000 and s.waveform.dtype == np.float32 and s.waveform.ndim == 1
    assert np.sqrt(np.mean(s.waveform**2)) > 0.01
    assert (s.text, s.voice, s.speed, s.pitch) == tuple(world.utterance(0).__dict__.values())


@needs_espeak
def test_resampling_keeps_espeaks_duration(world):
    sf = pytest.importorskip("soundfile")
    utt = Utterance("seven purple triangles", "en-us+f2", 170, 50)
    cmd = ["espeak-ng", "--stdout", "-v", utt.voice, "-s", "170", "-p", "50", utt.text]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    with sf.SoundFile(io.BytesIO(raw)) as f:
        seconds = f.frames / f.samplerate
    assert abs(len(world.synthesize(utt)) / 16000 - seconds) < 1e-3


@needs_espeak
def test_synthesis_is_deterministic_and_the_cache_returns_the_same_clip(world, tmp_path):
    uncached = SpokenWorld(SpokenConfig(seed=3, use_cache=False))
    first = world.sample(5)
    files = list(world.cache_dir.glob("*.npy"))
    assert len(files) == 1
    np.testing.assert_array_equal(first.waveform, uncached.sample(5).waveform)
    np.testing.assert_array_equal(world.sample(5).waveform, first.waveform)
    files[0].write_bytes(b"half a file")  # a process killed mid-write: the clip is made again
    np.testing.assert_array_equal(world.sample(5).waveform, first.waveform)
    assert not list(world.cache_dir.glob(".tmp-*"))


@needs_espeak
def test_duration_grows_with_word_count(world):
    words = ["seven", "red", "circle", "stop"]
    lengths = [len(world.synthesize(Utterance(" ".join(words[:n]), "en+m1", 170, 50))) for n in range(1, 5)]
    assert lengths == sorted(lengths) and len(set(lengths)) == 4
    assert lengths[-1] > 2 * lengths[0]


@needs_espeak
def test_batch_helper_matches_one_by_one(world):
    batch = world.samples(range(6), split="test")
    for i, s in enumerate(batch):
        assert s.text == world.utterance(i, "test").text
        np.testing.assert_array_equal(s.waveform, world.sample(i, "test").waveform)


@needs_espeak
def test_voices_differ_audibly(world):
    a = world.synthesize(Utterance("go", "en+m1", 170, 50))
    b = world.synthesize(Utterance("go", "en+f4", 170, 50))
    assert len(a) != len(b) or not np.allclose(a, b)


@needs_espeak
def test_unknown_voice_variant_is_an_error_not_a_silent_default(tmp_path):
    world = SpokenWorld(SpokenConfig(train_voices=("en+nosuchvariant",), use_cache=False))
    with pytest.raises(EspeakError, match="no voice variant 'nosuchvariant'"):
        world.sample(0)
    world = SpokenWorld(SpokenConfig(train_voices=("xx-nolanguage",), use_cache=False))
    with pytest.raises(EspeakError, match="espeak-ng failed"):
        world.sample(0)
