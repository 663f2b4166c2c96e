import pytest
import torch

from polymodal.config import ConfigError
from polymodal.data.chat import IGNORE
from polymodal.generate import generate
from polymodal.models.speech import EncoderConditionedLM, SpeechToText, SpeechToTextConfig, speech_loss
from polymodal.modules.decoder import CausalLM, DecoderConfig
from polymodal.registry import ModelSpec, build_model

AUDIO = {"type": "audio", "n_mels": 16, "max_positions": 12, "width": 32, "depth": 1, "heads": 4}
DECODER = {"vocab_size": 50, "context_length": 24, "width": 48, "depth": 2, "heads": 4}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_model(seed: int = 0, **decoder) -> SpeechToText:
    torch.manual_seed(seed)
    spec = ModelSpec(architecture="speech_to_text", model={"audio": AUDIO, "decoder": {**DECODER, **decoder}})
    spec.validate()
    return build_model(spec)


@pytest.fixture(scope="module")
def model():
    model = tiny_model().eval()
    with torch.no_grad():  # larger random weights: varied greedy outputs, far from ties
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return model


def test_registry_builds_a_cross_attending_decoder(model):
    assert isinstance(model, SpeechToText)
    assert model.decoder.config.cross_attention and model.decoder.config.cross_width == 32
    assert model.decoder.blocks[0].cross_attn.kv.in_features == 32


