"""Parity with transformers' Whisper: a tiny random checkpoint saved to a folder, converted into polymodal's
SpeechToText (AudioEncoder + cross-attending CausalLM), compared in fp32."""

import inspect

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from polymodal.interop.whisper import load_whisper_folder, whisper_spec  # noqa: E402
from polymodal.models.speech import SpeechToText  # noqa: E402
from polymodal.modules.audio import LogMelSpectrogram  # noqa: E402
from polymodal.modules.audio_encoder import sinusoids  # noqa: E402

TOLERANCE = 1e-4
SR = 16000
TINY = {
    "vocab_size": 100,
    "d_model": 64,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 160,
    "num_mel_bins": 80,
    "max_source_positions": 100,  # 200 mel frames = 2 s of audio
    "max_target_positions": 32,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "decoder_start_token_id": 3,
    "init_std": 0.2,  # larger than Whisper's 0.02 so greedy decoding of random weights is not constant
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    hf = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**TINY))
    with torch.no_grad():  # random biases and norms, so a dropped or misplaced one shows
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("tiny-whisper")
    hf.save_pretrained(path)
    transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=2).save_pretrained(path)
    tokenizer.tokenizer.save(str(path / "tokenizer.json"))  # the shared tiny world BPE stands in
    return path


@pytest.fixture(scope="module")
def models(folder):
    """The transformers oracle (eager attention: an independent code path) and polymodal's conversion."""
    hf = transformers.WhisperForConditionalGeneration.from_pretrained(folder, attn_implementation="eager")
    return hf.eval(), load_whisper_folder(folder)


def test_conversion_keeps_whisper_details(models):
    hf, checkpoint = models
    ours = checkpoint.model
    assert isinstance(ours, SpeechToText) and not ours.training
    assert ours.decoder.lm_head.weight is ours.decoder.token_embed.weight  # proj_out tied to embed_tokens
    assert ours.decoder.blocks[0].mlp.fc1.out_features == 160
    stored = hf.model.encoder.embed_positions.weight
    assert torch.equal(ours.encoder.pos_embed, stored)
    assert torch.allclose(sinusoids(100, 64), stored, atol=1e-6)  # our fresh table is Whisper's
    width = 64
    for block in ours.encoder.blocks.blocks:  # Whisper's k_proj has no bias
        assert not block.attn.qkv.bias[width : 2 * width].any()
    assert not ours.decoder.blocks[1].cross_attn.kv.bias[:width].any()
    assert checkpoint.mel.n_mels == 80 and checkpoint.mel.chunk_seconds == 2
    assert checkpoint.tokenizer.context_length == 32  # max_target_positions
    assert checkpoint.tokenizer.decode(checkpoint.tokenizer.encode("a red circle")) == "a red circle"


def test_encoder_states_and_logits_match(models):
    hf, checkpoint = models
    torch.manual_seed(1)
    mel = torch.randn(2, 80, 200)
    ids = torch.randint(3, 100, (2, 12))
    with torch.no_grad():
        expected = hf(input_features=mel, decoder_input_ids=ids)
        states = checkpoint.model.encode(mel)
        logits = checkpoint.model(mel, ids)
    assert (states - expected.encoder_last_hidden_state).abs().max() <= TOLERANCE
    assert (logits - expected.logits).abs().max() <= TOLERANCE


def hf_greedy(hf, mel, prompt, steps: int):
    """Transformers' own incremental greedy decoding (its KV cache), one token at a time."""
    with torch.no_grad():
        encoder_states = hf.model.encoder(mel).last_hidden_state
        out = hf(encoder_outputs=(encoder_states,), decoder_input_ids=prompt, use_cache=True)
        tokens = [out.logits[:, -1].argmax(-1)]
        # recent transformers call the cache argument "cache" ("past_key_values" is deprecated there)
        cache_arg = "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"
        for _ in range(steps - 1):
            out = hf(
                encoder_outputs=(encoder_states,),
                decoder_input_ids=tokens[-1][:, None],
                use_cache=True,
                **{cache_arg: out.past_key_values},
            )
            tokens.append(out.logits[:, -1].argmax(-1))
    return torch.stack(tokens, dim=1)


