import pytest
import torch

from polymodal.config import ConfigError, from_dict, to_dict
from polymodal.models.fusion_encoder import DEFAULT_HEADS, FusionEncoder, FusionEncoderConfig
from polymodal.modules.fusion_losses import (
    itc_loss,
    itm_loss,
    mim_loss,
    mlm_loss,
    multitask_loss,
    point_loss,
    vqa_loss,
)
from polymodal.modules.fusion_masking import IGNORE_INDEX, mim_mask, mine_hard_negatives, mlm_mask
from polymodal.registry import build_encoder, get_spec
from polymodal.train.curriculum import Curriculum, CurriculumPhase

VOCAB, SPECIAL = 40, [0, 1, 2, 3]
TINY = {
    "image": {"type": "cnn", "image_size": 16, "stages": 2, "base_channels": 4, "width": 16},
    "text": {
        "type": "transformer",
        "vocab_size": VOCAB,
        "context_length": 8,
        "width": 16,
        "depth": 1,
        "heads": 2,
    },
    "fusion": {"type": "transformer", "width": 16, "depth": 1, "heads": 2},
    "embed_dim": 8,
    "num_answers": 5,
}


def tiny(**overrides) -> FusionEncoder:
    torch.manual_seed(0)
    return FusionEncoder.from_config(from_dict(FusionEncoderConfig, {**TINY, **overrides}))


def batch(n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Captions [BOS] w w w w [EOS] [PAD] [PAD] and questions about distinct images."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (n, 8), generator=g)
    ids[:, 0], ids[:, 5], ids[:, 6:] = 2, 3, 0
    mask = ids != 0
    images = 2 * torch.randn(n, 3, 1, 1, generator=g) + 0.3 * torch.randn(n, 3, 16, 16, generator=g)
    return {
        "images": images,
        "input_ids": ids,
        "attention_mask": mask,
        "question_ids": ids[:, :6].clone(),
        "question_mask": mask[:, :6].clone(),
        "answer_ids": torch.randint(0, 5, (n,), generator=g),
        "question_points": torch.rand(n, 2, 2, generator=g),
        "question_points_mask": torch.tensor([[True, True], [True, False], [False, False], [True, True]])[:n],
    }


POINTED = [*DEFAULT_HEADS, "point"]


def test_forward_outputs_and_task_methods():
    model, b = tiny(), batch()
    out = model(b["images"], b["input_ids"], b["attention_mask"])
    assert out["fused"].shape == (4, 16) and out["image_features"].shape == (4, 8)
    torch.testing.assert_close(out["text_features"].norm(dim=-1), torch.ones(4))
    assert out["match_logits"].shape == (4,) and out["answer_logits"].shape == (4, 5)
    torch.testing.assert_close(
        model.match_logits(b["images"], b["input_ids"], b["attention_mask"]), out["match_logits"]
    )
    assert model.answer_logits(b["images"], b["question_ids"], b["question_mask"]).shape == (4, 5)
    assert model(images=b["images"])["fused"].shape == (4, 16)  # image alone: text is the missing slot
    assert "match_logits" not in model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])


TASKS = {
    "itc": (lambda m, b, g: itc_loss(m, b), "image_proj"),
    "itm": (lambda m, b, g: itm_loss(m, b, generator=g), "itm_head"),
    "mlm": (lambda m, b, g: mlm_loss(m, b, generator=g), "mlm_transform"),
    "mim": (lambda m, b, g: mim_loss(m, b, generator=g), "mim_head"),
    "vqa": (lambda m, b, g: vqa_loss(m, b), "answer_head"),
    "point": (lambda m, b, g: point_loss(m, b), "pointer"),
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_loss_is_finite_and_trains_its_head_and_the_towers(task):
    model, b = tiny(heads=POINTED) if task == "point" else tiny(), batch()
    run, head = TASKS[task]
    loss, metrics = run(model, b, torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, head).parameters())
    assert model.image_encoder.proj.weight.grad.abs().sum() > 0
    assert all(torch.isfinite(v) for v in metrics.values())


