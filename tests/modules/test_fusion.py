import pytest
import torch

from polymodal.config import ConfigError, from_dict
from polymodal.modules.fusion import FUSION_TYPES, FUSIONS, FusionConfig, build_fusion, modality_dropout
from polymodal.modules.fusion_base import check_inputs

WIDTHS = {"image": 12, "text": 8}
VARIANTS = [(t, "joint") for t in FUSIONS] + [("transformer", "albef")]
IDS = [f"{t}-{s}" if t == "transformer" else t for t, s in VARIANTS]
TOKEN_TYPES = {"concat_tokens", "attention", "bi_cross", "intermediate", "transformer"}


def make(kind: str, style: str = "joint", **options):
    torch.manual_seed(0)
    config = FusionConfig(type=kind, style=style, width=16, depth=2, heads=2, **options)
    return build_fusion(config, WIDTHS).eval()


def inputs(batch: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    features = {
        "image": torch.randn(batch, 5, 12, generator=g),
        "text": torch.randn(batch, 4, 8, generator=g),
    }
    text_mask = torch.ones(batch, 4, dtype=torch.bool)
    text_mask[0, 2:] = False  # the first caption is two tokens long
    return features, {"text": text_mask}


def test_registry_lists_every_type():
    assert set(FUSIONS) == set(FUSION_TYPES)


@pytest.mark.parametrize(("kind", "style"), VARIANTS, ids=IDS)
def test_forward_backward_shapes_and_padding_gets_no_gradient(kind, style):
    fusion = make(kind, style)
    features, masks = inputs()
    features = {m: x.requires_grad_() for m, x in features.items()}
    out = fusion(features, masks)
    assert out.pooled.shape == (3, 16)
    if kind in TOKEN_TYPES:
        assert out.tokens.shape[:2] == out.mask.shape and out.tokens.shape[-1] == 16
        fused = {"text"} if style == "albef" else {"image", "text"}
        assert set(out.modality_tokens) == fused
        for name, tokens in out.modality_tokens.items():
            assert tokens.shape == (3, features[name].shape[1], 16)
    else:
        assert out.tokens is None and out.modality_tokens == {}
    out.pooled.pow(2).sum().backward()
    text_grad = features["text"].grad
    assert features["image"].grad.abs().sum() > 0  # both modalities reach the output
    assert text_grad[masks["text"]].abs().sum() > 0
    assert torch.all(text_grad[~masks["text"]] == 0)  # padding never does


@pytest.mark.parametrize(("kind", "style"), VARIANTS, ids=IDS)
def test_changing_padded_tokens_changes_nothing(kind, style):
    fusion = make(kind, style)
    features, masks = inputs()
    before = fusion(features, masks)
    noisy = dict(features, text=features["text"].clone())
    noisy["text"][~masks["text"]] = 1e3
    after = fusion(noisy, masks)
    torch.testing.assert_close(after.pooled, before.pooled)
    if before.tokens is not None:
        torch.testing.assert_close(after.tokens, before.tokens)


@pytest.mark.parametrize(("kind", "style"), VARIANTS, ids=IDS)
def test_extra_padding_changes_nothing(kind, style):
    fusion = make(kind, style)
    features, masks = inputs()
    short = {
        "image": features["image"][:1],
        "text": features["text"][:1, :2],
    }  # caption 0 without its padding
    padded = fusion({m: x[:1] for m, x in features.items()}, {"text": masks["text"][:1]})
    unpadded = fusion(short)
    torch.testing.assert_close(padded.pooled, unpadded.pooled)
    for name, tokens in unpadded.modality_tokens.items():
        torch.testing.assert_close(padded.modality_tokens[name][:, : tokens.shape[1]], tokens)


def test_missing_slot_is_real_only_where_the_modality_is_missing():
    projector = make("concat_tokens").project
    features, masks = inputs()
    masks["text"][1] = False
    batch, tokens, keep = check_inputs(features, masks, WIDTHS)
    sequences = projector.sequences(batch, tokens, keep)
    text, text_mask = sequences["text"]
    assert text.shape == (3, 5, 16) and text_mask[:, 0].tolist() == [False, True, False]
    assert torch.equal(text_mask[:, 1:], masks["text"])
    image, image_mask = projector.sequences(3, {"text": tokens["text"]}, keep)["image"]
    assert image.shape == (3, 1, 16) and image_mask.all()  # absent: the slot alone


@pytest.mark.parametrize(("kind", "style"), VARIANTS, ids=IDS)
@pytest.mark.parametrize("missing", ["image", "text"])
def test_a_missing_modality_per_batch_or_per_sample(kind, style, missing):
    fusion = make(kind, style)
    features, masks = inputs()
    kept = {m: x for m, x in features.items() if m != missing}
    alone = fusion(kept, masks)
    assert alone.pooled.shape == (3, 16) and torch.isfinite(alone.pooled).all()
    # missing for sample 1 only (an all-False mask row) must equal missing from the batch for that sample
    row_masks = dict(masks)
    row_masks[missing] = masks.get(missing, torch.ones(features[missing].shape[:2], dtype=torch.bool)).clone()
    row_masks[missing][1] = False
    per_sample = fusion(features, row_masks)
    torch.testing.assert_close(per_sample.pooled[1], alone.pooled[1])
    for name, tokens in alone.modality_tokens.items():
        torch.testing.assert_close(per_sample.modality_tokens[name][1], tokens[1])
    both = fusion(features, masks)
    assert not torch.allclose(both.pooled[1], alone.pooled[1])  # a missing modality is noticed


@pytest.mark.parametrize("kind", ["concat_tokens", "transformer", "late"])
def test_pooled_features_count_as_one_token(kind):
    fusion = make(kind)
    features, _ = inputs()
    pooled = {"image": features["image"].mean(dim=1), "text": features["text"]}
    assert fusion(pooled).pooled.shape == (3, 16)


def test_late_fusion_combines_only_present_modalities():
    features, _ = inputs()
    for combine in ("mean", "sum", "learned"):
        fusion = make("late", combine=combine)
        image_only = fusion({"image": features["image"]}).pooled
        head = fusion.heads["image"](features["image"].mean(dim=1))
        torch.testing.assert_close(image_only, head)  # renormalised over the one present modality
    fusion = make("late", combine="sum")
    both = fusion(features).pooled
    expected = fusion.heads["image"](features["image"].mean(1)) + fusion.heads["text"](
        features["text"].mean(1)
    )
    torch.testing.assert_close(both, expected)


def test_gated_fusion_gives_a_missing_modality_no_weight():
    fusion = make("gated")
    features, _ = inputs()
    out = fusion({"text": features["text"]}).pooled
    torch.testing.assert_close(out, fusion.proj["text"](features["text"].mean(dim=1)))


@pytest.mark.parametrize(
    ("features", "masks", "message"),
    [
        ({}, None, "non-empty"),
        ({"audio": torch.randn(2, 3, 12)}, None, "unknown modality 'audio'"),
        ({"image": torch.randn(2, 3, 7)}, None, r"\(batch, tokens, 12\)"),
        ({"image": torch.randn(2, 3, 12), "text": torch.randn(3, 4, 8)}, None, "batch"),
        ({"text": torch.randn(2, 4, 8)}, {"text": torch.ones(2, 5, dtype=torch.bool)}, "mask must be"),
        ({"text": torch.randn(2, 4, 8)}, {"audio": torch.ones(2, 4, dtype=torch.bool)}, "unknown modality"),
    ],
)
def test_bad_inputs_raise_clear_errors(features, masks, message):
    with pytest.raises(ValueError, match=message):
        make("attention")(features, masks)


@pytest.mark.parametrize(
    ("options", "widths", "message"),
    [
        ({"type": "fancy"}, WIDTHS, "type must be one of"),
        ({"width": 10, "heads": 4}, WIDTHS, "not divisible"),
        ({"type": "late", "combine": "max"}, WIDTHS, "combine"),
        ({"type": "intermediate", "depth": 2, "cross_layers": [2]}, WIDTHS, "cross_layers"),
        ({"type": "bi_cross"}, {"image": 4, "text": 4, "audio": 4}, "exactly two"),
        ({"style": "albef", "query": "audio"}, WIDTHS, "query"),
        ({"style": "albef"}, {"text": 8}, "context modality"),
        ({}, {}, "widths"),
    ],
)
def test_bad_configs_raise_config_errors(options, widths, message):
    with pytest.raises(ConfigError, match=message):
        build_fusion(FusionConfig(**{"width": 16, "heads": 2, **options}), widths)


def test_fusion_config_is_strict():
    with pytest.raises(ConfigError, match="unknown key 'widht'"):
        from_dict(FusionConfig, {"widht": 3})


def test_modality_dropout_never_drops_every_modality_of_a_sample():
    g = torch.Generator().manual_seed(0)
    features = {"image": torch.zeros(500, 4, 2), "text": torch.zeros(500, 3, 2)}
    text_mask = torch.ones(500, 3, dtype=torch.bool)
    text_mask[:100] = False  # these samples have no text to begin with
    masks = modality_dropout(features, {"text": text_mask}, {"image": 1.0, "text": 1.0}, generator=g)
    image_kept, text_kept = masks["image"].any(1), masks["text"].any(1)
    assert torch.all(image_kept | text_kept)
    assert torch.all(image_kept ^ text_kept)  # p=1 everywhere: exactly the rescued one survives
    assert torch.all(image_kept[:100]) and not text_kept[:100].any()  # absent text is never "rescued"
    assert 0.35 < image_kept[100:].float().mean() < 0.65  # the survivor is chosen at random


def test_modality_dropout_rate_padding_and_eval_mode():
    g = torch.Generator().manual_seed(1)
    features = {"image": torch.zeros(2000, 4, 2), "text": torch.zeros(2000, 3, 2)}
    text_mask = torch.ones(2000, 3, dtype=torch.bool)
    text_mask[:, 2] = False
    masks = modality_dropout(features, {"text": text_mask}, {"image": 0.3}, generator=g)
    assert abs(1 - masks["image"].any(1).float().mean() - 0.3) < 0.04
    assert torch.equal(masks["text"], text_mask)  # p defaults to 0; padding untouched
    kept = masks["image"].any(1)
    assert torch.all(masks["image"][kept]) and not masks["image"][~kept].any()  # whole rows only
    unchanged = modality_dropout(features, {"text": text_mask}, {"image": 1.0}, training=False)
    assert torch.equal(unchanged["text"], text_mask) and unchanged["image"].all()
    with pytest.raises(ValueError, match="must lie in"):
        modality_dropout(features, None, {"image": 1.5})


def test_dropped_samples_fuse_like_missing_ones():
    fusion = make("transformer")
    features, masks = inputs(batch=4)
    dropped = modality_dropout(features, masks, {"image": 1.0}, generator=torch.Generator().manual_seed(0))
    assert not dropped["image"].any()
    torch.testing.assert_close(
        fusion(features, dropped).pooled, fusion({"text": features["text"]}, masks).pooled
    )
