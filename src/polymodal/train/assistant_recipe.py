"""The assistant's training recipe: LM pre-training, alignment, then instruction tuning with LoRA.

1. ``lm``: the causal LM alone learns the world's language and chat format from text-only conversations.
2. ``align`` (LLaVA stage 1): image encoder and LM frozen; only the adapter learns, on captions.
3. ``instruct`` (LLaVA stage 2): LoRA on the LM (via ``peft``) plus the adapter, on the instruction mix;
   the LoRA weights are merged into the LM afterwards, so the shipped model is a plain one.

Each stage trains in its own folder under the run directory (``runs/<name>/<stage>``) with the foundation's
trainer, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from polymodal.config import ConfigError, from_dict
from polymodal.train.loop import TrainConfig

STAGE_ORDER = ("lm", "align", "instruct")


@dataclass
class LoraRecipe:
    r: int = 16  # rank of the low-rank update
    alpha: int = 32  # scaling numerator (update scaled by alpha / r)
    dropout: float = 0.0  # dropout on the LoRA input
    target_modules: list[str] = field(default_factory=lambda: ["qkv", "proj", "fc1", "fc2"])  # LM layer names
    # LM parameters trained in full beside LoRA, by name fragment (e.g. ["norm", "bias", "embed"]; LLaVA
    # trains new embeddings so); the LoRA matrices' frozen base weights never match
    train_parts: list[str] = field(default_factory=list)
    # LoRA+ (Hayou et al., 2024): the B matrices learn at this multiple of the stage's lr (paper: 16)
    b_lr_ratio: float = 1.0
    use_dora: bool = False  # DoRA (Liu et al., 2024): a trained magnitude per output beside LoRA's direction
    init: str = (
        "default"  # default (B = 0) | gaussian | pissa (the base weights' top singular vectors) | olora
    )

    def validate(self) -> None:
        if not self.b_lr_ratio > 0:
            raise ConfigError(f"lora.b_lr_ratio must be positive, got {self.b_lr_ratio}")
        if self.init not in LORA_INITS:
            raise ConfigError(f"lora.init must be one of {LORA_INITS}, got {self.init!r}")


LORA_INITS = ("default", "gaussian", "pissa", "olora")  # peft's init_lora_weights ("default" = True)


@dataclass
class StageRecipe:
    train: TrainConfig = field(default_factory=TrainConfig)  # optimisation of this stage
    data: dict[str, Any] = field(default_factory=dict)  # polymodal.data.instructions.InstructionDataConfig
    batch_size: int = 32  # conversations per micro-batch
    lora: LoraRecipe | None = None  # instruct only: LoRA on the LM (None = train the adapter alone)
    loss_per_sample: bool = False  # average the answer loss per conversation, not per token (see answer_loss)
    train_vision: bool = False  # also fine-tune the image encoder in this stage (frozen again afterwards)
    train_lm: bool = False  # align/instruct: fine-tune the whole LM (LLaVA-1.5's stage 2), instead of LoRA
    fresh_words: list[str] = field(default_factory=list)  # words whose LM token embeddings (tied: their
    # output rows too) restart at random when the stage starts (train/fresh_words.py); the stage must train them
    scene_tokens: bool = False  # lm only: images read as their scene graph's tokens (train/scene_tokens.py)
    answers_only: bool = False  # lm only: loss on the replies alone (the later stages always are)
    scene_distill: float = 0.0  # align/instruct: weight of the adapter's regression to those scene tokens


INIT_FROM_UNUSED = ("model_overrides", "vision_from", "tokenizer_vocab_size", "tokenizer_corpus_size")


@dataclass
class AssistantRecipe:
    kind: str = "assistant"  # recipe family (the dual encoder recipes have none)
    name: str = ""  # run and model name
    description: str = ""  # one line for the model card
    model: str = "tiny-assistant"  # architecture name (model_configs/<model>.json)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # nested overrides of the model config
    vision_from: str = "tiny-clip"  # model whose image tower initialises (and stays) the vision encoder
    # a trained assistant (bundled name, model folder or hub id) whose weights and tokenizer start the run
    # instead of fresh ones, to fine-tune it further (its own architecture and tokenizer: setting
    # model_overrides, vision_from or the tokenizer_* keys beside it is an error); empty: build from scratch
    init_from: str = ""
    tokenizer_vocab_size: int = 1020  # BPE size before the chat tokens are added
    tokenizer_corpus_size: int = 40000  # world texts the BPE is trained on
    stages: dict[str, StageRecipe] = field(default_factory=dict)  # lm | align | instruct
    eval_tasks: list[str] = field(default_factory=list)  # tasks run on the final model
    eval_n: int = 0  # samples per task for evaluations during training (0 = none)

    @property
    def media(self) -> str:
        """What the assistant reads besides text: "image" or "audio" (from its architecture)."""
        from polymodal.registry import get_spec

        return get_spec(self.model, **self.model_overrides).model_config().media

    def data_config(self, stage: StageRecipe):
        """A stage's data section, parsed for the assistant's media (shapes scenes or tones clips)."""
        from polymodal.data.audio_instructions import AudioInstructionDataConfig
        from polymodal.data.instructions import InstructionDataConfig

        config_cls = AudioInstructionDataConfig if self.media == "audio" else InstructionDataConfig
        config = from_dict(config_cls, stage.data, where=f"recipe {self.name}: stage data")
        config.validate()
        return config

    def validate(self) -> None:
        self._check_init_from()
        unknown = sorted(set(self.stages) - set(STAGE_ORDER))
        if unknown or not self.stages:
            raise ConfigError(
                f"recipe {self.name}: stages must be among {STAGE_ORDER}, got {sorted(self.stages)}"
            )
        for name, stage in self.stages.items():
            data = self.data_config(stage)
            if stage.lora is not None:
                stage.lora.validate()
            self._check_stage_options(name, stage, data)

    def _check_init_from(self) -> None:
        """A ConfigError for keys that build a fresh assistant set beside ``init_from`` (they would go
        unused: the run takes that assistant's architecture and tokenizer)."""
        if not self.init_from:
            return
        fresh = AssistantRecipe()
        unused = [key for key in INIT_FROM_UNUSED if getattr(self, key) != getattr(fresh, key)]
        if unused:
            raise ConfigError(
                f"recipe {self.name}: init_from {self.init_from!r} brings its own architecture and tokenizer; "
                f"{', '.join(unused)} would be unused (remove them)"
            )

    def _check_stage_options(self, name: str, stage: StageRecipe, data: Any) -> None:
        """ConfigErrors for options misplaced in stage ``name`` (``data``: its parsed data_config)."""
        trains_embeddings = name == "lm" or (  # train_lm_parts' rule: a fragment of the parameter's name
            stage.lora is not None and any(f in "token_embed.weight" for f in stage.lora.train_parts)
        )
        if stage.fresh_words and not trains_embeddings:
            raise ConfigError(
                f"recipe {self.name}: stage {name} restarts fresh_words but does not train the embeddings"
                " (only the lm stage, or an instruct stage whose lora.train_parts name them, e.g. 'embed', does)"
            )
        if (stage.scene_tokens or stage.scene_distill) and self.media != "image":
            raise ConfigError(
                f"recipe {self.name}: scene tokens describe shapes scenes; this assistant hears"
            )
        if stage.train_lm and (name == "lm" or stage.lora is not None):
            raise ConfigError(
                f"recipe {self.name}: train_lm fine-tunes the whole LM beside the adapter; stage {name} "
                "trains the LM already or adapts it with LoRA (use one of them)"
            )
        if stage.answers_only and name != "lm":
            raise ConfigError(
                f"recipe {self.name}: answers_only is an lm-stage option (stage {name} always is)"
            )
        if getattr(data, "heldout_pairs_in_text", False) and name != "lm":  # audio data has no such key
            raise ConfigError(
                f"recipe {self.name}: heldout_pairs_in_text is an lm-stage option (stage {name} sees images, "
                "and no training image may hold a held-out pair)"
            )
        if stage.scene_tokens and name != "lm":
            raise ConfigError(
                f"recipe {self.name}: scene_tokens is an lm-stage option (stage {name} sees images)"
            )
        if stage.scene_distill < 0 or (stage.scene_distill and name == "lm"):
            raise ConfigError(
                f"recipe {self.name}: scene_distill must be >= 0 and only in a stage with images, got "
                f"{stage.scene_distill} in stage {name}"
            )


def corpus_spatial_form(recipe: AssistantRecipe) -> str | None:
    """The spatial rationale form whose words the tokenizer reads: boxes where any stage writes them, else
    names where any stage writes names or an attribute (the attribute form's words are all the names form's:
    both share one tokenizer, so an instruct stage of one can start from the other's lm stage)."""
    written = {recipe.data_config(stage).spatial_form for stage in recipe.stages.values()}
    if "boxes" in written:
        return "boxes"
    return "names" if written & {"names", "attribute"} else None


def build_assistant_tokenizer(recipe: AssistantRecipe, context_length: int):
    """A BPE trained on the assistant's world language (shapes or tones), plus the chat tokens."""
    from polymodal.data.audio_instructions import audio_text_corpus
    from polymodal.data.chat import MEDIA_TOKENS, add_chat_tokens
    from polymodal.data.instructions import world_text_corpus
    from polymodal.data.tokenizer import TextTokenizer

    if recipe.media == "audio":
        texts = audio_text_corpus(recipe.tokenizer_corpus_size)
    else:  # the words of spatial rationales too, when a stage writes them
        texts = world_text_corpus(recipe.tokenizer_corpus_size, spatial_form=corpus_spatial_form(recipe))
    tokenizer = TextTokenizer.train_bpe(
        texts, vocab_size=recipe.tokenizer_vocab_size, context_length=context_length
    )
    add_chat_tokens(tokenizer, MEDIA_TOKENS[recipe.media])
    return tokenizer


def build_spec(recipe: AssistantRecipe, tokenizer):
    """The model spec with the LM vocabulary and image token id taken from the tokenizer."""
    from polymodal.data.chat import MEDIA_TOKENS
    from polymodal.registry import deep_merge, get_spec

    tokens = {
        "lm": {"vocab_size": tokenizer.vocab_size},
        "image_token_id": tokenizer.tokenizer.token_to_id(MEDIA_TOKENS[recipe.media]),
    }
    spec = get_spec(recipe.model, **deep_merge(recipe.model_overrides, tokens))
    return replace(spec, name=recipe.name, description=recipe.description or spec.description)


def load_vision_weights(model, source: str) -> None:
    """Copy the image (or audio) tower of a trained dual encoder into the assistant; the configs must agree."""
    from polymodal.config import to_dict as as_dict
    from polymodal.hub import load

    tower = load(source).model.media_encoder
    if as_dict(tower.config) != as_dict(model.vision.config):
        raise ConfigError(
            f"the encoder config of the assistant differs from {source}'s tower: "
            f"{as_dict(model.vision.config)} vs {as_dict(tower.config)}"
        )
    model.vision.load_state_dict(tower.state_dict())


def add_lora(lm, lora: LoraRecipe):
    """Wrap the LM's linear layers with LoRA (peft); returns the peft model (``merge_and_unload`` later)."""
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        use_dora=lora.use_dora,
        init_lora_weights=True if lora.init == "default" else lora.init,
    )
    wrapped = LoraModel(lm, config, "default")
    train_lm_parts(lm, lora.train_parts)
    return wrapped


