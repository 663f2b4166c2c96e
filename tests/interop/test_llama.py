"""Parity with transformers' Llama: a tiny random model (RMSNorm, rotary, SwiGLU, grouped-query attention)
converted into polymodal's CausalLM."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from polymodal.generate import generate  # noqa: E402
from polymodal.interop.llama import convert_llama, llama_config  # noqa: E402


def tiny_llama(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**(cfg | overrides))).eval()
    with torch.no_grad():  # non-trivial norm weights, so a norm left unconverted shows up
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.add_(0.5 * torch.randn_like(p))
    return hf


@pytest.fixture(scope="module")
def models():
    hf = tiny_llama()
    return hf, convert_llama(hf)


def left_padded(batch: int, length: int, pads: dict[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (3..63) with ``pads[row]`` leading pad tokens (id 0) and their keep-mask."""
    ids = torch.randint(3, 64, (batch, length))
    mask = torch.ones_like(ids)
    for row, n in pads.items():
        ids[row, :n], mask[row, :n] = 0, 0
    return ids, mask


def test_config_maps_llama_options(models):
    _, ours = models
    c = ours.config
    assert (c.norm, c.positions, c.mlp, c.kv_heads, c.mlp_hidden) == ("rmsnorm", "rotary", "swiglu", 2, 64)
    assert c.bias is False and c.tie_embeddings is False and c.norm_eps == 1e-6
    assert not hasattr(ours, "pos_embed")


def test_logits_match(models):
    hf, ours = models
    ids = torch.randint(3, 64, (2, 11))
    with torch.no_grad():
        expected = hf(ids).logits
        got = ours(ids)
    assert (got - expected).abs().max() <= 1e-4


def test_left_padded_logits_match(models):
    hf, ours = models
    ids, mask = left_padded(2, 9, {0: 4})
    position_ids = (mask.cumsum(1) - 1).masked_fill(mask == 0, 1)  # what transformers' generate passes
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, position_ids=position_ids).logits
        got = ours(ids, attention_mask=mask)
    real = mask.bool()
    assert (got[real] - expected[real]).abs().max() <= 1e-4


def test_cached_chunks_match_one_pass(models):
    _, ours = models
    ids, mask = left_padded(2, 10, {1: 3})
    with torch.no_grad():
        full = ours(ids, attention_mask=mask)
        cache = ours.new_cache()
        first = ours(ids[:, :6], attention_mask=mask[:, :6], cache=cache)
        second = ours(ids[:, 6:], attention_mask=mask, cache=cache)
    real = mask.bool()
    assert (torch.cat([first, second], dim=1)[real] - full[real]).abs().max() <= 1e-5


def test_greedy_generation_matches_transformers(models):
    hf, ours = models
    ids, mask = left_padded(3, 6, {1: 2, 2: 4})
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)[:, 6:]
    got = generate(ours, ids, mask, max_new_tokens=8, eos_id=2, pad_id=0)
    assert got.tolist() == expected.tolist()


def test_tied_head_and_biases_convert():
    hf = tiny_llama(
        seed=1, tie_word_embeddings=True, attention_bias=True, mlp_bias=True, num_key_value_heads=4
    )
    ours = convert_llama(hf)
    assert ours.lm_head.weight is ours.token_embed.weight
    assert ours.config.kv_heads == 4 and ours.config.bias
    ids = torch.randint(0, 64, (1, 7))
    with torch.no_grad():
        assert (ours(ids) - hf(ids).logits).abs().max() <= 1e-4


def test_unsupported_options_raise():
    base = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4).to_dict()
    scaled = base | {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}}
    with pytest.raises(ValueError, match="rope type 'linear'"):
        llama_config(scaled)
    with pytest.raises(ValueError, match="head_dim"):
        llama_config(base | {"head_dim": 16})
    with pytest.raises(ValueError, match="hidden_act"):
        llama_config(base | {"hidden_act": "gelu"})
    with pytest.raises(ValueError, match="not a Llama config"):
        llama_config({"n_embd": 32})
