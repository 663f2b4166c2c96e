"""Fast inference: cast or quantise a model once, optionally compile it, and feed it inputs of its dtype.

Measured on a 2-core AMX Xeon with CLIP ViT-B/32 and the CLIP text tower (``benchmarks/embed_throughput.py``):

- ``bf16`` casts every floating weight to bfloat16 once, so matmuls run on AMX without per-call autocast
  re-casting. LayerNorm stays a bf16 module: torch's CPU kernel accumulates its statistics in fp32, and
  the projected embeddings stay within cosine 0.9999 of fp32.
- ``int8`` swaps every ``nn.Linear`` for :class:`Int8Linear`: per-output-channel int8 weights and
  per-token int8 activations quantised on the fly, multiplied by ``torch._int_mm`` (oneDNN, AMX on this
  CPU). Everything else stays fp32. ``torch.ao.quantization.quantize_dynamic`` still exists in torch 2.13
  but is deprecated (torchao replaces it) and ran at half the speed of ``bf16`` here, so it is not used.
- ``compile=True`` compiles each tower with inductor's *freezing* (weights become constants, prepacked
  for oneDNN, bias and activation fused into the matmul as post-ops). It pays on CPU for bf16 and int8;
  it costs 15-30 s of compilation per tower and per new input shape. Freezing is switched on around each
  call of the compiled tower only (``torch.compile(options={"freezing": True})`` does not reach the
  freezing pass in torch 2.13: its graphs kept ``addmm`` plus a separate bias copy).
- bf16 and compiled models run quick-GELU MLPs as SiLU ones: x * sigmoid(1.702 x) = silu(1.702 x) / 1.702,
  so fc1 is scaled by 1.702 and fc2's weight by 1 / 1.702 once. SiLU is a oneDNN post-op that the compiled
  matmul applies in its epilogue; quick-GELU took a separate pass over the widest activations.
- :func:`encode_texts` sorts a padded batch by length and runs it in length buckets trimmed to their
  longest caption, unless the tower pools the last position (SigLIP's fixed-length texts).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.modules.layers import MLP, QuickGELU

PRECISIONS = ("fp32", "bf16", "int8")
TOWERS = ("image_encoder", "text_encoder")  # compiled separately; a DualEncoder calls them one at a time


class Int8Linear(nn.Module):
    """A frozen ``nn.Linear`` with int8 weights (one scale per output channel) and dynamic int8 activations.

    Each call quantises its input per token (one absmax scale per row), multiplies int8 by int8 into
    int32 with ``torch._int_mm`` and rescales to fp32. Symmetric ranges [-127, 127] on both sides.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127  # (out,)
        quantised = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_t", quantised.t().contiguous())  # (in, out): _int_mm's right operand
        self.register_buffer("weight_scale", scale)
        bias = None if linear.bias is None else linear.bias.detach().float()
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, self.in_features).float()  # (N, in): every leading dim is a token
        row_scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127  # (N, 1)
        quantised = torch.round(rows / row_scale).clamp(-127, 127).to(torch.int8)
        y = torch._int_mm(quantised, self.weight_t).float() * row_scale * self.weight_scale
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


