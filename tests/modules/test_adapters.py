import pytest
import torch

from polymodal.config import ConfigError, from_dict
from polymodal.modules.adapters import ADAPTER_TYPES, AdapterConfig, build_adapter

SOURCE, TARGET, N, QUERIES, LM_DEPTH = 24, 32, 10, 5, 4
SPLICED = {"linear": N, "mlp": N, "qformer": QUERIES, "perceiver": QUERIES, "xattn": 0, "mlp-context": N}
# every adapter type, and the mlp adapter with bidirectional context layers over its tokens
VARIANTS = (*ADAPTER_TYPES, "mlp-context")


def make(kind: str, **overrides):
    torch.manual_seed(0)
    if kind == "mlp-context":
        kind, overrides = "mlp", {"context_layers": 2} | overrides
    fields = dict(type=kind, queries=QUERIES, depth=2, heads=4, source_tokens=16) | overrides
    return build_adapter(AdapterConfig(**fields), SOURCE, TARGET, lm_depth=LM_DEPTH).eval()


def features(batch: int = 2, tokens: int = N) -> torch.Tensor:
    return torch.randn(batch, tokens, SOURCE, generator=torch.Generator().manual_seed(1))


def padding_mask() -> torch.Tensor:
    mask = torch.ones(2, N, dtype=torch.bool)
    mask[0, 6:] = False
    mask[1, 3:] = False
    return mask


def open_gates(adapter, attn: float = 0.5, ff: float = 0.5) -> None:
    """Set the xattn gates non-zero so the gated layers act (other adapter types have no gates)."""
    if adapter.config.type != "xattn":
        return
    with torch.no_grad():
        for layer in adapter.layers:
            layer.attn_gate.fill_(attn)
            layer.ff_gate.fill_(ff)


def run_lm_side(adapter, out, mask, hidden):
    """For xattn, pass ``hidden`` through every block hook; for the others return the spliced tokens."""
    if adapter.config.type != "xattn":
        return out
    hook = adapter.block_hook(out, mask)
    for layer in range(LM_DEPTH):
        hidden = hook(layer, hidden)
    return hidden


@pytest.mark.parametrize("kind", VARIANTS)
def test_output_shape_and_num_tokens(kind):
    adapter = make(kind)
    out = adapter(features(), None)
    assert out.shape == (2, SPLICED[kind] or N, TARGET)
    assert adapter.num_tokens(N) == SPLICED[kind]
    if kind != "xattn":
        assert out.shape[1] == adapter.num_tokens(N)
    assert (adapter.block_hook(out, None) is None) == (kind != "xattn")


@pytest.mark.parametrize("kind", ["qformer", "perceiver", "xattn"])
def test_internal_width_is_independent_of_the_lm_width(kind):
    adapter = make(kind, width=16)
    out = adapter(features())
    assert out.shape == ((2, N, 16) if kind == "xattn" else (2, QUERIES, TARGET))


@pytest.mark.parametrize("kind", VARIANTS)
def test_backward_reaches_every_parameter_with_finite_gradients(kind):
    adapter = make(kind).train()
    open_gates(adapter)
    hidden = torch.randn(2, 7, TARGET)
    out = run_lm_side(adapter, adapter(features(), padding_mask()), padding_mask(), hidden)
    out.square().mean().backward()
    for name, p in adapter.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", VARIANTS)
def test_padded_encoder_tokens_do_not_change_outputs(kind):
    adapter = make(kind)
    open_gates(adapter)
    mask, feats, hidden = padding_mask(), features(), torch.randn(2, 7, TARGET)
    padded_changed = feats.clone()
    padded_changed[~mask] = 100 * torch.randn(int((~mask).sum()), SOURCE)
    real_changed = feats.clone()
    real_changed[:, 0] += 1.0
    reference = run_lm_side(adapter, adapter(feats, mask), mask, hidden)
    padded = run_lm_side(adapter, adapter(padded_changed, mask), mask, hidden)
    real = run_lm_side(adapter, adapter(real_changed, mask), mask, hidden)
    torch.testing.assert_close(padded, reference, rtol=0, atol=0)
    assert not torch.allclose(real, reference, atol=1e-6)


@pytest.mark.parametrize("kind", VARIANTS)
def test_a_padded_row_equals_the_unpadded_sample(kind):
    adapter = make(kind)
    open_gates(adapter)
    mask, feats, hidden = padding_mask(), features(), torch.randn(2, 7, TARGET)
    batched = run_lm_side(adapter, adapter(feats, mask), mask, hidden)
    alone = run_lm_side(adapter, adapter(feats[:1, :6]), None, hidden[:1])
    if kind in ("linear", "mlp", "mlp-context"):
        batched = batched[:, :6]
        assert (batched[0, 6:] == 0).all()
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", VARIANTS)
def test_a_sample_without_any_real_encoder_token_stays_finite(kind):
    adapter = make(kind)
    open_gates(adapter, attn=0.5, ff=0.0)
    mask = padding_mask()
    mask[1] = False
    hidden = torch.randn(2, 7, TARGET)
    out = run_lm_side(adapter, adapter(features(), mask), mask, hidden)
    assert torch.isfinite(out).all()
    if kind == "xattn":  # nothing to attend to: the gated attention adds nothing to that sample
        torch.testing.assert_close(out[1], hidden[1], rtol=0, atol=0)


