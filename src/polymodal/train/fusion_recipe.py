"""The fusion encoder's recipe: ITC + ITM + MLM + MIM + VQA on the shapes world, following a curriculum.

``polymodal train --recipe tiny-fusion`` starts both towers (and the tokenizer) from a trained dual encoder
(``init_from``, tiny-clip by default), then trains with :func:`~polymodal.modules.fusion_losses.multitask_loss`
weighted by the recipe's :class:`~polymodal.train.curriculum.Curriculum` at the trainer's step
(single-modality tasks first, then the joint ones), saves the model, evaluates it and writes its card.
The run folder resumes like every recipe's. Single process: the loss reads the model's heads directly,
which a DDP wrapper would hide.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from polymodal.config import ConfigError, from_dict
from polymodal.modules.fusion_losses import multitask_loss
from polymodal.train.curriculum import Curriculum
from polymodal.train.loop import TrainConfig
from polymodal.train.recipe import TokenizerRecipe


@dataclass
class FusionRecipe:
    kind: str = "fusion"  # recipe family
    name: str = ""  # run and model name
    description: str = ""  # one line for the model card
    model: str = "tiny-fusion"  # architecture name (model_configs/<model>.json)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # nested overrides of the model config
    init_from: str = "tiny-clip"  # dual encoder whose towers and tokenizer start the model; "" = fresh
    freeze_towers: bool = False  # keep the towers as initialised (train the fusion and heads only)
    tokenizer: TokenizerRecipe = field(default_factory=TokenizerRecipe)  # used only when init_from is ""
    data: dict[str, Any] = field(default_factory=dict)  # polymodal.data.fusion_batches.FusionDataConfig
    batch_size: int = 32  # scenes per micro-batch
    curriculum: Curriculum = field(default_factory=Curriculum)  # task weights and context dropout by step
    train: TrainConfig = field(default_factory=TrainConfig)  # optimisation
    eval_tasks: list[str] = field(default_factory=list)  # tasks run on the final model
    eval_n: int = 0  # samples per eval task during training (0 = no eval during training)

    def data_config(self):
        from polymodal.data.fusion_batches import FusionDataConfig

        return from_dict(FusionDataConfig, self.data, where=f"recipe {self.name}: data")

    def validate(self) -> None:
        """Parse the data section and check that the towers have something to train."""
        self.data_config()
        if self.freeze_towers and not self.init_from:
            raise ConfigError(f"recipe {self.name}: freeze_towers keeps random towers without init_from")


class CurriculumLoss:
    """A Trainer ``loss_fn``: :func:`multitask_loss` with the curriculum's weights and context dropout at
    the current step, read from the trainer it follows (so a resumed run continues in the right phase)."""

    def __init__(self, curriculum: Curriculum):
        curriculum.validate()
        self.curriculum = curriculum
        self.trainer = None

    def follow(self, trainer) -> None:
        """Read the step from ``trainer.step`` (the step being computed) from now on."""
        self.trainer = trainer

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.trainer is None:
            raise RuntimeError("CurriculumLoss needs follow(trainer) before training")
        phase = self.curriculum.phase(self.trainer.step)
        total, parts = multitask_loss(
            model, batch, phase.tasks, phase.modality_dropout, itm_negatives=phase.itm_negatives
        )
        return {"loss": total, **parts}


def init_towers(model, source: str):
    """Copy both towers of the dual encoder ``source`` into ``model``; return that model's tokenizer.

    The tower configs must agree. Loading in place keeps the MLM decoder tied to the token embedding.
    """
    from polymodal.config import to_dict
    from polymodal.hub import load

    dual = load(source)
    if not hasattr(dual.model, "media_encoder") or dual.model.modality != "image":
        raise ConfigError(f"init_from {source!r} is not an image-text dual encoder")
    for name, theirs in (
        ("image_encoder", dual.model.media_encoder),
        ("text_encoder", dual.model.text_encoder),
    ):
        ours = getattr(model, name)
        if to_dict(ours.config) != to_dict(theirs.config):
            raise ConfigError(
                f"the fusion model's {name} differs from {source}'s: {to_dict(ours.config)} vs "
                f"{to_dict(theirs.config)}"
            )
        ours.load_state_dict(theirs.float().state_dict())
    return dual.tokenizer


def build_fusion_model(recipe: FusionRecipe):
    """The spec (named after the recipe), the model with its towers initialised, and the tokenizer."""
    import torch

    from polymodal.registry import build_model, get_spec
    from polymodal.train.recipe import build_tokenizer

    spec = get_spec(recipe.model, **recipe.model_overrides)
    spec = replace(spec, name=recipe.name, description=recipe.description or spec.description)
    torch.manual_seed(recipe.train.seed)
    model = build_model(spec)
    tokenizer = (
        init_towers(model, recipe.init_from) if recipe.init_from else build_tokenizer(recipe.tokenizer)
    )
    vocab = model.text_encoder.config.vocab_size
    if tokenizer.vocab_size > vocab:
        raise ConfigError(f"tokenizer has {tokenizer.vocab_size} tokens but the model embeds only {vocab}")
    if recipe.freeze_towers:
        model.image_encoder.requires_grad_(False)
        model.text_encoder.requires_grad_(False)
    return spec, model, tokenizer


def fusion_batches(recipe: FusionRecipe, spec, tokenizer, model):
    """The recipe's batches, with answer ids in the model's answer vocabulary."""
    from polymodal.data.fusion_batches import FusionBatches
    from polymodal.data.images import ImageProcessor, ImageProcessorConfig

    processor = ImageProcessor(from_dict(ImageProcessorConfig, spec.image_processor))
    answers = model.config.answers
    if "vqa" in model.heads and not answers:
        raise ConfigError(f"model {recipe.model} has a vqa head but no answer vocabulary ('answers')")
    kwargs = {"answers": answers} if answers else {}
    return FusionBatches(recipe.data_config(), processor, tokenizer, recipe.batch_size, **kwargs)


def run_fusion_recipe(recipe: FusionRecipe, out_dir: str | Path) -> dict[str, Any]:
    """Train, save ``out_dir/model``, evaluate it and write its card."""
    from polymodal.pipelines import pipeline_for
    from polymodal.train.loop import Trainer
    from polymodal.train.recipe import finish_run, make_eval_fn

    recipe.validate()
    out_dir = Path(out_dir)
    spec, model, tokenizer = build_fusion_model(recipe)
    batches = fusion_batches(recipe, spec, tokenizer, model)
    loss_fn = CurriculumLoss(recipe.curriculum)
    eval_fn = make_eval_fn(recipe, tokenizer) if recipe.eval_n and recipe.eval_tasks else None
    config = replace(recipe.train, batch_size=recipe.batch_size)
    trainer = Trainer(model, loss_fn, batches.batch, config, out_dir, eval_fn=eval_fn)
    loss_fn.follow(trainer)
    summary = trainer.fit()
    pipeline = pipeline_for(spec, model.float().eval(), None, tokenizer=tokenizer)
    results = finish_run(
        pipeline, recipe, summary, out_dir, data_note=FUSION_DATA, metrics_note=FUSION_METRICS
    )
    return summary | {"model_dir": str(out_dir / "model"), "eval": results}


FUSION_DATA = (
    "the shapes world's train split (1-4 objects; four colour/shape pairs never shown), each scene with a "
    "caption in a training phrasing, one caption contradicting it (colour swap, shape swap, relation flip or "
    "count change, in turn) as an extra ITM negative, and questions whose kind is drawn uniformly. Both "
    "towers start from tiny-clip. Curriculum: ITC + text-only MLM + image-only MIM, then every task jointly "
    "(ITM on uniformly drawn in-batch negatives first, then on ITC-mined and contradicting ones). "
    "Evaluated on test scenes and on scenes holding a held-out pair."
)
FUSION_METRICS = (
    "`shapes-vqa`: one question per scene, exact answer; `_heldout`: scenes holding a colour/shape pair never "
    "seen in training. `shapes-mismatch`: true caption accepted (ITM p >= 0.5) and a caption contradicting "
    "the scene in one attribute rejected, per kind; `_unseen`: phrasings never trained on. `shapes-rerank`: "
    "retrieval by the model's own ITC features, then the top 16 re-scored by ITM (`*_rerank`, `*_lift`); "
    '`*_true`: a hit is any item the caption is true of ("two shapes" fits many scenes). '
    "`shapes-vqa-blind`: answers with the image missing (the question alone)."
)
