"""Recipes: one JSON file says how a model is trained (architecture, tokenizer, data, optimisation, evals).

``polymodal train --recipe tiny-clip`` reads ``polymodal/recipes/tiny-clip.json``, trains in ``runs/tiny-clip``
(resuming if a checkpoint is there), saves the model folder to ``runs/tiny-clip/model`` and its
evaluation to ``runs/tiny-clip/eval.json``. The same command runs under ``torchrun``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from polymodal.config import ConfigError, apply_overrides, from_dict, load_json, to_dict
from polymodal.train.loop import TrainConfig

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"


@dataclass
class TokenizerRecipe:
    path: str = ""  # an existing tokenizer folder/file, or "minilm"; empty = train a BPE on world text
    vocab_size: int = 1024  # BPE vocabulary size when training one
    corpus_size: int = 20000  # world sentences to train the BPE on
    corpus: str = "world"  # which language the BPE learns: world (shapes + digits) | tones
    seed: int = 0  # seed of the world corpus


@dataclass
class Recipe:
    name: str = ""  # run and model name
    description: str = ""  # one line for the model card
    model: str = "tiny-clip"  # architecture name (model_configs/<model>.json)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # nested overrides of the model config
    tokenizer: TokenizerRecipe = field(default_factory=TokenizerRecipe)  # how to get the tokenizer
    data: dict[str, Any] = field(default_factory=dict)  # polymodal.data.contrastive.ContrastiveDataConfig
    batch_size: int = 128  # pairs per micro-batch per rank
    train: TrainConfig = field(default_factory=TrainConfig)  # optimisation
    eval_tasks: list[str] = field(default_factory=list)  # tasks run on the final model (polymodal.eval.tasks)
    eval_n: int = 0  # samples per eval task during training (0 = no eval during training)

    def data_config(self):
        """The data section parsed for the model's non-text side: images or audio."""
        from polymodal.data.audio_text import AudioTextDataConfig
        from polymodal.data.contrastive import ContrastiveDataConfig
        from polymodal.registry import get_spec

        modality = get_spec(self.model, **self.model_overrides).model_config().modality
        config_cls = AudioTextDataConfig if modality == "audio" else ContrastiveDataConfig
        return from_dict(config_cls, self.data, where=f"recipe {self.name}: data")


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.json"))


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe by bundled name or path, apply ``--set`` overrides and validate every section."""
    path = Path(name_or_path)
    if not path.is_file():
        path = RECIPE_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"no recipe {name_or_path!r}: not a file, nor one of {', '.join(recipe_names())}"
            )
    data = apply_overrides(load_json(path), overrides or [])
    data.setdefault("name", path.stem)
    if data.get("kind") == "assistant":
        from polymodal.train.assistant_recipe import AssistantRecipe

        recipe = from_dict(AssistantRecipe, data, where=f"recipe {path.name}")
        recipe.validate()
    elif data.get("kind") == "speech":
        from polymodal.train.speech_recipe import SpeechRecipe

        recipe = from_dict(SpeechRecipe, data, where=f"recipe {path.name}")
        recipe.data_config()
    elif data.get("kind") == "fusion":
        from polymodal.train.fusion_recipe import FusionRecipe

        recipe = from_dict(FusionRecipe, data, where=f"recipe {path.name}")
        recipe.validate()
    else:
        recipe = from_dict(Recipe, data, where=f"recipe {path.name}")
        recipe.data_config()
    from polymodal.eval.tasks import TASKS

    unknown = [t for t in recipe.eval_tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"recipe {recipe.name}: unknown eval tasks {unknown}; known: {', '.join(TASKS)}")
    return recipe


def build_tokenizer(recipe: TokenizerRecipe):
    """Load the recipe's tokenizer, or train the BPE on world text (deterministic for a given seed)."""
    from polymodal.data.tokenizer import CORPORA, TextTokenizer
    from polymodal.modules.text import minilm_path

    if recipe.path:
        return TextTokenizer.load(minilm_path() if recipe.path == "minilm" else recipe.path)
    if recipe.corpus not in CORPORA:
        raise ConfigError(f"tokenizer corpus must be one of {sorted(CORPORA)}, got {recipe.corpus!r}")
    corpus = CORPORA[recipe.corpus](recipe.corpus_size, seed=recipe.seed)
    return TextTokenizer.train_bpe(corpus, vocab_size=recipe.vocab_size)


def build_pipeline(recipe: Recipe, model, tokenizer):
    """Wrap a (being-)trained model into its pipeline, named after the recipe."""
    from polymodal.pipelines import pipeline_for
    from polymodal.registry import get_spec

    spec = get_spec(recipe.model, **recipe.model_overrides)  # overrides change the model, not the text
    spec = replace(spec, name=recipe.name, description=recipe.description or spec.description)
    return pipeline_for(spec, model, None, device="cpu", tokenizer=tokenizer)


def _flat_numbers(result: dict[str, Any]) -> dict[str, float]:
    return {f"{result['task']}/{k}": v for k, v in result["metrics"].items() if isinstance(v, int | float)}


def make_eval_fn(recipe: Recipe, tokenizer):
    """An eval callback for the trainer: the recipe's tasks on ``eval_n`` samples each."""
    from polymodal.eval.tasks import run_task

    def evaluate(model) -> dict[str, float]:
        was_training = model.training
        pipeline = build_pipeline(recipe, model, tokenizer)
        out: dict[str, float] = {}
        for task in recipe.eval_tasks:
            out |= _flat_numbers(run_task(pipeline, task, n=recipe.eval_n))
        model.train(was_training)
        return out

    return evaluate


