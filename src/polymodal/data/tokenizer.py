"""Text tokenisation: a small BPE trained on the worlds' language, or any Hugging Face ``tokenizer.json``.

Padding and truncation are done here, not by the wrapped ``tokenizers.Tokenizer`` (whose padding
settings, e.g. BERT's fixed 128, are switched off on load), so every tokenizer pads to the longest text
of the batch and truncation always keeps the end token.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from polymodal.data.collate import pad_token_ids, truncate_ids

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")  # ids 0..3, in this order
PAD_NAMES = ("[PAD]", "<pad>", "<|pad|>")
TOKENIZER_FILE, CONFIG_FILE = "tokenizer.json", "tokenizer_config.json"
DEFAULT_CONTEXT_LENGTH = 32
# Seeding the alphabet means any ASCII text encodes without [UNK], even words the corpus never had.
_ALPHABET = list(string.ascii_lowercase + string.digits + string.punctuation) + ["▁"]


class TextTokenizer:
    """Batch tokenisation to padded id tensors, around a ``tokenizers.Tokenizer``."""

    def __init__(
        self, tokenizer: Tokenizer, context_length: int = DEFAULT_CONTEXT_LENGTH, pad_id: int | None = None
    ):
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.context_length = context_length
        # True: pad every text to context_length and attend to the padding, as SigLIP was trained
        self.pad_to_context_length = False
        self._pad_id = pad_id if pad_id is not None else _find_pad_id(tokenizer)
        self._bos_id, self._eos_id = _wrapping_ids(tokenizer)

    @classmethod
    def train_bpe(
        cls, texts: Iterable[str], vocab_size: int = 1024, context_length: int = DEFAULT_CONTEXT_LENGTH
    ) -> TextTokenizer:
        """Train a lowercasing BPE with [PAD]=0, [UNK], [BOS], [EOS] that wraps texts as [BOS] ... [EOS]."""
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        # Metaspace keeps word boundaries in the tokens, so decode() restores the original spacing.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()]
        )
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=_ALPHABET,
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        tok.post_processor = processors.TemplateProcessing(
            single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 2), ("[EOS]", 3)]
        )
        return cls(tok, context_length=context_length, pad_id=0)

    @classmethod
    def load(cls, path: str | Path) -> TextTokenizer:
        """Load a folder holding ``tokenizer.json`` (+ optional ``tokenizer_config.json``) or the file itself.

        Hugging Face files work too (e.g. BERT WordPiece): their post-processor and pad token are used.
        """
        path = Path(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(
                f"no tokenizer file at {file}; expected a folder with {TOKENIZER_FILE} or the file"
            )
        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as e:  # the tokenizers library raises plain Exception on bad JSON
            raise ValueError(f"{file} is not a valid tokenizer.json: {e}") from e
        config = _read_config(file.parent / CONFIG_FILE)
        context_length = int(config.get("context_length") or DEFAULT_CONTEXT_LENGTH)
        pad_id = config.get("pad_id")
        if pad_id is None and isinstance(config.get("pad_token"), str):
            pad_id = tok.token_to_id(config["pad_token"])
        out = cls(tok, context_length=context_length, pad_id=pad_id)
        out.pad_to_context_length = bool(config.get("pad_to_context_length", False))
        return out

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``directory``; returns the folder."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(directory / TOKENIZER_FILE))
        config = {
            "context_length": self.context_length,
            "pad_id": self.pad_id,
            "pad_token": self.tokenizer.id_to_token(self.pad_id),
            "vocab_size": self.vocab_size,
            "pad_to_context_length": self.pad_to_context_length,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return directory

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int:
        """Id used for padding (masked out by ``attention_mask``)."""
        return self._pad_id

    @property
    def bos_id(self) -> int | None:
        """Id the post-processor puts first ([BOS] or [CLS]), or None if it adds none."""
        return self._bos_id

    @property
    def eos_id(self) -> int | None:
        """Id the post-processor puts last ([EOS] or [SEP]), or None if it adds none."""
        return self._eos_id

    def encode(self, text: str) -> list[int]:
        """Ids of one text, special tokens included, not truncated."""
        return self.tokenizer.encode(text).ids

    def __call__(
        self, texts: Sequence[str] | str, context_length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenise a batch: (input_ids LongTensor (B, T), attention_mask BoolTensor (B, T)).

        T is the longest text of the batch, at most ``context_length`` (default: the tokenizer's);
        a cut text keeps its end token.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("TextTokenizer expects a list of strings")
        length = context_length or self.context_length
        encodings = self.tokenizer.encode_batch(texts)
        sequences = [
            truncate_ids(e.ids, length, keep_last=bool(e.special_tokens_mask and e.special_tokens_mask[-1]))
            for e in encodings
        ]
        ids, mask = pad_token_ids(sequences, self.pad_id, max_length=length)
        if self.pad_to_context_length:  # SigLIP: fixed-length texts whose padding the model attends to
            ids = torch.nn.functional.pad(ids, (0, length - ids.shape[1]), value=self.pad_id)
            mask = torch.ones_like(ids, dtype=torch.bool)
        return ids, mask

    def decode(self, ids: Sequence[int] | torch.Tensor | np.ndarray) -> str:
        """Text of one id sequence, special and padding tokens dropped."""
        if isinstance(ids, torch.Tensor | np.ndarray):
            ids = ids.tolist()
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)


def _wrapping_ids(tok: Tokenizer) -> tuple[int | None, int | None]:
    """(BOS, EOS) ids the post-processor adds: [BOS, EOS] / [CLS, SEP], BOS only (Llama) or EOS only."""
    specials = tok.encode("").ids
    if len(specials) == 2:
        return specials[0], specials[1]
    if len(specials) != 1:
        return None, None
    text = tok.encode("a").ids  # a lone special is a BOS when it comes first and not last
    return (specials[0], None) if text[0] == specials[0] and text[-1] != specials[0] else (None, specials[0])


def _read_config(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    # Hugging Face configs call the context length model_max_length.
    if "context_length" not in data and isinstance(data.get("model_max_length"), int):
        data["context_length"] = data["model_max_length"]
    return data


def _find_pad_id(tok: Tokenizer) -> int:
    padding = tok.padding
    if padding and padding.get("pad_id") is not None:
        return int(padding["pad_id"])
    for name in PAD_NAMES:
        found = tok.token_to_id(name)
        if found is not None:
            return found
    return 0


def world_corpus(n: int = 20000, seed: int = 0) -> list[str]:
    """About ``n`` texts from the worlds' language, to train the BPE on.

    Shapes captions (train and eval phrasings), contradicting captions, questions, answers and referring
    expressions, plus every digit caption of every template, so no evaluation word is out of vocabulary.
    """
    from polymodal.data.worlds import digits, shapes

    texts = [
        digits.digit_caption(label, t)
        for t in digits.TRAIN_TEMPLATES + digits.EVAL_TEMPLATES
        for label in range(10)
    ]
    texts += list(shapes.ANSWER_VOCAB)
    world = shapes.ShapesWorld(seed=seed, split="train", max_objects=shapes.MAX_OBJECTS)
    rng = np.random.default_rng([seed, 20000])
    i = 0
    while len(texts) < n:
        scene = world.scene(i)
        texts.append(shapes.caption(scene, rng))
        texts.append(shapes.caption(scene, rng, shapes.EVAL_TEMPLATES))
        negative = shapes.perturb_caption(scene, shapes.PERTURB_KINDS[i % 4], rng)
        texts += [negative] if negative else []
        qa = shapes.questions(scene, rng)
        pick = qa[int(rng.integers(len(qa)))]
        texts += [pick.question, pick.answer]
        refs = shapes.referring_expressions(scene)  # none when no object can be singled out
        texts += [refs[int(rng.integers(len(refs)))][0]] if refs else []
        i += 1
    return texts[:n]


def tones_corpus(n: int = 20000, seed: int = 0) -> list[str]:
    """About ``n`` texts from the tones world's language: every caption (train and eval phrasings) and
    every question and answer of train clips, so no evaluation word is out of vocabulary."""
    from polymodal.data.worlds import tones

    world = tones.TonesWorld(seed=seed, split="train")
    texts: list[str] = list(tones.ANSWER_VOCAB)
    i = 0
    while len(texts) < n:
        clip = world.clip(i)
        texts += tones.captions(clip) + tones.captions(clip, tones.EVAL_TEMPLATES)
        texts += [t for qa in tones.questions(clip) for t in (qa.question, qa.answer)]
        i += 1
    return texts[:n]


CORPORA = {"world": world_corpus, "tones": tones_corpus}
