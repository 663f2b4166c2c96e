"""The voice assistant with the shipped models: a spoken question about a scene, answered out loud."""

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import polymodal

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
sf = pytest.importorskip("soundfile")


@pytest.fixture(scope="module")
def scene_image():
    from polymodal.data.worlds.shapes import ShapesWorld

    world = ShapesWorld(seed=3, split="test", min_objects=2, max_objects=2)
    return world.render(world.scene(0))


def test_spoken_question_is_heard_answered_and_spoken(scene_image):
    from polymodal.pipelines.voice import speak, voice_reply

    question = speak("how many shapes are there", voice="en-gb-x-rp+f3")  # a voice never trained on
    reply = voice_reply(polymodal.load("tiny-asr"), polymodal.load("tiny-assistant"), question, scene_image,
                        sample_rate=16000)  # fmt: skip
    assert reply.question == "how many shapes are there"
    assert reply.answer == "two"
    assert reply.sample_rate == 16000 and np.abs(reply.audio).max() > 0.05


def test_voice_cli_writes_the_spoken_answer(scene_image, tmp_path):
    from polymodal.cli import app
    from polymodal.pipelines.voice import speak

    question, image, out = tmp_path / "q.wav", tmp_path / "scene.png", tmp_path / "answer.wav"
    sf.write(question, speak("how many shapes are there", voice="en-us+m4"), 16000)
    scene_image.save(image)
    result = CliRunner().invoke(app, ["voice", str(question), "--image", str(image), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "answer: two" in result.output
    wave, rate = sf.read(out)
    assert rate == 16000 and len(wave) > 1600
    silent = tmp_path / "silence.wav"
    sf.write(silent, np.zeros(8000, np.float32), 16000)
    result = CliRunner().invoke(app, ["voice", str(silent), "--image", str(image), "-o", str(out)])
    assert result.exit_code == 2 and "silent" in result.output


def test_speak_refuses_empty_text():
    from polymodal.pipelines.voice import speak

    with pytest.raises(ValueError, match="nothing to say"):
        speak("   ")
