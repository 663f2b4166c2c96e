"""The speech-recognition recipe: a small Whisper-style encoder-decoder trained on the spoken world.

``polymodal train --recipe tiny-asr`` trains a BPE on the world's transcripts, then the model with
teacher forcing (``speech_loss``) on utterances of the training voices, saves it, evaluates it on held-out
voices (``spoken-asr``: WER and CER) and writes its card. The run folder resumes like every recipe's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from polymodal.config import from_dict
from polymodal.train.loop import TrainConfig


@dataclass
class SpeechRecipe:
    kind: str = "speech"  # recipe family
    name: str = ""  # run and model name
    description: str = ""  # one line for the model card
    model: str = "tiny-asr"  # architecture name (model_configs/<model>.json)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # nested overrides of the model config
    tokenizer_vocab_size: int = 128  # BPE size (the spoken vocabulary is a few dozen words)
    tokenizer_corpus_size: int = 5000  # transcripts the BPE is trained on
    data: dict[str, Any] = field(default_factory=dict)  # polymodal.data.speech_batches.SpeechDataConfig
    batch_size: int = 32  # utterances per micro-batch
    train: TrainConfig = field(default_factory=TrainConfig)  # optimisation
    eval_tasks: list[str] = field(default_factory=list)  # tasks run on the final model
    eval_n: int = 0  # unused (kept for the common recipe interface)

    def data_config(self):
        from polymodal.data.speech_batches import SpeechDataConfig

        config = from_dict(SpeechDataConfig, self.data, where=f"recipe {self.name}: data")
        config.validate()
        return config


def build_speech_tokenizer(recipe: SpeechRecipe, context_length: int):
    """A BPE over the spoken world's transcripts (every vocabulary word, so none is unknown)."""
    from polymodal.data.tokenizer import TextTokenizer
    from polymodal.data.worlds.spoken import SpokenWorld

    world = SpokenWorld(recipe.data_config().world_config())
    texts = world.classes() + [world.utterance(i).text for i in range(recipe.tokenizer_corpus_size)]
    return TextTokenizer.train_bpe(
        texts, vocab_size=recipe.tokenizer_vocab_size, context_length=context_length
    )


def run_speech_recipe(recipe: SpeechRecipe, out_dir: str | Path) -> dict[str, Any]:
    """Train, save ``out_dir/model``, evaluate it and write its card."""
    import torch

    from polymodal.data.audio_processor import AudioProcessor, AudioProcessorConfig
    from polymodal.data.speech_batches import SpeechBatches
    from polymodal.models.speech import speech_loss
    from polymodal.pipelines import pipeline_for
    from polymodal.registry import build_model, deep_merge, get_spec
    from polymodal.train.loop import Trainer
    from polymodal.train.recipe import finish_run

    out_dir = Path(out_dir)
    base = get_spec(recipe.model, **recipe.model_overrides)
    tokenizer = build_speech_tokenizer(recipe, base.model["decoder"]["context_length"])
    overrides = deep_merge(recipe.model_overrides, {"decoder": {"vocab_size": tokenizer.vocab_size}})
    spec = get_spec(recipe.model, **overrides)
    spec = replace(spec, name=recipe.name, description=recipe.description or spec.description)
    torch.manual_seed(recipe.train.seed)
    model = build_model(spec)
    processor = AudioProcessor(from_dict(AudioProcessorConfig, spec.audio_processor))
    batches = SpeechBatches(recipe.data_config(), processor, tokenizer, recipe.batch_size)
    config = replace(recipe.train, batch_size=recipe.batch_size)
    summary = Trainer(model, speech_loss, batches.batch, config, out_dir).fit()
    pipeline = pipeline_for(spec, model.float().eval(), None, tokenizer=tokenizer)
    results = finish_run(pipeline, recipe, summary, out_dir, data_note=SPEECH_DATA)
    return summary | {"model_dir": str(out_dir / "model"), "eval": results}


SPEECH_DATA = (
    "the spoken world: half random lists of 1-4 words (digits, colours, shapes, sizes, commands), half spoken "
    "shapes-world questions, said by espeak-ng with 50 training voices at random speeds and pitches; evaluated on "
    "10 held-out voices (speaker variants never trained on)."
)
