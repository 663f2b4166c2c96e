"""The fusion encoder's recipe: ITC + ITM + MLM + MIM + VQA on the shapes world, following a curriculum.

``polymodal train --recipe tiny-fusion-base`` starts both towers (and the tokenizer) from a trained dual
encoder (``init_from``, tiny-clip by default); a recipe may instead continue a trained fusion model (as
``tiny-fusion`` continues ``tiny-fusion-base``, adding the point head and its relation features). Either
then trains with :func:`~polymodal.modules.fusion_losses.multitask_loss` weighted by the recipe's
:class:`~polymodal.train.curriculum.Curriculum` at the trainer's step (single-modality tasks first, then
the joint ones), saves the model, evaluates it and writes its card.
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
from polymodal.train.fresh_words import restart_word_embeddings
from polymodal.train.loop import TrainConfig
from polymodal.train.recipe import TokenizerRecipe


@dataclass
class FusionRecipe:
    kind: str = "fusion"  # recipe family
    name: str = ""  # run and model name
    description: str = ""  # one line for the model card
    model: str = "tiny-fusion"  # architecture name (model_configs/<model>.json)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # nested overrides of the model config
    init_from: str = "tiny-clip"  # dual encoder (its towers) or fusion model (all it shares); "" = fresh
    fresh_words: list[str] = field(default_factory=list)  # words whose token embeddings restart at random
    fresh_modules: list[str] = field(default_factory=list)  # prefixes a fusion init_from does not give
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
        if (self.fresh_modules or self.fresh_words) and not self.init_from:
            raise ConfigError(f"recipe {self.name}: fresh_modules and fresh_words need init_from")


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


def init_from_model(model, source: str, fresh_modules: tuple[str, ...] = ()):
    """Start ``model`` from ``source``: a dual encoder gives both towers, a fusion model every weight the
    two share (see :func:`load_shared_weights`) but those under ``fresh_modules`` (say, a head to relearn).
    Returns ``source``'s tokenizer."""
    from polymodal.hub import ModelNotFoundError, load

    try:
        loaded = load(source)
    except ModelNotFoundError as e:
        raise ConfigError(
            f"init_from {source!r} was not found (a path is read from the working directory): train it "
            f"first, e.g. tiny-fusion starts from `polymodal train --recipe tiny-fusion-base` ({e})"
        ) from None
    if getattr(loaded.model, "modality", None) == "image" and hasattr(loaded.model, "media_encoder"):
        init_towers(model, loaded.model.media_encoder, loaded.model.text_encoder, source)
    elif type(loaded.model) is type(model):
        init_towers(model, loaded.model.image_encoder, loaded.model.text_encoder, source)
        theirs = loaded.model.float().state_dict()
        unknown = [p for p in fresh_modules if not any(k.startswith(p) for k in theirs)]
        if unknown:
            raise ConfigError(f"fresh_modules: {unknown[0]!r} names no weight of {source}")
        kept = {k: v for k, v in theirs.items() if not k.startswith(tuple(fresh_modules))}
        load_shared_weights(model, kept, source)
    else:
        raise ConfigError(f"init_from {source!r} is neither an image-text dual encoder nor a fusion model")
    return loaded.tokenizer


def init_towers(model, image_tower: nn.Module, text_tower: nn.Module, source: str) -> None:
    """Copy ``source``'s image and text towers into ``model``; the tower configs must agree. Loading in
    place keeps the MLM decoder tied to the token embedding."""
    from polymodal.config import to_dict

    for name, theirs in (("image_encoder", image_tower), ("text_encoder", text_tower)):
        ours = getattr(model, name)
        if to_dict(ours.config) != to_dict(theirs.config):
            raise ConfigError(
                f"the fusion model's {name} differs from {source}'s: {to_dict(ours.config)} vs "
                f"{to_dict(theirs.config)}"
            )
        ours.load_state_dict(theirs.float().state_dict())