def test_hard_negatives_are_never_positives_and_follow_similarity():
    g = torch.Generator().manual_seed(0)
    groups = torch.tensor([0, 0, 1, 2, 3, 3])
    positives = groups[:, None] == groups[None, :]
    for _ in range(50):
        similarity = 5 * torch.randn(6, 6, generator=g)
        neg_text, neg_image, text_ok, image_ok = mine_hard_negatives(similarity, positives, g)
        assert text_ok.all() and image_ok.all()
        assert not positives[torch.arange(6), neg_text].any()
        assert not positives[neg_image, torch.arange(6)].any()
    similarity = torch.zeros(6, 6)
    similarity[0, 4] = 20.0  # image 0 looks most like caption 4
    picks = [mine_hard_negatives(similarity, positives, g)[0][0].item() for _ in range(30)]
    assert picks.count(4) >= 29


def test_a_row_of_only_positives_has_no_negative():
    *_, text_ok, image_ok = mine_hard_negatives(torch.randn(3, 3), torch.ones(3, 3, dtype=torch.bool))
    assert not text_ok.any() and not image_ok.any()


def test_itm_loss_survives_a_batch_without_negatives():
    model, b = tiny(), batch()
    b["groups"] = torch.tensor([7, 7, 7, 7])  # every pair matches: no negative exists
    loss, metrics = itm_loss(model, b)
    assert torch.isfinite(loss) and metrics["acc"].shape == ()


def test_mlm_masks_never_hit_padding_or_special_tokens():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, VOCAB, (400, 12), generator=g)
    lengths = torch.randint(3, 13, (400,), generator=g)
    mask = torch.arange(12)[None, :] < lengths[:, None]
    ids[:, 0], ids[torch.arange(400), lengths - 1] = 2, 3
    ids[~mask] = 0
    corrupted, labels = mlm_mask(ids, mask, 1, VOCAB, SPECIAL, 0.15, g)
    picked = labels != IGNORE_INDEX
    assert not picked[~mask].any() and not picked[torch.isin(ids, torch.tensor(SPECIAL))].any()
    assert picked.any(dim=1).all()  # every caption gets at least one
    assert torch.equal(labels[picked], ids[picked]) and torch.equal(corrupted[~picked], ids[~picked])
    eligible = mask & ~torch.isin(ids, torch.tensor(SPECIAL))
    assert 0.13 < picked.sum() / eligible.sum() < 0.25
    masked_share = (corrupted[picked] == 1).float().mean()
    kept_share = (corrupted[picked] == ids[picked]).float().mean()
    assert 0.72 < masked_share < 0.88 and 0.05 < kept_share < 0.17
    assert not torch.isin(corrupted[picked & (corrupted != 1)], torch.tensor([0, 2, 3])).any()


def test_mim_mask_has_a_fixed_count_per_row():
    masked = mim_mask(5, 16, 0.3, torch.Generator().manual_seed(0))
    assert masked.shape == (5, 16) and (masked.sum(dim=1) == 5).all()
    assert len({tuple(row.tolist()) for row in masked}) > 1  # different places per sample


def test_mim_loss_reads_masked_positions_only():
    model, b = tiny(), batch()
    kept = {}

    def record(fused, original=model.mim_predictions):
        kept["pred"] = original(fused)
        kept["pred"].retain_grad()
        return kept["pred"]

    model.mim_predictions = record
    loss, _ = mim_loss(model, b, generator=torch.Generator().manual_seed(3))
    loss.backward()
    touched = kept["pred"].grad.abs().sum(dim=-1) > 0  # (B, N)
    expected = mim_mask(4, 16, model.config.mim_ratio, torch.Generator().manual_seed(3))
    assert torch.equal(touched, expected)


def test_context_dropout_gives_text_only_mlm():
    model, b = tiny(), batch()
    model.train()
    g = torch.Generator().manual_seed(0)
    dropped, _ = mlm_loss(model, b, modality_dropout={"image": 1.0}, generator=g)
    g = torch.Generator().manual_seed(0)
    b_other = dict(b, images=torch.randn(4, 3, 16, 16))  # the image is ignored when dropped
    again, _ = mlm_loss(model, b_other, modality_dropout={"image": 1.0}, generator=g)
    torch.testing.assert_close(dropped, again)