def test_xattn_hook_is_exactly_the_identity_at_init():
    adapter = make("xattn")
    hook = adapter.block_hook(adapter(features()), None)
    hidden = torch.randn(2, 7, TARGET)
    for layer in range(LM_DEPTH):
        assert torch.equal(hook(layer, hidden), hidden)


def test_xattn_every_two_schedules_layers_zero_and_two():
    adapter = make("xattn", every=2)
    assert adapter.scheduled_layers == (0, 2) and len(adapter.layers) == 2
    open_gates(adapter)
    hook = adapter.block_hook(adapter(features()), None)
    hidden = torch.randn(2, 7, TARGET)
    changed = [not torch.equal(hook(layer, hidden), hidden) for layer in range(LM_DEPTH)]
    assert changed == [True, False, True, False]
    with pytest.raises(ValueError, match="outside the LM"):
        hook(LM_DEPTH, hidden)


def test_xattn_hook_on_one_new_token_matches_the_full_sequence():
    adapter = make("xattn")
    open_gates(adapter)
    hook = adapter.block_hook(adapter(features(), padding_mask()), padding_mask())
    hidden = torch.randn(2, 7, TARGET)
    torch.testing.assert_close(hook(0, hidden[:, -1:]), hook(0, hidden)[:, -1:], atol=1e-6, rtol=1e-6)


def test_xattn_hook_rejects_a_batch_mismatch_and_foreign_memory():
    adapter = make("xattn")
    hook = adapter.block_hook(adapter(features()), None)
    with pytest.raises(ValueError, match="repeat the memory"):
        hook(0, torch.randn(3, 7, TARGET))
    with pytest.raises(ValueError, match="memory must be"):
        adapter.block_hook(torch.randn(2, N, TARGET + 1), None)


@pytest.mark.parametrize("kind", ["qformer", "perceiver", "xattn"])
def test_too_many_source_tokens_raise(kind):
    adapter = make(kind)
    with pytest.raises(ValueError, match="source_tokens"):
        adapter(features(tokens=17))
    with pytest.raises(ValueError, match="source_tokens"):
        adapter.num_tokens(17)


def test_projection_adapters_take_any_number_of_tokens():
    assert make("mlp")(features(tokens=40)).shape == (2, 40, TARGET)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"type": "resampler"}, "linear"),
        ({"queries": 0}, "queries"),
        ({"depth": 0}, "depth"),
        ({"heads": 0}, "heads"),
        ({"every": 0}, "every"),
        ({"source_tokens": 0}, "source_tokens"),
        ({"width": 30}, "divisible by heads"),
        ({"mlp_ratio": 0.0}, "mlp_ratio"),
        ({"dropout": 1.0}, "dropout"),
        ({"context_layers": -1}, "context_layers"),
        ({"type": "qformer", "context_layers": 1}, "context_layers"),
    ],
)
def test_bad_config_values_raise_clear_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(AdapterConfig, overrides)
    with pytest.raises(ConfigError, match=message):
        build_adapter(AdapterConfig(**overrides), SOURCE, TARGET, LM_DEPTH)


def test_unknown_type_error_lists_every_valid_type():
    with pytest.raises(ConfigError) as info:
        AdapterConfig(type="qformr").validate()
    assert all(kind in str(info.value) for kind in ADAPTER_TYPES)


def test_build_rejects_an_lm_width_the_heads_do_not_divide():
    with pytest.raises(ConfigError, match="not divisible by heads"):
        build_adapter(AdapterConfig(type="qformer", heads=3), SOURCE, TARGET, LM_DEPTH)
    with pytest.raises(ConfigError, match="LM width"):
        build_adapter(AdapterConfig(type="xattn", heads=3, width=30), SOURCE, TARGET, LM_DEPTH)
    with pytest.raises(ConfigError, match="LM width"):
        build_adapter(AdapterConfig(type="mlp", heads=3, context_layers=1), SOURCE, TARGET, LM_DEPTH)
    with pytest.raises(ConfigError, match="lm_depth"):
        build_adapter(AdapterConfig(type="xattn"), SOURCE, TARGET, 0)


def test_bad_feature_shapes_raise():
    adapter = make("qformer")
    with pytest.raises(ValueError, match="features must be"):
        adapter(torch.randn(2, N, SOURCE + 1))
    with pytest.raises(ValueError, match="mask must be"):
        adapter(features(), torch.ones(2, N + 1, dtype=torch.bool))


@pytest.mark.parametrize("kind", ["qformer", "perceiver"])
def test_output_depends_on_token_positions(kind):
    adapter = make(kind)
    feats = features()
    flipped = feats.flip(1)
    assert (adapter(feats) - adapter(flipped)).abs().max() > 1e-4
    with torch.no_grad():  # without learned positions, attention pooling cannot see the order
        adapter.source.positions.zero_()
    torch.testing.assert_close(adapter(flipped), adapter(feats), atol=1e-5, rtol=1e-5)


def test_context_layers_let_every_token_see_the_others():
    feats = features()
    changed = feats.clone()
    changed[:, -1] += 1.0  # only the last token changes
    for kind, mixes in (("mlp", False), ("mlp-context", True)):
        adapter = make(kind)
        first_token_moved = (adapter(changed)[:, 0] - adapter(feats)[:, 0]).abs().max() > 1e-4
        assert bool(first_token_moved) == mixes, kind
