"""A tiny random CLAP-style pipeline: embed_audio from files and arrays, save/load, zero-shot, the tasks."""

import numpy as np
import pytest

import polymodal
from polymodal.data.audio_io import AudioError

sf = pytest.importorskip("soundfile")


def sine(seconds=0.5, rate=16000, hz=440.0):
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_files_and_arrays_embed_alike(clap, tmp_path):
    wave = sine(rate=22050)
    path = tmp_path / "a.wav"
    sf.write(path, wave, 22050)
    from_file = clap.embed_audio([path])
    from_array = clap.embed_audio([wave], sample_rate=22050)
    assert from_file.shape == (1, 16)
    np.testing.assert_allclose(np.linalg.norm(from_file, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(from_file, from_array, atol=1e-3)  # WAV is 16-bit PCM


def test_bad_audio_is_a_clear_error(clap, tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError):
        clap.embed_audio([junk])
    with pytest.raises(AudioError):
        clap.embed_audio([sine()])  # an array without its sample rate
    with pytest.raises(TypeError, match="wrap a single one"):
        clap.embed_audio(sine(), sample_rate=16000)


def test_saved_folder_loads_and_classifies(clap, tmp_path):
    folder = clap.save(tmp_path / "clap")
    loaded = polymodal.load(str(folder))
    assert loaded.model.modality == "audio"
    np.testing.assert_allclose(
        loaded.embed_text(["a sine tone"]), clap.embed_text(["a sine tone"]), atol=1e-6
    )
    probs = loaded.classify([sine()], ["a sine tone", "clicks"], sample_rate=16000)
    assert list(probs[0]) == ["a sine tone", "clicks"] and abs(sum(probs[0].values()) - 1) < 1e-5


def test_image_model_refuses_audio(tiny_pipeline):
    with pytest.raises(ValueError, match="embeds images, not audio"):
        tiny_pipeline.embed_audio([sine()], sample_rate=16000)


@pytest.mark.parametrize("task", ["tones-retrieval", "tones-zeroshot"])
def test_audio_tasks_run_with_the_common_shape(clap, task):
    from polymodal.eval.tasks import run_task

    result = run_task(clap, task, n=24)
    assert result["task"] == task and result["n"] == 24
    key = "a2t_r1" if task == "tones-retrieval" else "accuracy"
    assert 0.0 <= result["metrics"][key] <= 1.0