def test_multitask_loss_sums_weighted_parts():
    model, b = tiny(), batch()
    weights = {"itc": 1.0, "itm": 0.5, "mlm": 1.0, "mim": 2.0, "vqa": 1.0}
    total, parts = multitask_loss(
        model, b, weights, {"image": 0.2, "text": 0.2}, torch.Generator().manual_seed(0)
    )
    assert {"itc", "itm", "mlm", "mim", "vqa", "itm_acc", "vqa_acc"} <= set(parts)
    torch.testing.assert_close(total.detach(), sum(w * parts[t] for t, w in weights.items()))
    total.backward()
    _, only = multitask_loss(model, b, {"itc": 1.0, "vqa": 0.0})
    assert set(only) == {"itc", "itc_acc"}


@pytest.mark.parametrize(
    ("weights", "dropout", "message"),
    [
        ({"cap": 1.0}, None, "unknown task"),
        ({"itc": 0.0}, None, "no task"),
        ({"itc": -1.0}, None, ">= 0"),
        ({"itc": 1.0}, {"audio": 0.5}, "unknown modality"),
    ],
)
def test_multitask_loss_rejects_bad_arguments(weights, dropout, message):
    with pytest.raises(ValueError, match=message):
        multitask_loss(tiny(), batch(), weights, dropout)