def test_forward_backward_gives_finite_grads_everywhere():
    model = tiny_model(seed=1).train()
    ids = torch.randint(0, 50, (3, 9))
    labels = ids.clone()
    labels[:, :3] = IGNORE  # the prompt carries no loss
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[2, :2] = False
    batch = {"mel": torch.randn(3, 16, 23), "input_ids": ids, "labels": labels, "attention_mask": mask}
    out = speech_loss(model, batch)
    assert set(out) == {"loss", "token_accuracy"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.encoder.conv1.weight.grad.abs().sum() > 0  # the loss reaches the audio
    assert model.decoder.blocks[1].cross_attn.q.weight.grad.abs().sum() > 0


def test_loss_ignores_unlabelled_positions(model):
    mel, ids = torch.randn(1, 16, 20), torch.randint(0, 50, (1, 6))
    labels = torch.full_like(ids, IGNORE)
    labels[0, 5] = ids[0, 5]
    logits = model(mel, ids)
    expected = torch.nn.functional.cross_entropy(logits[0, 4:5], ids[0, 5:6])
    assert torch.allclose(
        speech_loss(model, {"mel": mel, "input_ids": ids, "labels": labels})["loss"], expected
    )


def test_cache_gives_the_same_logits_as_no_cache(model):
    mel, ids = torch.randn(2, 16, 24), torch.randint(0, 50, (2, 10))
    states = model.encode(mel)
    with torch.no_grad():
        full = model.decoder(ids, encoder_states=states)
        cache = model.decoder.new_cache()
        steps = [model.decoder(ids[:, :4], cache=cache, encoder_states=states)]
        assert all(kv is not None for kv in cache.cross)  # projected once, on the first call
        first_keys = cache.cross[0][0]
        steps += [model.decoder(ids[:, t : t + 1], cache=cache) for t in range(4, 10)]
    assert cache.cross[0][0] is first_keys
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-5


def test_encoder_mask_equals_dropping_the_masked_states(model):
    mel, ids = torch.randn(2, 16, 24), torch.randint(0, 50, (2, 5))
    states = model.encode(mel)
    keep = torch.ones(2, 12, dtype=torch.bool)
    keep[:, 9:] = False
    with torch.no_grad():
        masked = model.decoder(ids, encoder_states=states, encoder_mask=keep)
        dropped = model.decoder(ids, encoder_states=states[:, :9])
        cache = model.decoder.new_cache()
        model.decoder(ids[:, :3], cache=cache, encoder_states=states, encoder_mask=keep)
        cached = model.decoder(ids[:, 3:], cache=cache)  # the mask is cached with the keys
    assert (masked - dropped).abs().max() < 1e-5
    assert (cached - dropped[:, 3:]).abs().max() < 1e-5


def manual_greedy(model: SpeechToText, mel, prompt, steps: int):
    """Reference decoding: the whole sequence through the model at every step, no cache."""
    seq = prompt
    with torch.no_grad():
        for _ in range(steps):
            seq = torch.cat([seq, model(mel, seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return seq[:, prompt.shape[1] :]


def test_transcribe_ids_equals_greedy_without_cache(model):
    mel, prompt = torch.randn(3, 16, 24), torch.tensor([[1, 2], [1, 3], [1, 4]])
    got = model.transcribe_ids(mel, prompt, max_new_tokens=10)
    assert got.shape == (3, 10)
    assert got.tolist() == manual_greedy(model, mel, prompt, 10).tolist()
    assert len(set(got.flatten().tolist())) > 3  # the check discriminates: outputs are not constant


def test_transcribe_ids_shares_a_1d_prompt_and_stops_at_eos(model):
    mel = torch.randn(2, 16, 24)
    free = model.transcribe_ids(mel, torch.tensor([1, 2]), max_new_tokens=6)
    assert torch.equal(free, model.transcribe_ids(mel, torch.tensor([[1, 2], [1, 2]]), max_new_tokens=6))
    eos = int(free[0, 2])
    stopped = model.transcribe_ids(mel, torch.tensor([1, 2]), max_new_tokens=6, eos_id=eos)
    first = free[0].tolist().index(eos)
    assert stopped[0, : first + 1].tolist() == free[0, : first + 1].tolist()
    assert (stopped[0, first:] == eos).all()


def test_left_padded_prompts_decode_like_unpadded_ones(model):
    mel = torch.randn(2, 16, 24)
    ids = torch.tensor([[0, 0, 1, 5], [1, 6, 7, 8]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    batch = model.transcribe_ids(mel, ids, max_new_tokens=5, attention_mask=mask)
    alone = model.transcribe_ids(mel[:1], torch.tensor([[1, 5]]), max_new_tokens=5)
    assert batch[0].tolist() == alone[0].tolist()


def test_cache_reorder_moves_the_encoder_keys_too(model):
    mel, prompt = torch.randn(2, 16, 24), torch.tensor([[1, 2], [1, 3]])
    lm = EncoderConditionedLM(model.decoder, model.encode(mel))
    with torch.no_grad():
        cache = lm.new_cache()
        lm(prompt, cache=cache)
        cache.reorder(torch.tensor([1, 1, 0]))  # beam search duplicates and swaps rows
        step = lm(torch.tensor([[9], [9], [9]]), cache=cache)[:, -1]
        expected = model(mel, torch.cat([prompt, torch.full((2, 1), 9)], dim=1))[:, -1]
    assert (step - expected[[1, 1, 0]]).abs().max() < 1e-5


def test_generate_drives_the_conditioned_lm(model):
    mel, prompt = torch.randn(1, 16, 24), torch.tensor([[1, 2]])
    lm = EncoderConditionedLM(model.decoder, model.encode(mel))
    assert generate(lm, prompt, max_new_tokens=4).tolist() == manual_greedy(model, mel, prompt, 4).tolist()


@pytest.mark.parametrize(
    ("mel", "ids", "message"),
    [
        (torch.randn(2, 8, 24), torch.zeros(2, 3, dtype=torch.long), r"shape \(batch, 16, frames\)"),
        (torch.randn(16, 24), torch.zeros(1, 3, dtype=torch.long), r"shape \(batch, 16, frames\)"),
        (torch.randn(2, 16, 25), torch.zeros(2, 3, dtype=torch.long), "25 mel frames exceed"),
        (torch.randn(2, 16, 24), torch.zeros(3, 3, dtype=torch.long), "2 audio clip"),
        (torch.randn(2, 16, 24), torch.zeros(3, dtype=torch.long), r"\(batch, tokens\)"),
    ],
)
def test_bad_inputs_raise_clear_errors(model, mel, ids, message):
    with pytest.raises(ValueError, match=message):
        model(mel, ids)


def test_decoder_checks_its_encoder_inputs(model):
    ids, states = torch.zeros(1, 3, dtype=torch.long), torch.randn(1, 5, 32)
    with pytest.raises(ValueError, match=r"needs encoder_states \(1, S, 32\), got None"):
        model.decoder(ids)
    with pytest.raises(ValueError, match=r"got \(1, 5, 48\)"):
        model.decoder(ids, encoder_states=torch.randn(1, 5, 48))
    with pytest.raises(ValueError, match="encoder_mask must be"):
        model.decoder(ids, encoder_states=states, encoder_mask=torch.ones(1, 4, dtype=torch.bool))
    cache = model.decoder.new_cache()
    model.decoder(ids, cache=cache, encoder_states=states)
    with pytest.raises(ValueError, match="pass encoder_states only once"):
        model.decoder(ids[:, :1], cache=cache, encoder_states=states)
    plain = CausalLM(DecoderConfig(**DECODER))
    assert not hasattr(plain.blocks[0], "cross_attn") or plain.blocks[0].cross_attn is None
    with pytest.raises(ValueError, match="no cross-attention"):
        plain(ids, encoder_states=states)


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="cross_attention must be true"):
        SpeechToTextConfig(audio=AUDIO, decoder={**DECODER, "cross_attention": False}).validate()
    with pytest.raises(ConfigError, match="cross_width 40 differs"):
        SpeechToTextConfig(audio=AUDIO, decoder={**DECODER, "cross_width": 40}).validate()
    with pytest.raises(ConfigError, match="unknown key"):
        SpeechToTextConfig(audio=AUDIO, decoder={**DECODER, "crosswidth": 32}).validate()
