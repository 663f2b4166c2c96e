import pytest
import torch
import torch.nn.functional as F

from polymodal.modules.layers import Attention, Transformer, padding_to_attn_mask


def reference_attention(attn: Attention, x, keep=None, causal=False):
    """Plain softmax attention written out, to check the SDPA path and its masks."""
    b, t, c = x.shape
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    q, k, v = (z.view(b, t, attn.heads, -1).transpose(1, 2) for z in (q, k, v))
    scores = q @ k.transpose(-1, -2) / (c // attn.heads) ** 0.5
    allowed = torch.ones(b, 1, t, t, dtype=torch.bool)
    if keep is not None:
        allowed = allowed & keep[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(t, t, dtype=torch.bool).tril()
    y = F.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ v
    return attn.proj(y.transpose(1, 2).reshape(b, t, c))


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_reference_with_padding(causal):
    torch.manual_seed(0)
    attn = Attention(32, 4).eval()
    x = torch.randn(2, 6, 32)
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    got = attn(x, mask=padding_to_attn_mask(keep), causal=causal)
    torch.testing.assert_close(got, reference_attention(attn, x, keep, causal), atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    net = Transformer(32, 2, 4).eval()
    x = torch.randn(1, 4, 32)
    padded = torch.cat([x, torch.randn(1, 3, 32)], dim=1)
    keep = torch.tensor([[1, 1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    torch.testing.assert_close(
        net(padded, mask=padding_to_attn_mask(keep))[:, :4], net(x), atol=1e-5, rtol=1e-5
    )


def test_cross_attention_shapes_and_errors():
    attn = Attention(32, 4, kv_dim=16)
    assert attn(torch.randn(2, 5, 32), context=torch.randn(2, 7, 16)).shape == (2, 5, 32)
    with pytest.raises(ValueError, match="context"):
        attn(torch.randn(2, 5, 32))
    with pytest.raises(ValueError, match="divisible"):
        Attention(30, 4)


def test_grouped_query_attention_equals_repeated_kv_heads():
    torch.manual_seed(0)
    gqa = Attention(32, 4, kv_heads=2).eval()
    x = torch.randn(2, 5, 32)
    q, k, v = gqa.project_qkv(x)
    assert q.shape == (2, 4, 5, 8) and k.shape == v.shape == (2, 2, 5, 8)
    k, v = (z.repeat_interleave(2, dim=1) for z in (k, v))  # each kv head serves two query heads
    expected = gqa.proj(
        F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(2, 5, 32)
    )
    torch.testing.assert_close(gqa(x, causal=True), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot be shared"):
        Attention(32, 4, kv_heads=3)


def test_mlp_without_bias():
    from polymodal.modules.layers import MLP

    assert MLP(8, 16, bias=False).fc1.bias is None and MLP(8, 16).fc2.bias is not None
