"""Parity with transformers' GPT-2: a tiny random model converted into polymodal's CausalLM."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from polymodal.generate import generate  # noqa: E402
from polymodal.interop.gpt2 import convert_gpt2, gpt2_config  # noqa: E402


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2
    )
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    return hf, convert_gpt2(hf)


def test_logits_match(models):
    hf, ours = models
    ids = torch.randint(3, 64, (2, 11))
    with torch.no_grad():
        expected = hf(ids).logits
        got = ours(ids)
    assert (got - expected).abs().max() <= 1e-4
    assert ours.lm_head.weight is ours.token_embed.weight


def test_left_padded_logits_match(models):
    hf, ours = models
    ids = torch.randint(3, 64, (2, 9))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    ids[0, :4] = 0
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)  # what transformers' generate passes for left padding
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, position_ids=position_ids).logits
        got = ours(ids, attention_mask=mask)
    real = mask.bool()
    assert (got[real] - expected[real]).abs().max() <= 1e-4


def test_greedy_generation_matches_transformers(models):
    hf, ours = models
    ids = torch.randint(3, 64, (2, 6))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    ids[1, :2] = 0
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)[:, 6:]
    got = generate(ours, ids, mask, max_new_tokens=8, eos_id=2, pad_id=0)
    assert got.tolist() == expected.tolist()


def test_unsupported_options_raise():
    cfg = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=4, reorder_and_upcast_attn=True)
    with pytest.raises(ValueError, match="reorder_and_upcast_attn"):
        gpt2_config(cfg.to_dict())
    with pytest.raises(ValueError, match="not a GPT-2 config"):
        gpt2_config({"hidden_size": 32})


def test_untied_head_converts():
    torch.manual_seed(1)
    cfg = transformers.GPT2Config(
        vocab_size=40, n_positions=16, n_embd=16, n_layer=1, n_head=2, tie_word_embeddings=False
    )
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    ours = convert_gpt2(hf)
    assert ours.lm_head.weight is not ours.token_embed.weight
    ids = torch.randint(0, 40, (1, 7))
    with torch.no_grad():
        assert (ours(ids) - hf(ids).logits).abs().max() <= 1e-4