def train_lm_parts(lm, fragments: list[str]) -> None:
    """Unfreeze the LM parameters whose names contain any of ``fragments`` (never LoRA's own or the base
    weights it adapts); a ConfigError names a fragment that matches nothing."""
    for fragment in fragments:
        chosen = [
            p for name, p in lm.named_parameters()
            if fragment in name and "lora_" not in name and "base_layer.weight" not in name
        ]  # fmt: skip
        if not chosen:
            raise ConfigError(f"lora.train_parts: {fragment!r} names no trainable part of the LM")
        for p in chosen:
            p.requires_grad_(True)


def lora_b_scales(model, ratio: float) -> dict[str, float]:
    """LoRA+'s per-parameter lr multipliers: every LoRA B matrix of ``model`` by its full name (an
    ``lr_scale`` prefix that matches it alone)."""
    return {name: ratio for name, p in model.named_parameters() if "lora_B" in name and p.requires_grad}


def _stage_batches(recipe: AssistantRecipe, stage_name: str, stage: StageRecipe, model, tokenizer, processor):
    from polymodal.data.assistant_batches import AssistantBatches
    from polymodal.data.audio_instructions import AudioInstructionSamples
    from polymodal.data.instructions import InstructionSamples
    from polymodal.pipelines.assistant import default_template
    from polymodal.train.scene_tokens import grid_side

    data = recipe.data_config(stage)
    samples = AudioInstructionSamples(data) if recipe.media == "audio" else InstructionSamples(data)
    template = default_template(model, tokenizer)
    context = model.lm.config.context_length
    side = grid_side(model) if stage.scene_tokens or stage.scene_distill else 0
    return AssistantBatches(
        samples, template, processor, stage.batch_size, stage_name, context, side, stage.answers_only
    )