def test_missing_batch_keys_and_disabled_heads_raise():
    b = batch()
    del b["question_ids"]
    with pytest.raises(ValueError, match="vqa task needs batch keys"):
        vqa_loss(tiny(), b)
    with pytest.raises(ValueError, match="no 'vqa' head"):
        tiny(heads=["itc", "itm"]).answer_logits(b["images"], b["input_ids"], b["attention_mask"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"heads": ["itm"]}, "enable itc"),
        ({"heads": ["itc", "caption"]}, "heads must be"),
        ({"fusion": {"type": "concat_pooled", "width": 16}}, "mlm head needs fused text"),
        ({"fusion": {"type": "transformer", "style": "albef", "width": 16, "heads": 2}}, "mim head"),
        ({"mlm_probability": 0.0}, "mlm_probability"),
        ({"fusion": {"widht": 16}}, "unknown key 'widht'"),
        ({"heads": ["mlm"], "vocab_size": 99}, "tie_mlm_head"),
        ({"itm_mining_temperature": 0.0}, "itm_mining_temperature"),
        ({"answers": ["yes", "no"]}, "answers must be 5 distinct"),
        ({"heads": ["itc", "point"]}, "enable vqa too"),
        ({"heads": ["itc", "vqa", "point"], "point_itm": True}, "point_itm needs the itm and point heads"),
        ({"point_relations": 2}, "point_relations must be >= 0 and needs the point head"),
        ({"heads": POINTED, "point_relations": -1}, "point_relations must be >= 0"),
        (
            {"heads": ["vqa", "point"], "fusion": {"type": "transformer", "style": "albef", "width": 16}},
            "point head needs fused image",
        ),
    ],
)
def test_bad_configs_raise(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny(**overrides)


def test_mlm_head_is_tied_or_untied():
    tied = tiny()
    assert tied.mlm_decoder.weight is tied.text_encoder.token_embed.weight
    untied = tiny(tie_mlm_head=False, vocab_size=64)
    assert untied.mlm_decoder.weight.shape == (64, 16)


def test_pooled_fusion_without_token_heads_trains_itm():
    model = tiny(fusion={"type": "gated", "width": 16}, heads=["itc", "itm", "vqa"])
    loss, _ = multitask_loss(model, batch(), {"itm": 1.0, "vqa": 1.0})
    loss.backward()


def test_curriculum_moves_from_unimodal_to_joint_tasks():
    curriculum = Curriculum()
    curriculum.validate()
    first, last = curriculum.weights(0), curriculum.weights(10_000)
    assert "itm" not in first and "vqa" not in first and curriculum.modality_dropout(0)["image"] == 1.0
    assert {"itc", "itm", "mlm", "mim", "vqa"} == set(last)
    custom = from_dict(
        Curriculum,
        {"phases": [{"until_step": 10, "tasks": {"mlm": 1.0}}, {"until_step": 20, "tasks": {"itm": 1.0}}]},
    )
    assert custom.weights(9) == {"mlm": 1.0} and custom.weights(10) == {"itm": 1.0}
    assert custom.weights(500) == {"itm": 1.0}  # the last phase holds
    assert from_dict(Curriculum, to_dict(curriculum)) == curriculum


@pytest.mark.parametrize(
    ("phases", "message"),
    [
        ([], "must not be empty"),
        (
            [{"until_step": None, "tasks": {"itc": 1}}, {"until_step": 5, "tasks": {"itc": 1}}],
            "only the last",
        ),
        ([{"until_step": 5, "tasks": {"itc": 1}}, {"until_step": 5, "tasks": {"itc": 1}}], "increase"),
        ([{"tasks": {"itx": 1}}], "unknown task"),
        ([{"tasks": {"itc": 0}}], "at least one"),
        ([{"tasks": {"itc": 1}, "modality_dropout": {"image": 2.0}}], "must lie in"),
    ],
)
def test_bad_curricula_raise(phases, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Curriculum, {"phases": phases})


def test_phase_validates_alone():
    with pytest.raises(ConfigError, match="until_step"):
        CurriculumPhase(until_step=0, tasks={"itc": 1.0}).validate()


@pytest.fixture
def one_thread():
    """Tiny ops on a busy 2-core machine run many times faster without intra-op threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_itm_loss_falls_on_a_fixed_batch(one_thread):
    """The balanced loss must end well below ln 2 = 0.693, what a constant logit reaches, and the matched
    pairs must outscore the mismatched ones: the fused output depends on the pairing itself."""
    model = tiny(fusion={"type": "transformer", "width": 32, "depth": 1, "heads": 2}, heads=["itc", "itm"])
    b, g = batch(), torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(100):
        loss, _ = itm_loss(model, b, generator=g, negatives="easy")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    start, end = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert end < 0.55 and start > 0.65
    with torch.no_grad():
        image, text = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")  # every pairing
        pairs = (
            b["images"][image.flatten()],
            b["input_ids"][text.flatten()],
            b["attention_mask"][text.flatten()],
        )
        logits = model.match_logits(*pairs).view(4, 4)
    matched = torch.eye(4, dtype=torch.bool)
    assert logits[matched].mean() > logits[~matched].mean() + 1.0


def test_proposed_named_config_loads_tiny_clip_towers():
    """The tiny-fusion proposal reuses tiny-clip's tower specs, so a trained tiny-clip initialises both."""
    clip = get_spec("tiny-clip").model
    proposal = {
        "image": clip["image"],
        "text": clip["text"],
        "fusion": {"type": "transformer", "width": 128, "depth": 2, "heads": 4},
    }
    model = FusionEncoder.from_config(
        from_dict(FusionEncoderConfig, {**proposal, "embed_dim": 128, "num_answers": 23})
    )
    assert model.image_positions.shape == (1, 64, 128)
    model.image_encoder.load_state_dict(build_encoder(clip["image"]).state_dict())  # strict
    model.text_encoder.load_state_dict(build_encoder(clip["text"]).state_dict())


def test_contradicting_captions_are_extra_itm_negatives():
    model, b = tiny(heads=["itc", "itm"]), batch()
    b["neg_input_ids"] = b["input_ids"].flip(1)[:, :7]  # another length: padded inside the loss
    b["neg_attention_mask"] = b["attention_mask"].flip(1)[:, :7]
    b["neg_valid"] = torch.tensor([True, False, True, True])
    loss, metrics = itm_loss(model, b, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and 0.0 <= metrics["contradiction_acc"] <= 1.0
    with torch.no_grad():  # the three valid contradictions are scored as pairs with their own image
        rows = torch.tensor([0, 2, 3])
        logits = model.match_logits(
            b["images"][rows], b["neg_input_ids"][rows], b["neg_attention_mask"][rows]
        )
    assert metrics["contradiction_acc"] == pytest.approx((logits < 0).float().mean().item())
    del b["neg_valid"]
    with pytest.raises(ValueError, match="neg_valid"):
        itm_loss(model, b)


def test_vqa_reads_several_questions_per_image_and_can_hide_the_image():
    model, b = tiny(heads=["vqa"]), batch()
    model.eval()
    b["question_image"] = torch.tensor([0, 0, 1, 3])
    _, metrics = vqa_loss(model, b)
    with torch.no_grad():
        logits = model.answer_logits(b["images"][b["question_image"]], b["question_ids"], b["question_mask"])
    assert metrics["acc"] == pytest.approx((logits.argmax(-1) == b["answer_ids"]).float().mean().item())
    model.train()  # context dropout applies in training only
    hidden, _ = vqa_loss(model, b, modality_dropout={"image": 1.0})
    with torch.no_grad():
        text = model.text_tokens(b["question_ids"], b["question_mask"])
        blind = model.answer_head(model.fuse(None, text, b["question_mask"]).pooled)
    expected = torch.nn.functional.cross_entropy(blind, b["answer_ids"])
    assert hidden.item() == pytest.approx(expected.item(), rel=1e-5)
    b["question_image"] = torch.tensor([0, 0, 1, 9])
    with pytest.raises(ValueError, match="question_image"):
        vqa_loss(model, b)


def test_positives_matrix_replaces_groups_in_itc_and_itm():
    from polymodal.modules.fusion_losses import pair_positives

    model, b = tiny(heads=["itc", "itm"]), batch()
    b["positives"] = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    b["groups"] = torch.tensor([0, 1, 2, 3])  # ignored when positives are given
    torch.testing.assert_close(pair_positives(b, 4, torch.device("cpu")), b["positives"])
    loss, _ = itc_loss(model, b)
    grouped = dict(b, groups=torch.tensor([0, 0, 2, 3]))
    del grouped["positives"]
    torch.testing.assert_close(loss, itc_loss(model, grouped)[0])  # the same relation, given as groups
    for _ in range(20):  # a caption true of another image is never mined as its negative
        similarity = torch.zeros(4, 4)
        similarity[0, 1] = 50.0
        neg_text, *_ = mine_hard_negatives(similarity, pair_positives(b, 4, torch.device("cpu")))
        assert neg_text[0] in (2, 3)
    with pytest.raises(ValueError, match="positives must be a"):
        itc_loss(model, dict(b, positives=torch.ones(3, 3, dtype=torch.bool)))


def test_image_positions_start_as_a_2d_grid_code():
    from polymodal.models.fusion_encoder import grid_positions

    code = grid_positions(16, 8)[0]  # a 4 x 4 grid
    assert code.shape == (16, 8) and code.abs().max() <= 0.2 + 1e-6
    assert torch.cdist(code, code).fill_diagonal_(1.0).min() > 0  # every cell is told apart
    torch.testing.assert_close(code[1, :4], code[0, :4])  # same row: the row half agrees
    assert grid_positions(10, 8).abs().max() < 0.1  # not a square grid: small random init


def test_easy_itm_negatives_skip_mining_and_contradictions():
    model, b = tiny(heads=["itc", "itm"]), batch()
    b["neg_input_ids"], b["neg_attention_mask"] = b["input_ids"].flip(1), b["attention_mask"].flip(1)
    b["neg_valid"] = torch.ones(4, dtype=torch.bool)
    _, hard = itm_loss(model, b, generator=torch.Generator().manual_seed(0))
    _, easy = itm_loss(model, b, generator=torch.Generator().manual_seed(0), negatives="easy")
    assert "contradiction_acc" in hard and "contradiction_acc" not in easy
    with pytest.raises(ValueError, match="itm negatives must be one of"):
        itm_loss(model, b, negatives="medium")
    with pytest.raises(ConfigError, match="itm_negatives"):
        CurriculumPhase(tasks={"itm": 1.0}, itm_negatives="medium").validate()


def test_an_audio_tower_plugs_into_the_fusion_encoder():
    """The audio encoder has the common encoder interface: in the media slot, every task trains on log-mel."""
    audio = {"type": "audio", "n_mels": 8, "max_positions": 8, "width": 16, "depth": 1, "heads": 2}
    model = tiny(image=audio).train()
    b = batch()
    b["images"] = torch.randn(4, 8, 16)  # (B, n_mels, frames): 8 tokens per clip
    weights = {"itc": 1.0, "itm": 1.0, "mlm": 1.0, "mim": 1.0, "vqa": 1.0}
    total, parts = multitask_loss(model, b, weights)
    total.backward()
    assert torch.isfinite(total) and set(weights) <= set(parts)
    assert model.image_tokens(b["images"]).shape[:2] == (4, 8)


def test_the_point_head_feeds_the_answer_and_shares_one_pass_with_vqa():
    model, b = tiny(heads=POINTED), batch()
    out = model(b["images"], b["question_ids"], b["question_mask"])
    points = out["points"]
    assert points.shape == (4, 2, 2) and bool(((points >= 0) & (points <= 1)).all())
    torch.testing.assert_close(
        model.answer_logits(b["images"], b["question_ids"], b["question_mask"]), out["answer_logits"]
    )
    assert model.answer_head.fc1.in_features == 16 + 6  # pooled + two points + their difference
    total, parts = multitask_loss(model, b, {"vqa": 1.0, "point": 1.0})
    assert set(parts) >= {"vqa", "point", "vqa_acc", "point_l1"}
    torch.testing.assert_close(total, parts["vqa"] + parts["point"])
    none_named = {**b, "question_points_mask": torch.zeros(4, 2, dtype=torch.bool)}
    assert point_loss(model, none_named)[0].item() == 0.0


def test_relation_features_feed_the_answer_and_itm_heads():
    assert not hasattr(tiny(heads=POINTED), "relation")  # opt in: models saved without it still load
    model, b = tiny(heads=POINTED, point_itm=True, point_relations=3), batch()
    assert model.answer_head.fc1.in_features == model.itm_point_head.fc1.in_features == 16 + 6 + 3
    out = model(b["images"], b["question_ids"], b["question_mask"])
    torch.testing.assert_close(
        model.answer_logits(b["images"], b["question_ids"], b["question_mask"]), out["answer_logits"]
    )
    total, _ = multitask_loss(model, b, {"itc": 1.0, "itm": 1.0, "vqa": 1.0, "point": 1.0})
    total.backward()
    assert model.relation.directions.weight.grad.abs().sum() > 0 and model.relation.slot.grad.abs().sum() > 0


def test_the_point_head_checks_relations_for_itm_starting_from_the_pooled_logit():
    assert not hasattr(tiny(heads=POINTED), "itm_point_head")  # opt in: models saved without it still load
    model, b = tiny(heads=POINTED, point_itm=True), batch()
    args = (b["images"], b["input_ids"], b["attention_mask"])
    fused = model.fuse(model.image_tokens(b["images"]), model.text_tokens(*args[1:]), b["attention_mask"])
    logits, points = (
        model.match_readout(fused, b["attention_mask"]),
        model.point_at(fused, b["attention_mask"]),
    )
    torch.testing.assert_close(logits, model.itm_head(fused.pooled).squeeze(-1))  # relation check starts at 0
    assert points.shape == (4, 2, 2)
    torch.testing.assert_close(model.match_logits(*args), logits)
    loss, _ = itm_loss(model, b, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert model.itm_point_head.fc2.weight.grad.abs().sum() > 0  # it learns from the ITM loss
    captions = {**b, "caption_points": torch.rand(4, 2, 2), "caption_points_mask": b["question_points_mask"]}
    loss, metrics = point_loss(model, captions)
    assert set(metrics) == {"l1", "caption_l1"} and torch.isfinite(loss)
    torch.testing.assert_close(loss, metrics["l1"] + metrics["caption_l1"])
    plain = tiny(heads=POINTED)  # its ITM does not read points: captions are not pointed at
    assert set(point_loss(plain, captions)[1]) == {"l1"}
