"""A tiny random speech recogniser: transcribe from files and arrays, save/load, limits, CLI, eval task."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import polymodal
from polymodal.data.audio_io import AudioError

sf = pytest.importorskip("soundfile")

TINY_ASR = {
    "audio": {"n_mels": 32, "max_positions": 200, "width": 32, "depth": 1, "heads": 2},
    "decoder": {"width": 32, "depth": 1, "heads": 2},
}


@pytest.fixture(scope="module")
def asr():
    from polymodal.data.tokenizer import TextTokenizer
    from polymodal.data.worlds.spoken import VOCABULARY
    from polymodal.pipelines import pipeline_for
    from polymodal.registry import build_model, get_spec

    tokenizer = TextTokenizer.train_bpe(list(VOCABULARY) * 3, vocab_size=96, context_length=12)
    torch.manual_seed(0)
    overrides = TINY_ASR | {"decoder": TINY_ASR["decoder"] | {"vocab_size": tokenizer.vocab_size}}
    spec = get_spec("tiny-asr", **overrides)
    spec = replace(spec, name="asr-test", audio_processor={"n_mels": 32, "max_seconds": 4})
    return pipeline_for(spec, build_model(spec), None, tokenizer=tokenizer)


def noise(seconds=0.8, rate=16000):
    return (0.2 * np.random.default_rng(0).standard_normal(int(seconds * rate))).astype(np.float32)


def test_transcribe_files_and_arrays_alike(asr, tmp_path):
    wave = noise()
    path = tmp_path / "a.flac"
    sf.write(path, wave, 16000, subtype="PCM_24")
    from_array = asr.transcribe([wave, wave], sample_rate=16000)
    assert len(from_array) == 2 and from_array[0] == from_array[1] and isinstance(from_array[0], str)
    assert asr.transcribe([path]) == from_array[:1]


def test_limits_and_bad_input(asr, tmp_path):
    with pytest.raises(AudioError, match="limit is 4 s"):
        asr.transcribe([noise(seconds=4.5)], sample_rate=16000)
    with pytest.raises(TypeError, match="wrap a single one"):
        asr.transcribe(noise(), sample_rate=16000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    with pytest.raises(AudioError):
        asr.transcribe([bad])


def test_saved_folder_round_trip_and_cli(asr, tmp_path):
    from polymodal.cli import app

    folder = asr.save(tmp_path / "asr")
    loaded = polymodal.load(str(folder))
    wave = noise()
    assert loaded.transcribe([wave], sample_rate=16000) == asr.transcribe([wave], sample_rate=16000)
    clip = tmp_path / "clip.wav"
    sf.write(clip, wave, 16000)
    result = CliRunner().invoke(app, ["transcribe", str(clip), "-m", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["file"] == str(clip)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio" * 20)
    result = CliRunner().invoke(app, ["transcribe", str(junk), "-m", str(folder)])
    assert result.exit_code == 2 and "error:" in result.output
    result = CliRunner().invoke(app, ["transcribe", str(clip), "-m", "tiny-clip"])
    assert result.exit_code == 2 and "not a speech model" in result.output


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_spoken_asr_task_scores_held_out_voices(asr):
    from polymodal.eval.tasks import run_task

    result = run_task(asr, "spoken-asr", n=6)
    metrics = result["metrics"]
    assert result["n"] == 6 and metrics["wer"] >= 0.0 and len(metrics["examples"]) == 5
    assert {"wer_questions", "wer_words"} <= set(metrics)