def _freeze_for(model, stage_name: str, stage: StageRecipe) -> None:
    """Trainable parts per stage: the LM alone, then the adapter (+ feature norm and positions), then
    the same plus LoRA; ``train_vision`` adds the image encoder (its frozen flag is lifted meanwhile) and
    ``train_lm`` the whole LM."""
    model.requires_grad_(False)
    model.config.freeze_vision = not stage.train_vision
    if stage_name == "lm" or stage.train_lm:
        model.lm.requires_grad_(True)
    if stage_name == "lm":
        return
    model.adapter.requires_grad_(True)
    model.feature_norm.requires_grad_(True)
    if model.feature_pos is not None:
        model.feature_pos.requires_grad_(True)
    if stage.train_vision:
        model.vision.requires_grad_(True)


def _stage_loss(stage: StageRecipe):
    from polymodal.models.assistant import assistant_loss
    from polymodal.train.scene_tokens import scene_distill_loss, scene_lm_loss

    if stage.scene_tokens:
        return scene_lm_loss
    if stage.scene_distill:
        return functools.partial(scene_distill_loss, weight=stage.scene_distill)
    return assistant_loss


def run_stage(recipe: AssistantRecipe, stage_name: str, model, tokenizer, processor, out_dir: Path) -> dict:
    """Train one stage in ``out_dir/<stage>`` (resuming if possible) and return the trainer summary."""
    import torch

    from polymodal.train.fresh_words import restart_word_embeddings
    from polymodal.train.loop import Trainer

    stage = recipe.stages[stage_name]
    batches = _stage_batches(recipe, stage_name, stage, model, tokenizer, processor)
    if stage.train_vision and stage_name == "lm":
        raise ConfigError(f"recipe {recipe.name}: train_vision has no meaning in the lm stage")
    _freeze_for(model, stage_name, stage)
    if stage.fresh_words:  # a resumed stage gets its trained rows back from the checkpoint
        seeded = torch.Generator().manual_seed(stage.train.seed)
        restart_word_embeddings(model.lm.token_embed.weight, tokenizer, stage.fresh_words, seeded)
    lora = add_lora(model.lm, stage.lora) if stage_name == "instruct" and stage.lora else None
    trained = model.lm if stage_name == "lm" and not stage.scene_tokens else model
    config = replace(stage.train, batch_size=stage.batch_size)
    if lora is not None and stage.lora.b_lr_ratio != 1.0:
        scales = {**config.lr_scale, **lora_b_scales(trained, stage.lora.b_lr_ratio)}
        config = replace(config, lr_scale=scales)
    loss_fn = functools.partial(_stage_loss(stage), per_sample=stage.loss_per_sample)
    summary = Trainer(trained, loss_fn, batches.batch, config, out_dir / stage_name).fit()
    if lora is not None:
        model.lm = lora.merge_and_unload()
    model.requires_grad_(False)
    model.config.freeze_vision = True
    return summary