def run_recipe(recipe, out_dir: str | Path) -> dict[str, Any]:
    """Train, save the model folder and evaluate it; returns the trainer summary plus eval results."""
    import torch

    if getattr(recipe, "kind", "") == "assistant":
        from polymodal.train.assistant_recipe import run_assistant_recipe

        return run_assistant_recipe(recipe, out_dir)
    if getattr(recipe, "kind", "") == "speech":
        from polymodal.train.speech_recipe import run_speech_recipe

        return run_speech_recipe(recipe, out_dir)
    if getattr(recipe, "kind", "") == "fusion":
        from polymodal.train.fusion_recipe import run_fusion_recipe

        return run_fusion_recipe(recipe, out_dir)

    from polymodal.models.dual_encoder import contrastive_loss
    from polymodal.registry import build_model, get_spec
    from polymodal.train.distributed import is_main
    from polymodal.train.loop import Trainer

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(recipe.tokenizer)
    spec = get_spec(recipe.model, **recipe.model_overrides)
    torch.manual_seed(recipe.train.seed)  # identical initial weights on every rank
    model = build_model(spec)
    vocab = getattr(model.text_encoder.config, "vocab_size", None)
    if vocab is not None and tokenizer.vocab_size > vocab:
        raise ConfigError(f"tokenizer has {tokenizer.vocab_size} tokens but the model embeds only {vocab}")
    batches = contrastive_batches(recipe, spec, tokenizer)
    train_cfg = replace(recipe.train, batch_size=recipe.batch_size)
    eval_fn = make_eval_fn(recipe, tokenizer) if recipe.eval_n and recipe.eval_tasks else None
    summary = Trainer(model, contrastive_loss, batches.batch, train_cfg, out_dir, eval_fn=eval_fn).fit()
    if not is_main():
        return summary
    pipeline = build_pipeline(recipe, model.float().eval(), tokenizer)
    notes = AUDIO_TEXT_NOTES if spec.model_config().modality == "audio" else {}
    results = finish_run(pipeline, recipe, summary, out_dir, **notes)
    return summary | {"model_dir": str(out_dir / "model"), "eval": results}


AUDIO_TEXT_NOTES = {
    "data_note": (
        "the tones world's train split: clips of 1-3 sound events (sine, square, rising/falling chirp, noise "
        "burst, clicks) at three pitch bands and two loudnesses, each with one caption in a training phrasing; "
        "three (kind, pitch) pairs are held out of training. Evaluated on test and held-out clips."
    ),
    "metrics_note": (
        "Retrieval uses each clip's most detailed caption; clips with the same description are one item, so a "
        "hit is any clip (or text) that says the same. `_unseen`: a phrasing never trained on; `_heldout`: "
        "clips holding a held-out (kind, pitch) pair. Zero-shot: the kind of single-event clips."
    ),
}


def contrastive_batches(recipe: Recipe, spec, tokenizer):
    """Image-text or audio-text batches, whichever the model's non-text tower reads."""
    from polymodal.data.audio_processor import AudioProcessor, AudioProcessorConfig
    from polymodal.data.audio_text import AudioTextBatches
    from polymodal.data.contrastive import ContrastiveBatches
    from polymodal.data.images import ImageProcessor, ImageProcessorConfig

    data = recipe.data_config()
    if spec.model_config().modality == "audio":
        processor = AudioProcessor(from_dict(AudioProcessorConfig, spec.audio_processor))
        return AudioTextBatches(data, processor, tokenizer, recipe.batch_size)
    processor = ImageProcessor(from_dict(ImageProcessorConfig, spec.image_processor))
    return ContrastiveBatches(data, processor, tokenizer, recipe.batch_size)


def finish_run(pipeline, recipe, summary: dict[str, Any], out_dir: Path, **card_notes: str) -> list[dict]:
    """The end of every recipe: write recipe.json and the model folder, run the full evals (eval.json) and
    write the model card; ``card_notes`` are passed to :func:`polymodal.train.card.model_card`."""
    (out_dir / "recipe.json").write_text(json.dumps(to_dict(recipe), indent=2) + "\n")
    pipeline.save(out_dir / "model")
    results = evaluate_model(pipeline, recipe, out_dir)
    write_card(pipeline, recipe, results, summary, out_dir / "model", **card_notes)
    return results


def write_card(
    pipeline,
    recipe: Recipe,
    results: list[dict[str, Any]],
    summary: dict[str, Any],
    folder: Path,
    **card_notes: str,
) -> None:
    """Write the model card (README.md) of a trained model folder."""
    from polymodal.registry import get_spec
    from polymodal.train.card import model_card, write_model_card

    parameters = sum(p.numel() for p in pipeline.model.parameters())
    architecture = f"`{recipe.model}`, {get_spec(recipe.model).description}"
    text = model_card(
        recipe.name, recipe.description, recipe.name, architecture, parameters, results, summary, **card_notes
    )
    write_model_card(folder, text)


def evaluate_model(pipeline, recipe: Recipe, out_dir: Path) -> list[dict[str, Any]]:
    """Run the recipe's eval tasks in full and write ``eval.json``."""
    from polymodal.eval.tasks import run_task

    results = [run_task(pipeline, task) for task in recipe.eval_tasks]
    (out_dir / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
