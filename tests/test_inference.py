"""prepare_for_inference: each precision against fp32 on a tiny ViT + text transformer dual encoder."""

import copy

import pytest
import torch

from polymodal.inference import (
    FoldedQuickGELU,
    Int8Linear,
    encode_images,
    encode_texts,
    fold_quick_gelu,
    length_buckets,
    model_dtype,
    prepare_for_inference,
)
from polymodal.models.dual_encoder import DualEncoder
from polymodal.modules.text import TextConfig, TextTransformer
from polymodal.modules.vision import VisionTransformer, ViTConfig

MIN_COSINE = {"fp32": 0.99999, "bf16": 0.999, "int8": 0.995}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    image = VisionTransformer(
        ViTConfig(image_size=32, patch_size=8, width=64, depth=2, heads=4, act="quick_gelu")
    )
    text = TextTransformer(
        TextConfig(vocab_size=100, context_length=16, width=48, depth=2, heads=4, causal=True)
    )
    return DualEncoder(image, text, embed_dim=32).eval()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(6, 3, 32, 32, generator=g)
    ids = torch.randint(1, 100, (6, 12), generator=g)
    mask = torch.arange(12)[None, :] < torch.tensor([12, 9, 5, 12, 3, 7])[:, None]
    return pixels, ids, mask


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_each_precision_stays_close_to_fp32(model, inputs, precision):
    pixels, ids, mask = inputs
    with torch.no_grad():
        ref_image, ref_text = model.encode_image(pixels), model.encode_text(ids, mask)
    fast = prepare_for_inference(copy.deepcopy(model), precision)
    image, text = encode_images(fast, pixels), encode_texts(fast, ids, mask)
    assert image.dtype == text.dtype == torch.float32
    assert torch.allclose(image.norm(dim=-1), torch.ones(6), atol=1e-5)
    for got, ref in ((image, ref_image), (text, ref_text)):
        cosine = torch.nn.functional.cosine_similarity(got, ref)
        assert cosine.min() >= MIN_COSINE[precision], (precision, cosine)
    if precision != "fp32":  # the reduced precision really changed the numbers
        assert not torch.equal(image, ref_image)


def test_bf16_casts_every_floating_weight_and_disables_grad(model):
    fast = prepare_for_inference(copy.deepcopy(model), "bf16")
    assert model_dtype(fast) == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in fast.parameters())
    assert not fast.training


def test_int8_quantises_every_linear_and_keeps_the_rest_fp32(model):
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    fast = prepare_for_inference(copy.deepcopy(model), "int8")
    assert not any(isinstance(m, torch.nn.Linear) for m in fast.modules())
    quantised = [m for m in fast.modules() if isinstance(m, Int8Linear)]
    assert len(quantised) == n_linear
    assert all(m.weight_t.dtype == torch.int8 for m in quantised)
    assert model_dtype(fast) == torch.float32


def test_int8_linear_matches_float_linear_on_odd_shapes():
    torch.manual_seed(0)
    linear = torch.nn.Linear(5, 7)
    x = torch.randn(2, 3, 5)
    y = Int8Linear(linear)(x)
    assert y.shape == (2, 3, 7)
    torch.testing.assert_close(y, linear(x), atol=0.02, rtol=0.02)


def test_the_helpers_cast_fp32_pixels_for_a_bf16_model(model, inputs):
    pixels = inputs[0]
    fast = prepare_for_inference(copy.deepcopy(model), "bf16")
    with pytest.raises(RuntimeError):  # what callers would hit without the helper
        fast.encode_image(pixels)
    assert encode_images(fast, pixels).shape == (6, 32)
    unnormalised = encode_images(fast, pixels, normalize=False)
    assert not torch.allclose(unnormalised.norm(dim=-1), torch.ones(6), atol=1e-3)


def test_outputs_do_not_track_gradients(model, inputs):
    pixels, ids, mask = inputs
    fast = prepare_for_inference(copy.deepcopy(model), "fp32")
    assert not encode_images(fast, pixels).requires_grad
    assert not encode_texts(fast, ids, mask).requires_grad