def run_assistant_recipe(recipe: AssistantRecipe, out_dir: str | Path) -> dict[str, Any]:
    """Run every stage in order, save ``out_dir/model``, evaluate it and write its card."""
    import torch

    from polymodal.pipelines import pipeline_for
    from polymodal.train.recipe import finish_run

    recipe.validate()
    out_dir = Path(out_dir)
    first_stage = next(iter(recipe.stages.values()))
    torch.manual_seed(first_stage.train.seed)
    model, tokenizer, processor, spec = _loaded_start(recipe) if recipe.init_from else _fresh_start(recipe)
    summaries = {}
    for stage_name in STAGE_ORDER:
        if stage_name in recipe.stages:
            summaries[stage_name] = run_stage(recipe, stage_name, model, tokenizer, processor, out_dir)
    pipeline = pipeline_for(spec, model.float().eval(), None, tokenizer=tokenizer)
    results = finish_run(pipeline, recipe, stage_totals(summaries), out_dir, **assistant_notes(recipe))
    return {"stages": summaries, "model_dir": str(out_dir / "model"), "eval": results}


def _fresh_start(recipe: AssistantRecipe):
    """(model, tokenizer, media processor, spec) of a new assistant: a BPE trained on the world's language,
    the LM at random and the media tower from ``vision_from``."""
    from polymodal.data.audio_processor import AudioProcessor, AudioProcessorConfig
    from polymodal.data.images import ImageProcessor, ImageProcessorConfig
    from polymodal.registry import build_model, get_spec

    base = get_spec(recipe.model, **recipe.model_overrides).model_config()
    tokenizer = build_assistant_tokenizer(recipe, base.lm_config().context_length)
    spec = build_spec(recipe, tokenizer)
    model = build_model(spec)
    load_vision_weights(model, recipe.vision_from)
    if recipe.media == "audio":
        processor = AudioProcessor(from_dict(AudioProcessorConfig, spec.audio_processor))
    else:
        processor = ImageProcessor(from_dict(ImageProcessorConfig, spec.image_processor))
    return model, tokenizer, processor, spec


