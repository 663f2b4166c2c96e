"""An assistant that hears: <audio> placeholders, audio inputs as arrays, files and input_audio parts."""

import base64
import io

import numpy as np
import pytest
import torch

from polymodal.data.audio_io import AudioError

sf = pytest.importorskip("soundfile")


def tone(seconds=0.6, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)


def wav_bytes(wave, rate=16000):
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def test_audio_inputs_agree_across_forms(listener, tmp_path):
    assert listener.media == "audio" and listener.media_token == "<audio>"
    assert listener.model.tokens_per_image == 100
    wave = tone()
    path = tmp_path / "tone.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    from_array = listener.ask(wave, "is it loud or quiet?", max_tokens=5)
    assert listener.ask(str(path), "is it loud or quiet?", max_tokens=5) == from_array
    part = {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(wav_bytes(wave)).decode(), "format": "wav"},
    }
    messages = [{"role": "user", "content": [part, {"type": "text", "text": "is it loud or quiet?"}]}]
    assert listener.chat(messages, max_tokens=5) == from_array
    assert isinstance(listener.caption(wave, style="detailed", max_tokens=5), str)


def test_bad_audio_and_wrong_media_are_clear_errors(listener):
    with pytest.raises(AudioError, match="limit is 2 s"):
        listener.ask(tone(seconds=2.5), "what do you hear?")
    with pytest.raises(ValueError, match="not valid base64"):
        part = {"type": "input_audio", "input_audio": {"data": "%%%", "format": "wav"}}
        listener.chat([{"role": "user", "content": [part]}])
    with pytest.raises(ValueError, match="unsupported content part"):
        listener.chat([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])
    with pytest.raises(ValueError, match="hears audio"):
        listener.ground(tone(), "the sine tone")
    with pytest.raises(ValueError, match="reads audio, but images were given"):
        listener.model(torch.tensor([[1, 2]]), images=torch.zeros(1, 3, 8, 8))


def test_audio_batches_carry_log_mel(listener):
    from polymodal.data.assistant_batches import AssistantBatches
    from polymodal.data.audio_instructions import AudioInstructionDataConfig, AudioInstructionSamples
    from polymodal.models.assistant import assistant_loss

    samples = AudioInstructionSamples(AudioInstructionDataConfig(max_events=1, seed=4))
    batches = AssistantBatches(samples, listener.template, listener.audio_processor, 3, "instruct", 192)
    batch = batches.batch(0)
    assert "images" not in batch and batch["audio"].shape == (3, 32, 200)
    out = assistant_loss(listener.model.train(), batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    lm_batch = AssistantBatches(samples, listener.template, listener.audio_processor, 2, "lm", 192).batch(0)
    assert "audio" not in lm_batch and not (lm_batch["input_ids"] == listener.template.image_id).any()
    listener.model.eval()


@pytest.mark.parametrize("task", ["tones-caption", "tones-qa"])
def test_audio_assistant_tasks_run(listener, make_assistant, task):
    from polymodal.eval.tasks import run_task

    result = run_task(listener, task, n=3)
    key = "cider" if task == "tones-caption" else "qa_accuracy"
    assert result["n"] == 3 and result["metrics"][key] >= 0.0
    if task == "tones-qa":
        assert "qa_accuracy_heldout" in result["metrics"]
    with pytest.raises(ValueError, match="does not hear audio"):
        run_task(make_assistant("mlp"), task, n=2)