def test_an_unknown_precision_is_refused_with_the_choices(model):
    with pytest.raises(ValueError, match="fp32.*bf16.*int8"):
        prepare_for_inference(copy.deepcopy(model), "fp16")


def test_compile_keeps_the_state_dict_keys(model):
    fast = prepare_for_inference(copy.deepcopy(model), "bf16", compile=True)
    assert fast.state_dict().keys() == model.state_dict().keys()


def test_load_with_precision_keeps_the_pipeline_api(tiny_model_dir, tmp_path):
    import numpy as np

    import polymodal

    fp32 = polymodal.load(tiny_model_dir)
    texts = ["a red circle", "the number three"]
    for precision, bound in (("bf16", 0.99), ("int8", 0.98)):
        fast = polymodal.load(tiny_model_dir, precision=precision)
        cos = (fast.embed_text(texts) * fp32.embed_text(texts)).sum(axis=1)
        assert cos.min() > bound and fast.embed_text(texts).dtype == np.float32
        assert sum(fast.classify([np.zeros((32, 32, 3), np.uint8)], ["red", "blue"])[0].values()) > 0.99
    with pytest.raises(ValueError, match="prepared for inference.*is not saved"):
        fast.save(tmp_path / "nope")


def test_folding_quick_gelu_into_silu_keeps_the_function(model, inputs):
    pixels, ids, mask = inputs
    folded = copy.deepcopy(model)
    assert fold_quick_gelu(folded) == 2  # the two quick-GELU ViT blocks; the text tower uses GELU
    assert sum(isinstance(m, FoldedQuickGELU) for m in folded.modules()) == 2
    with torch.no_grad():
        assert torch.allclose(folded.encode_image(pixels), model.encode_image(pixels), atol=1e-5)
        assert torch.equal(folded.encode_text(ids, mask), model.encode_text(ids, mask))


def test_length_buckets_cover_every_row_once_and_sort_by_length():
    lengths = torch.tensor([5, 40, 7, 77, 12, 6, 33, 20, 9, 61] * 4)
    groups = length_buckets(lengths, min_rows=8)
    rows = torch.cat(groups)
    assert sorted(rows.tolist()) == list(range(40))
    assert all(len(g) >= 8 for g in groups) and len(groups) > 1
    ordered = lengths[rows]
    assert torch.equal(ordered, ordered.sort().values)
    assert len(length_buckets(torch.tensor([3, 9, 4]), min_rows=8)) == 1  # a small batch stays whole


def test_bucketed_text_encoding_equals_one_padded_pass(model):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 100, (40, 16), generator=g)
    lengths = torch.randint(1, 17, (40,), generator=g)
    mask = torch.arange(16)[None, :] < lengths[:, None]
    with torch.no_grad():
        whole = torch.nn.functional.normalize(model.encode_text(ids, mask, normalize=False), dim=-1)
    assert torch.allclose(encode_texts(model, ids, mask), whole, atol=1e-5)


def test_compiled_bf16_towers_run_prepacked_fused_matmuls(model, inputs):
    pixels, _, _ = inputs
    fast = prepare_for_inference(copy.deepcopy(model), "bf16", compile=True)
    encode_images(fast, pixels)  # compiles
    with torch.profiler.profile() as prof:
        image = encode_images(fast, pixels)
    ops = {event.key for event in prof.key_averages()}
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():  # oneDNN prepacks bf16 weights only where the CPU
        # has bf16 instructions (AVX512-BF16/AMX); elsewhere inductor keeps aten matmuls
        assert "mkldnn::_linear_pointwise" in ops and "aten::addmm" not in ops  # frozen: weights prepacked
    with torch.no_grad():
        reference = model.encode_image(pixels)
    assert torch.nn.functional.cosine_similarity(image, reference).min() >= MIN_COSINE["bf16"]