def _loaded_start(recipe: AssistantRecipe):
    """(model, tokenizer, media processor, spec) of the trained assistant ``init_from`` names, in fp32,
    renamed after the recipe; a ConfigError unless it is an assistant of the recipe's media."""
    from polymodal.hub import load
    from polymodal.pipelines.assistant import AssistantPipeline

    pipeline = load(recipe.init_from)
    if not isinstance(pipeline, AssistantPipeline) or pipeline.media != recipe.media:
        raise ConfigError(
            f"recipe {recipe.name}: init_from {recipe.init_from!r} is not an assistant that reads "
            f"{recipe.media} (the recipe's model {recipe.model!r} does)"
        )
    processor = pipeline.audio_processor if recipe.media == "audio" else pipeline.image_processor
    spec = replace(
        pipeline.spec, name=recipe.name, description=recipe.description or pipeline.spec.description
    )
    return pipeline.model.float().train(), pipeline.tokenizer, processor, spec


@dataclass(frozen=True)
class DataNote:
    """The card's words for one medium's training data, stage by stage."""

    split: str  # the train split the stages draw from
    align: str  # what the align stage trains on
    instruct: str  # what the instruct stage trains on
    evaluated: str  # what the evaluation holds
    metrics: str  # the card's metrics note


DATA_NOTES = {
    "image": DataNote(
        split="shapes-world scenes (train split, without the held-out colour/shape pairs)",
        align="captions (align stage)",
        instruct="an instruction mix of short/detailed captions, VQA, referring expressions answered with boxes "
        "and multi-turn chats (instruct stage)",
        evaluated="Evaluated on test scenes and held-out-pair scenes never trained on.",
        metrics="`_heldout`: scenes holding a colour/shape pair never seen in a training image. CIDEr/BLEU use "
        "every true caption of a scene as references (METEOR and SPICE need Java and are skipped). CHAIR counts "
        "shapes mentioned in detailed captions that are not in the scene; POPE asks balanced yes/no questions "
        "about present and absent (random or adversarial) colour/shape pairs.",
    ),
    "audio": DataNote(
        split="tones-world clips (train split, without the held-out kind/pitch pairs)",
        align="captions (align stage)",
        instruct="a mix of short/detailed captions, questions and multi-turn chats (instruct stage)",
        evaluated="Evaluated on test clips and held-out-pair clips never trained on.",
        metrics="`_heldout`: clips holding a (kind, pitch) pair never trained on. BLEU/CIDEr use the clip's true "
        "captions as references; question accuracy uses VQAv2 answer normalisation.",
    ),
}
LM_TEXT = " turned into text-only conversations (LM stage)"
LM_TEXT_PAIRS = (
    "shapes-world scenes turned into text-only conversations that name every colour/shape pair, the held-out "
    "ones too (LM stage: `data.heldout_pairs_in_text`, as a language model's pre-training text names things "
    "no training image shows), then train-split images without the held-out pairs"
)