def test_greedy_decoding_with_cache_matches_transformers(models):
    hf, checkpoint = models
    torch.manual_seed(2)
    mel = torch.randn(3, 80, 200)
    prompt = torch.tensor([[3, 5], [3, 6], [3, 7]])
    expected = hf_greedy(hf, mel, prompt, 10)
    got = checkpoint.model.transcribe_ids(mel, prompt, max_new_tokens=10)
    assert got.tolist() == expected.tolist()
    assert len(set(got.flatten().tolist())) > 3  # varied tokens, so agreement is not a coincidence
    # and transformers' incremental decoding equals its full recomputation
    with torch.no_grad():
        full = hf(input_features=mel, decoder_input_ids=torch.cat([prompt, expected], 1)).logits
    assert full[:, 1:-1].argmax(-1).tolist() == expected.tolist()  # position i predicts token i + 1


def test_raw_audio_through_both_front_ends_gives_the_same_logits(models):
    hf, checkpoint = models
    t = np.arange(int(1.5 * SR)) / SR
    rng = np.random.default_rng(0)
    audio = 0.4 * np.sin(2 * np.pi * (220.0 * t + 300.0 * t**2)) + 0.05 * rng.standard_normal(t.size)
    fe = transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=2)
    hf_mel = fe(audio, sampling_rate=SR, return_tensors="pt").input_features
    our_mel = LogMelSpectrogram(checkpoint.mel)(torch.from_numpy(audio).float()[None])
    assert our_mel.shape == hf_mel.shape == (1, 80, 200)
    ids = torch.tensor([[3, 10, 20, 30, 40, 50]])
    with torch.no_grad():
        expected = hf(input_features=hf_mel, decoder_input_ids=ids).logits
        got = checkpoint.model(our_mel, ids)
    assert (got - expected).abs().max() <= TOLERANCE


def test_untied_output_projection_converts(tmp_path):
    torch.manual_seed(3)
    cfg = transformers.WhisperConfig(**{**TINY, "decoder_layers": 1, "tie_word_embeddings": False})
    hf = transformers.WhisperForConditionalGeneration(cfg).eval()
    hf.save_pretrained(tmp_path)
    ours = load_whisper_folder(tmp_path).model
    assert ours.decoder.lm_head.weight is not ours.decoder.token_embed.weight
    mel, ids = torch.randn(1, 80, 200), torch.randint(3, 100, (1, 5))
    with torch.no_grad():
        assert (
            ours(mel, ids) - hf(input_features=mel, decoder_input_ids=ids).logits
        ).abs().max() <= TOLERANCE


def test_polymodal_load_transcribes_as_transformers_decodes(models, folder, tmp_path):
    import soundfile as sf

    import polymodal
    from polymodal.pipelines.speech import SpeechPipeline

    hf, checkpoint = models
    pipeline = polymodal.load(str(folder))
    assert isinstance(pipeline, SpeechPipeline) and pipeline.model.config.prompt_ids == [3]
    t = np.arange(int(1.2 * SR)) / SR
    audio = (0.3 * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)
    hf_mel = transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=2)(
        audio, sampling_rate=SR, return_tensors="pt"
    ).input_features
    room = 32 - 1
    expected_ids = hf_greedy(hf, hf_mel, torch.tensor([[3]]), room)[0].tolist()
    if 2 in expected_ids:  # the EOS id ends the transcript
        expected_ids = expected_ids[: expected_ids.index(2)]
    expected = checkpoint.tokenizer.decode(expected_ids).strip()
    assert pipeline.transcribe([audio], sample_rate=SR) == [expected]
    path = tmp_path / "clip.wav"
    sf.write(path, audio, SR, subtype="FLOAT")
    assert pipeline.transcribe([path]) == [expected]
    too_long = np.zeros(3 * SR, np.float32)
    with pytest.raises(ValueError, match="limit is 2 s"):
        pipeline.transcribe([too_long], sample_rate=SR)


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="not a Whisper config: .*d_model"):
        whisper_spec({"hidden_size": 64})
    cfg = transformers.WhisperConfig(**{**TINY, "activation_function": "relu"}).to_dict()
    with pytest.raises(ValueError, match="activation 'relu'"):
        whisper_spec(cfg)


def test_a_non_whisper_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no transformers Whisper checkpoint"):
        load_whisper_folder(tmp_path)
