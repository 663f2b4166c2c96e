"""Causal language models behind ``polymodal.load``: generate and stream text.

A GPT-2 or Llama-family transformers folder is converted into polymodal's own ``CausalLM`` (weights mapped
by ``interop.gpt2`` / ``interop.llama``, never wrapped). Its ``tokenizer.json`` is used as is, so the
checkpoint's special-token behaviour holds: GPT-2's post-processor adds nothing, Llama's prepends BOS.
Which ids end generation comes from the checkpoint's generation config and is recorded in the saved
config (:class:`LanguageModelConfig`), because no tokenizer file says it (GPT-2's adds no EOS at all).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polymodal.data.collate import pad_token_ids
from polymodal.generate import cut_at_stop, stream_text, stream_tokens
from polymodal.generate import generate as generate_ids
from polymodal.modules.decoder import CausalLM, DecoderConfig
from polymodal.pipelines.base import Pipeline
from polymodal.registry import ModelSpec


@dataclass
class LanguageModelConfig(DecoderConfig):
    """The "causal_lm" architecture's config: a ``DecoderConfig`` plus the ids that end generation.

    A subclass rather than a new field of ``DecoderConfig``: the ids are about generation, not the network,
    and only a standalone language model needs them saved (an assistant's template knows its end token)."""

    eos_ids: list[int] = field(default_factory=list)  # ids that end a generation (any of them); [] = none


class LanguageModelPipeline(Pipeline):
    """A loaded ``CausalLM`` with its tokenizer: ``generate`` (batched) and ``stream`` text continuations."""

    def __init__(
        self,
        model: CausalLM,
        tokenizer,
        image_processor=None,
        spec: ModelSpec | None = None,
        device: str = "cpu",
    ):
        """``image_processor`` is accepted (and ignored) so ``pipeline_for`` builds every pipeline alike."""
        spec = spec or ModelSpec(architecture="causal_lm", model=dataclasses.asdict(model.config))
        super().__init__(model, tokenizer, image_processor, spec, device)

    @property
    def context_length(self) -> int:
        return self.model.config.context_length

    @property
    def eos_ids(self) -> list[int]:
        """Ids that end a generation (the checkpoint's EOS), possibly none."""
        return list(getattr(self.model.config, "eos_ids", []))

    def _prompt_ids(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str):
            raise TypeError(f"a prompt must be a string, got {type(prompt).__name__}")
        ids = self.tokenizer.encode(prompt)  # with the checkpoint's own special tokens (e.g. Llama's BOS)
        if not ids:
            raise ValueError("the prompt is empty: give some text to continue")
        if len(ids) >= self.context_length:
            raise ValueError(
                f"the prompt takes {len(ids)} tokens but the context length is {self.context_length}: "
                "shorten it to leave room for new tokens"
            )
        return ids

    def _left_pad(self, prompts: list[list[int]]) -> tuple[Tensor, Tensor | None]:
        """(B, T) ids padded on the left and their keep-mask (None when no row is padded)."""
        ids, mask = pad_token_ids(prompts, self.tokenizer.pad_id, left=True)
        return ids.to(self.device), None if bool(mask.all()) else mask.to(self.device)

    def _decoding(self) -> dict[str, Any]:
        """EOS arguments for polymodal.generate: the first id as ``eos_id``, the others as one-token stops."""
        eos = self.eos_ids
        return {"eos_id": eos[0] if eos else None, "stop": [[i] for i in eos[1:]]}

    def _text(self, tokens: list[int], stop: Sequence[str]) -> str:
        """Text of generated ids up to and including the first EOS (padding after it dropped)."""
        ends = [i for i, t in enumerate(tokens) if t in self.eos_ids]
        tokens = tokens[: ends[0] + 1] if ends else tokens
        return cut_at_stop(self.tokenizer.decode(tokens), stop)[0]

    @torch.inference_mode()
    def generate(
        self,
        prompt: str | Sequence[str],
        max_tokens: int = 32,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> str | list[str]:
        """The continuation of ``prompt`` (a string), or of each prompt of a list (one left-padded batch).

        Greedy when ``temperature`` is 0; ``seed`` makes sampling reproducible. Generation ends at the
        checkpoint's EOS (special tokens are dropped from the text) and the text is cut before any ``stop``
        string."""
        single = isinstance(prompt, str)
        prompts = [prompt] if single else list(prompt)
        if not prompts:
            raise ValueError("no prompts given: pass a string or a non-empty list of strings")
        ids, mask = self._left_pad([self._prompt_ids(p) for p in prompts])
        out = generate_ids(self.model, ids, mask, max_new_tokens=max_tokens, temperature=temperature,
                           top_p=top_p, seed=seed, pad_id=self.tokenizer.pad_id, **self._decoding())  # fmt: skip
        texts = [self._text(row, stop) for row in out.tolist()]
        return texts[0] if single else texts

    def stream(
        self,
        prompt: str,
        max_tokens: int = 32,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> Iterator[str]:
        """Yield the continuation of one prompt piece by piece; the pieces join to ``generate``'s text."""
        ids = torch.tensor([self._prompt_ids(prompt)], device=self.device)
        with torch.inference_mode():
            tokens = stream_tokens(self.model, ids, max_new_tokens=max_tokens, temperature=temperature,
                                   top_p=top_p, seed=seed, **self._decoding())  # fmt: skip
            yield from stream_text(tokens, self.tokenizer.decode, stop)


def load_transformers_lm(
    folder: Path, hf_config: dict[str, Any], device: str = "cpu"
) -> LanguageModelPipeline:
    """Convert a GPT-2 / Llama / Mistral transformers folder (weights + tokenizer.json) into a pipeline."""
    from polymodal.interop import _tokenizer, read_hf_model
    from polymodal.interop.gpt2 import convert_gpt2
    from polymodal.interop.layers import checkpoint_eos_ids
    from polymodal.interop.llama import check_llama_family, convert_llama
    from polymodal.pipelines import pipeline_for

    kind = hf_config["model_type"]
    if kind != "gpt2":
        check_llama_family(hf_config)
    hf_model = read_hf_model(folder, kind)
    model = convert_gpt2(hf_model) if kind == "gpt2" else convert_llama(hf_model)
    model.config = LanguageModelConfig(
        **dataclasses.asdict(model.config), eos_ids=checkpoint_eos_ids(hf_model)
    )
    spec = ModelSpec(
        architecture="causal_lm",
        model=dataclasses.asdict(model.config),
        name=folder.name,
        description=f"converted from a Hugging Face {kind} checkpoint",
    )
    tokenizer = _tokenizer(folder, model.config.context_length)
    return pipeline_for(spec, model, None, device=device, tokenizer=tokenizer)
