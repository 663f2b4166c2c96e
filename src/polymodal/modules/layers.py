"""Shared layers: the one attention (SDPA), MLP, pre-norm transformer block and stack."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU used by OpenAI's CLIP weights."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "quick_gelu": QuickGELU}


def make_activation(name: str) -> nn.Module:
    """Return the activation module called ``name``; unknown names raise a ValueError listing the choices."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """Two linear layers with an activation between them."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        act: str = "gelu",
        dropout: float = 0.0,
        out_dim: int | None = None,
        bias: bool = True,
    ):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = make_activation(act)
        self.fc2 = nn.Linear(hidden, out_dim or dim, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


def padding_to_attn_mask(attention_mask: Tensor | None) -> Tensor | None:
    """Turn a (B, T) keep-mask (True = real token) into an SDPA boolean mask (B, 1, 1, T)."""
    if attention_mask is None:
        return None
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be (batch, tokens), got shape {tuple(attention_mask.shape)}")
    return attention_mask.bool()[:, None, None, :]


class Attention(nn.Module):
    """Multi-head attention through ``F.scaled_dot_product_attention``; self- or cross-attention.

    Masks are boolean with True meaning "may attend", broadcastable to (B, heads, Tq, Tk). ``kv_heads``
    below ``heads`` gives grouped-query self-attention (Llama): the fused ``qkv`` projection then holds
    fewer key/value heads, each shared by ``heads // kv_heads`` query heads.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kv_dim: int | None = None,
        kv_heads: int | None = None,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.kv_heads = kv_heads or heads
        if heads % self.kv_heads:
            raise ValueError(f"{heads} heads cannot be shared by {self.kv_heads} key/value heads")
        self.cross = kv_dim is not None
        if self.cross:
            if self.kv_heads != heads:
                raise ValueError("grouped-query attention is supported for self-attention only")
            self.q = nn.Linear(dim, dim, bias=bias)
            self.kv = nn.Linear(kv_dim, 2 * dim, bias=bias)
        else:
            self.qkv = nn.Linear(dim, dim + 2 * self.kv_heads * self.head_dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, n * head_dim) -> (B, n, T, head_dim): one slice per head."""
        b, t, _ = x.shape
        return x.view(b, t, -1, self.head_dim).transpose(1, 2)  # (B, heads or kv_heads, T, hd)

    def project_qkv(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Queries (B, heads, T, hd) and keys/values (B, kv_heads, Tk, hd) of ``x`` (and ``context``)."""
        if self.cross:
            if context is None:
                raise ValueError("cross-attention needs a context tensor")
            k, v = self.kv(context).chunk(2, dim=-1)
            return self.split_heads(self.q(x)), self.split_heads(k), self.split_heads(v)
        kv = self.kv_heads * self.head_dim
        q, k, v = self.qkv(x).split([self.heads * self.head_dim, kv, kv], dim=-1)
        return self.split_heads(q), self.split_heads(k), self.split_heads(v)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        context: Tensor | None = None,
        keep: Tensor | None = None,
    ):
        """Attend from every token of ``x``, or only from the positions ``keep`` (B, Tq) names: the keys and
        values still come from every token, and the result is (B, Tq, C) (a last block whose other outputs
        nobody reads)."""
        b, t, c = x.shape
        q, k, v = self.project_qkv(x, context)
        if keep is not None:
            q = q.gather(2, keep[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[3]))  # (B, H, Tq, hd)
        if causal and (mask is not None or keep is not None):
            # query positions: (T, 1), or (B, 1, Tq, 1) for the kept rows
            positions = torch.arange(t, device=x.device)[:, None] if keep is None else keep[:, None, :, None]
            causal_mask = torch.arange(k.shape[2], device=x.device) <= positions  # (..., Tq, Tk)
            mask, causal = causal_mask if mask is None else mask & causal_mask, False
        t = t if keep is None else keep.shape[1]
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
            enable_gqa=self.kv_heads != self.heads,
        )
        return self.proj(y.transpose(1, 2).reshape(b, t, c))  # (B, T or Tq, C)


def take_rows(x: Tensor, keep: Tensor) -> Tensor:
    """(B, T, C) gathered at (B, Tq) positions -> (B, Tq, C)."""
    return x.gather(1, keep[:, :, None].expand(-1, -1, x.shape[2]))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(ln(x)), then x + mlp(ln(x)); or post-norm (BERT): ln(x + attn(x)), ln(x + mlp(x))."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        act: str = "gelu",
        norm_eps: float = 1e-5,
        norm_first: bool = True,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio), act=act, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(
        self, x: Tensor, mask: Tensor | None = None, causal: bool = False, keep: Tensor | None = None
    ) -> Tensor:
        """(B, T, C) -> (B, T, C), or (B, Tq, C) for the positions ``keep`` (B, Tq) names only."""
        residual = x if keep is None else take_rows(x, keep)
        if not self.norm_first:
            x = self.norm1(residual + self.drop(self.attn(x, mask=mask, causal=causal, keep=keep)))
            return self.norm2(x + self.mlp(x))
        x = residual + self.drop(self.attn(self.norm1(x), mask=mask, causal=causal, keep=keep))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of transformer blocks sharing one mask."""

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        act: str = "gelu",
        norm_eps: float = 1e-5,
        norm_first: bool = True,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, mlp_ratio, dropout, act, norm_eps, norm_first) for _ in range(depth)
        )

    @classmethod
    def from_config(cls, config) -> Transformer:
        """Build from an encoder config with width, depth, heads, mlp_ratio, dropout, act, norm_eps
        (and optionally norm_first)."""
        return cls(
            config.width,
            config.depth,
            config.heads,
            config.mlp_ratio,
            config.dropout,
            config.act,
            config.norm_eps,
            getattr(config, "norm_first", True),
        )

    def forward(
        self, x: Tensor, mask: Tensor | None = None, causal: bool = False, keep: Tensor | None = None
    ) -> Tensor:
        """(B, T, C) -> (B, T, C); with ``keep`` (B, Tq) positions, the last block computes only those
        rows, -> (B, Tq, C): a pooled encoder skips work whose output it would drop."""
        for i, block in enumerate(self.blocks):
            x = block(x, mask=mask, causal=causal, keep=keep if i == len(self.blocks) - 1 else None)
        return x


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Truncated-normal init for linear/embedding weights, zeros for biases, ones for norms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.trunc_normal_(m.weight, std=std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