def load_shared_weights(model, theirs: dict[str, Tensor], source: str) -> None:
    """Copy every tensor of ``theirs`` that ``model`` has with the same shape. A matrix whose input grew
    (the answer head reading the point head's features too) keeps its columns, and the new ones start at a
    tenth of their initialisation, so the old answers hold at first; heads ``source`` lacks stay as
    initialised. Any other shape change is a :class:`ConfigError` naming the keys."""
    import torch

    ours = model.state_dict()
    clash = [k for k in theirs if k not in ours]
    loaded = {}
    for key, value in theirs.items():
        if key not in ours:
            continue
        mine = ours[key]
        if mine.shape == value.shape:
            loaded[key] = value
        elif mine.ndim == 2 and mine.shape[0] == value.shape[0] and mine.shape[1] > value.shape[1]:
            loaded[key] = torch.cat([value, mine[:, value.shape[1] :] * 0.1], dim=1)
        else:
            clash.append(f"{key} {tuple(value.shape)} -> {tuple(mine.shape)}")
    if clash:
        raise ConfigError(f"init_from {source!r} does not fit the model: {', '.join(clash[:8])}")
    model.load_state_dict(loaded, strict=False)


def build_fusion_model(recipe: FusionRecipe):
    """The spec (named after the recipe), the model with its towers initialised, and the tokenizer."""
    import torch

    from polymodal.models.fusion_encoder import token_embedding
    from polymodal.registry import build_model, get_spec
    from polymodal.train.recipe import build_tokenizer

    spec = get_spec(recipe.model, **recipe.model_overrides)
    spec = replace(spec, name=recipe.name, description=recipe.description or spec.description)
    torch.manual_seed(recipe.train.seed)
    model = build_model(spec)
    tokenizer = (
        init_from_model(model, recipe.init_from, tuple(recipe.fresh_modules))
        if recipe.init_from
        else build_tokenizer(recipe.tokenizer)
    )
    restart_word_embeddings(token_embedding(model.text_encoder).weight, tokenizer, recipe.fresh_words)
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
        pipeline, recipe, summary, out_dir, data_note=fusion_data_note(recipe), metrics_note=FUSION_METRICS
    )
    return summary | {"model_dir": str(out_dir / "model"), "eval": results}


def fusion_data_note(recipe: FusionRecipe) -> str:
    """The model card's data paragraph: what the recipe trained on, from what, in which phases."""
    data = recipe.data_config()
    kinds = (
        "drawn with weights " + ", ".join(f"{k} {w:g}" for k, w in sorted(data.question_kinds.items()))
        + " (other kinds 1)"
        if data.question_kinds
        else "drawn uniformly"
    )  # fmt: skip
    start = f"Starts from `{recipe.init_from}`" if recipe.init_from else "Starts from random weights"
    if recipe.fresh_modules:
        start += f" (restarting {', '.join(recipe.fresh_modules)})"
    if recipe.fresh_words:
        start += f", with fresh embeddings for the words {', '.join(recipe.fresh_words)}"
    phases = "; ".join(_phase_note(phase) for phase in recipe.curriculum.phases)
    return (
        f"the shapes world's train split ({data.min_objects}-{data.max_objects} objects; four colour/shape pairs "
        "never shown), each scene with a caption in a training phrasing, one caption contradicting it (colour "
        "swap, shape swap, relation flip or count change, in turn) as an extra ITM negative, and "
        f"{data.questions_per_scene} question(s) whose kind is {kinds}. {start}. Phases: {phases}. "
        "Evaluated on test scenes and on scenes holding a held-out pair."
    )


def _phase_note(phase) -> str:
    until = "to the end" if phase.until_step is None else f"to step {phase.until_step}"
    tasks = " + ".join(f"{task.upper()} {weight:g}" for task, weight in phase.tasks.items() if weight > 0)
    notes = [f"{phase.itm_negatives} ITM negatives"] if phase.tasks.get("itm", 0) > 0 else []
    dropout = ", ".join(f"{m} {p:g}" for m, p in phase.modality_dropout.items() if p > 0)
    notes += [f"context dropout {dropout}"] if dropout else []
    return f"{until}, {tasks}" + (f" ({'; '.join(notes)})" if notes else "")


FUSION_METRICS = (
    "`shapes-vqa`: one question per scene, exact answer; `_heldout`: scenes holding a colour/shape pair never "
    "seen in training. `shapes-mismatch`: true caption accepted (ITM p >= 0.5) and a caption contradicting "
    "the scene in one attribute rejected, per kind; `_unseen`: phrasings never trained on. `shapes-rerank`: "
    "retrieval by the model's own ITC features, then the top 16 re-scored by ITM (`*_rerank`, `*_lift`); "
    '`*_true`: a hit is any item the caption is true of ("two shapes" fits many scenes). '
    "`shapes-vqa-blind`: answers with the image missing (the question alone)."
)