def assistant_notes(recipe: AssistantRecipe) -> dict[str, str]:
    """The card's data and metrics notes for the stages the recipe runs: the data note says whether the lm
    stage's text names held-out pairs, and which trained assistant the run started from (``init_from``)."""
    words = DATA_NOTES[recipe.media]
    media_stages = " and ".join(
        note for name, note in (("align", words.align), ("instruct", words.instruct)) if name in recipe.stages
    )
    lm = recipe.stages.get("lm")
    if lm is None:
        data_note = f"{words.split}: {media_stages}"
    elif getattr(recipe.data_config(lm), "heldout_pairs_in_text", False):  # audio data has no such key
        data_note = LM_TEXT_PAIRS + (f": {media_stages}" if media_stages else "")
    else:
        data_note = words.split + LM_TEXT + (f", {media_stages}" if media_stages else "")
    data_note += ". " + words.evaluated
    if recipe.init_from:
        stages = ", ".join(name for name in STAGE_ORDER if name in recipe.stages)
        data_note = (
            f"starts from `{recipe.init_from}` (its weights and tokenizer), then trains the stages {stages} on "
            + data_note
        )
    return {"data_note": data_note, "metrics_note": words.metrics}


def stage_totals(summaries: dict[str, dict]) -> dict[str, Any]:
    """One trainer-like summary of all stages for the model card: steps (with the split), wall time,
    time-weighted samples/s, world size and device."""
    stages = ", ".join(f"{k} {v.get('steps')} steps" for k, v in summaries.items())
    wall = sum(v.get("wall_time_s", 0.0) for v in summaries.values())
    first = next(iter(summaries.values()), {})
    return {
        "steps": f"{sum(v.get('steps', 0) for v in summaries.values())} ({stages})",
        "wall_time_s": wall,
        "samples_per_s": sum(
            v.get("samples_per_s", 0.0) * v.get("wall_time_s", 0.0) for v in summaries.values()
        )
        / max(wall, 1e-9),
        "world_size": first.get("world_size", 1),
        "device": first.get("device"),
    }