def quantize_linears(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` inside ``module`` by an :class:`Int8Linear`, in place; returns ``module``."""
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear(child))
        else:
            quantize_linears(child)
    return module


QUICK_GELU_SCALE = 1.702


class FoldedQuickGELU(nn.SiLU):
    """SiLU standing in for quick-GELU after :func:`fold_quick_gelu` rescaled the MLP around it."""


@torch.no_grad()
def fold_quick_gelu(module: nn.Module) -> int:
    """Rewrite every quick-GELU MLP as a SiLU one with the same function, in place; returns how many.

    fc2(h * sigmoid(1.702 h)) = fc2'(silu(1.702 h)) with fc2' = fc2's weight / 1.702, and 1.702 h is fc1
    with weight and bias scaled by 1.702. Done in fp32, before any cast.
    """
    folded = 0
    for mlp in module.modules():
        if isinstance(mlp, MLP) and type(mlp.act) is QuickGELU:
            mlp.fc1.weight.mul_(QUICK_GELU_SCALE)
            if mlp.fc1.bias is not None:
                mlp.fc1.bias.mul_(QUICK_GELU_SCALE)
            mlp.fc2.weight.div_(QUICK_GELU_SCALE)
            mlp.act = FoldedQuickGELU()
            folded += 1
    return folded


def compile_frozen(module: nn.Module) -> nn.Module:
    """Compile ``module``'s forward with inductor, freezing its weights when called without grad; in place."""
    from torch._inductor import config as inductor_config

    compiled = torch.compile(module.forward)

    @functools.wraps(module.forward)
    def forward(*args, **kwargs):
        with inductor_config.patch(freezing=True):  # only graphs built without grad are frozen
            return compiled(*args, **kwargs)

    module.forward = forward
    return module


def _compile_in_place(model: nn.Module) -> None:
    """Compile the towers (or the whole model when it has none) with inductor's weight freezing."""
    targets = [getattr(model, name) for name in TOWERS if isinstance(getattr(model, name, None), nn.Module)]
    for target in targets or [model]:
        compile_frozen(target)


def prepare_for_inference(model: nn.Module, precision: str = "fp32", compile: bool = False) -> nn.Module:
    """Ready ``model`` for fast inference, in place (like ``Module.to``), and return it.

    Args:
        model: any module; a DualEncoder gets its two towers compiled separately.
        precision: "fp32" (eval, no grad), "bf16" (floating weights cast to bfloat16 once) or "int8"
            (every nn.Linear quantised to int8 with dynamic per-token activations; the rest stays fp32).
        compile: compile with ``torch.compile`` and inductor freezing; call the model under
            ``torch.inference_mode()`` (as :func:`encode_images` does) or freezing is skipped.

    Returns:
        The same module. Feed it inputs of :func:`model_dtype` (the helpers below do).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    model.eval().requires_grad_(False)
    if precision == "bf16" or compile:
        fold_quick_gelu(model)
    if precision == "bf16":
        model.to(torch.bfloat16)
    elif precision == "int8":
        quantize_linears(model)
    if compile:
        _compile_in_place(model)
    return model


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of ``model``'s parameters and buffers (fp32 for an int8 model's non-linear parts)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


@torch.inference_mode()
def encode_images(model: nn.Module, pixels: Tensor, normalize: bool = True) -> Tensor:
    """(B, C, H, W) processed images -> (B, embed_dim) fp32 embeddings from a DualEncoder of any precision."""
    features = model.encode_image(pixels.to(model_dtype(model)), normalize=False).float()
    return F.normalize(features, dim=-1) if normalize else features


@torch.inference_mode()
def encode_audio(model: nn.Module, mel: Tensor, normalize: bool = True) -> Tensor:
    """(B, n_mels, frames) log-mel -> (B, embed_dim) fp32 embeddings from an audio DualEncoder of any precision."""
    features = model.encode_audio(mel.to(model_dtype(model)), normalize=False).float()
    return F.normalize(features, dim=-1) if normalize else features


MIN_BUCKET_ROWS = 16  # captions per length bucket: fewer rows make matmuls too thin to pay


def length_buckets(lengths: Tensor, min_rows: int = MIN_BUCKET_ROWS) -> list[Tensor]:
    """Row indices grouped by length, shortest first, each group at least ``min_rows`` (the last may be
    smaller only when the batch is) and starting a new group only when it saves padded tokens."""
    order = torch.argsort(lengths, stable=True)
    groups, start = [], 0
    while start < len(order):
        stop = min(start + min_rows, len(order))
        # grow the group while its rows share its longest length: splitting there saves nothing
        while stop < len(order) and lengths[order[stop]] == lengths[order[stop - 1]]:
            stop += 1
        if len(order) - stop < min_rows:  # too few left for a group of their own
            stop = len(order)
        groups.append(order[start:stop])
        start = stop
    return groups


def _pads_trim_exactly(model: nn.Module) -> bool:
    """Whether cutting padding columns leaves this text tower's pooled output unchanged (all poolings but
    ``last``, which reads the final padded position)."""
    config = getattr(model.text_encoder, "config", None)
    return getattr(config, "pool", "last") != "last"


@torch.inference_mode()
def encode_texts(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None, normalize: bool = True
) -> Tensor:
    """(B, T) token ids (+ padding mask) -> (B, embed_dim) fp32 embeddings from a DualEncoder of any precision.

    A padded batch runs in length buckets (see :func:`length_buckets`), each trimmed to its longest
    caption: padding is masked out of attention, so the pooled output is the same and the padded tokens
    cost nothing.
    """
    if attention_mask is None or not _pads_trim_exactly(model):
        features = model.encode_text(input_ids, attention_mask, normalize=False).float()
        return F.normalize(features, dim=-1) if normalize else features
    lengths = attention_mask.long().sum(dim=1)
    features = None
    for rows in length_buckets(lengths):
        width = max(int(lengths[rows].max()), 1)
        part = model.encode_text(input_ids[rows, :width], attention_mask[rows, :width], normalize=False)
        if features is None:
            features = torch.empty(len(lengths), part.shape[-1], device=part.device)
        features[rows] = part.float()
    return F.normalize(features, dim=-1) if normalize else features
