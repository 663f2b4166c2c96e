import pytest
import torch

from polymodal.config import ConfigError
from polymodal.modules.decoder import CausalLM, DecoderConfig


def tiny(**overrides) -> CausalLM:
    torch.manual_seed(0)
    cfg = dict(vocab_size=50, context_length=16, width=32, depth=2, heads=4)
    return CausalLM(DecoderConfig(**(cfg | overrides))).eval()


def test_logits_shape_and_tied_head():
    model = tiny()
    ids = torch.randint(0, 50, (2, 7))
    assert model(ids).shape == (2, 7, 50)
    assert model.lm_head.weight is model.token_embed.weight
    assert tiny(tie_embeddings=False).lm_head.weight is not tiny().token_embed.weight


def test_causal_future_tokens_do_not_change_past_logits():
    model = tiny()
    ids = torch.randint(0, 50, (1, 8))
    changed = ids.clone()
    changed[0, 5:] = (changed[0, 5:] + 1) % 50
    torch.testing.assert_close(model(ids)[:, :5], model(changed)[:, :5])
    assert not torch.allclose(model(ids)[:, 5:], model(changed)[:, 5:])


def test_cached_decoding_matches_full_forward():
    model = tiny()
    ids = torch.randint(0, 50, (2, 10))
    full = model(ids)
    cache = model.new_cache()
    steps = [model(ids[:, :4], cache=cache), model(ids[:, 4:7], cache=cache)]
    steps += [model(ids[:, i : i + 1], cache=cache) for i in range(7, 10)]
    assert cache.length == 10
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_left_padding_gives_the_unpadded_logits_with_and_without_cache():
    model = tiny()
    ids = torch.randint(1, 50, (1, 6))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    batch = torch.cat([padded, torch.randint(1, 50, (1, 9))])
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, :3] = False
    reference = model(ids)
    out = model(batch, attention_mask=mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:1, 3:], reference, atol=1e-5, rtol=1e-5)
    cache = model.new_cache()
    first = model(batch[:, :5], attention_mask=mask[:, :5], cache=cache)
    rest = [model(batch[:, i : i + 1], cache=cache) for i in range(5, 9)]
    torch.testing.assert_close(torch.cat([first, *rest], dim=1)[:, 3:], out[:, 3:], atol=1e-5, rtol=1e-5)


def test_inputs_embeds_equal_token_path():
    model = tiny()
    ids = torch.randint(0, 50, (2, 5))
    torch.testing.assert_close(model(inputs_embeds=model.token_embed(ids)), model(ids))
    with pytest.raises(ValueError, match="exactly one"):
        model(ids, inputs_embeds=model.token_embed(ids))


def test_no_bias_config_has_no_linear_biases():
    model = tiny(bias=False)
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert model(torch.randint(0, 50, (1, 4))).shape == (1, 4, 50)


def test_bad_inputs_raise_clear_errors():
    model = tiny()
    with pytest.raises(ValueError, match="context length"):
        model(torch.zeros(1, 17, dtype=torch.long))
    cache = model.new_cache()
    model(torch.zeros(1, 10, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="context length"):
        model(torch.zeros(1, 7, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match=r"\[0, 50\)"):
        model(torch.full((1, 3), 50))
    with pytest.raises(ValueError, match="attention_mask shape"):
        model(torch.zeros(1, 3, dtype=torch.long), attention_mask=torch.ones(1, 5))
    with pytest.raises(ConfigError, match="divisible"):
        DecoderConfig(width=30, heads=4).validate()
    with pytest.raises(ConfigError, match="act"):
        DecoderConfig(act="relu").validate()
