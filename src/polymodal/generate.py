"""Text generation with a ``CausalLM`` and its KV cache: greedy, temperature / nucleus sampling, streaming
and beam search. The prompt is run once; each later step feeds only the newest token."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

from polymodal.modules.decoder import CausalLM


@contextmanager
def _eval_mode(model: CausalLM):
    """Dropout off and no autograd while decoding; the caller's train/eval mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _check_prompt(model: CausalLM, input_ids: Tensor, max_new_tokens: int) -> int:
    """Validate the prompt and return how many tokens may be generated within the context length."""
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError(
            f"input_ids must be a non-empty (batch, tokens) tensor, got {tuple(input_ids.shape)}"
        )
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    room = model.config.context_length - input_ids.shape[1]
    if room <= 0:
        raise ValueError(
            f"the prompt has {input_ids.shape[1]} tokens but the context length is "
            f"{model.config.context_length}; truncate the prompt to leave room for new tokens"
        )
    return min(max_new_tokens, room)


def sample_next(
    logits: Tensor, temperature: float = 0.0, top_p: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Pick one token per row of (B, vocab) logits: argmax when temperature is 0, else sample from the
    temperature-scaled distribution restricted to the smallest set of tokens with probability >= top_p."""
    if temperature < 0 or not 0.0 < top_p <= 1.0:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of strictly more likely tokens
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)  # the top token always survives
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _ends_with_stop(tokens: list[int], stop: Sequence[Sequence[int]]) -> bool:
    return any(len(s) and tokens[-len(s) :] == list(s) for s in stop)


def _decode(
    model: CausalLM,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    steps: int,
    temperature: float,
    top_p: float,
    eos_id: int | None,
    stop: Sequence[Sequence[int]],
    seed: int | None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (next tokens (B,), finished (B,) bool) per step until every row is finished or steps run out."""
    generator = None if seed is None else torch.Generator(device=input_ids.device).manual_seed(seed)
    cache = model.new_cache()
    b = input_ids.shape[0]
    finished = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
    history: list[list[int]] = [[] for _ in range(b)]
    logits = model(input_ids, attention_mask=attention_mask, cache=cache)[:, -1]
    for step in range(steps):
        token = sample_next(logits, temperature, top_p, generator)
        for i, t in enumerate(token.tolist()):
            history[i].append(t)
            if t == eos_id or _ends_with_stop(history[i], stop):
                finished[i] = True
        yield token, finished.clone()
        if bool(finished.all()) or step == steps - 1:
            return
        logits = model(token[:, None], cache=cache)[:, -1]


def generate(
    model: CausalLM,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    stop: Sequence[Sequence[int]] | None = None,
    seed: int | None = None,
    pad_id: int | None = None,
) -> Tensor:
    """Generate up to ``max_new_tokens`` (and never past the context length) for a left-padded batch.

    Returns only the new tokens, (B, N) with N <= max_new_tokens. A row ends at ``eos_id`` or when its
    output ends with one of the ``stop`` id sequences (both kept in the output); positions after its end
    hold ``pad_id`` (default: ``eos_id``, else 0). Greedy when temperature is 0; ``seed`` makes sampling
    reproducible."""
    steps = _check_prompt(model, input_ids, max_new_tokens)
    fill = pad_id if pad_id is not None else (eos_id if eos_id is not None else 0)
    columns: list[Tensor] = []
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    with _eval_mode(model):
        for token, finished in _decode(
            model, input_ids, attention_mask, steps, temperature, top_p, eos_id, stop or [], seed
        ):
            columns.append(token.masked_fill(done, fill))
            done = finished
    if not columns:
        return input_ids.new_zeros(input_ids.shape[0], 0)
    return torch.stack(columns, dim=1)


def stream_tokens(
    model: CausalLM,
    input_ids: Tensor,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    stop: Sequence[Sequence[int]] | None = None,
    seed: int | None = None,
) -> Iterator[int]:
    """Yield new token ids one at a time for a single prompt ((T,) or (1, T)); same rules as ``generate``."""
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.shape[0] != 1:
        raise ValueError(f"stream_tokens takes one prompt, got a batch of {input_ids.shape[0]}; use generate")
    steps = _check_prompt(model, input_ids, max_new_tokens)
    with _eval_mode(model):
        for token, _ in _decode(model, input_ids, None, steps, temperature, top_p, eos_id, stop or [], seed):
            yield int(token[0])


def beam_search(
    model: CausalLM,
    input_ids: Tensor,
    num_beams: int = 4,
    max_new_tokens: int = 32,
    eos_id: int | None = None,
    length_penalty: float = 1.0,
) -> Tensor:
    """Beam search for one prompt (1, T); returns the best new tokens (1, N).

    Hypotheses are ranked by sum of log-probs / (new tokens ** length_penalty); a hypothesis ending in
    ``eos_id`` is set aside (eos kept), and search stops when no live beam can beat the finished ones."""
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"beam_search takes one prompt of shape (1, T), got {tuple(input_ids.shape)}")
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    steps = _check_prompt(model, input_ids, max_new_tokens)
    if steps == 0:
        return input_ids.new_zeros(1, 0)
    with _eval_mode(model):
        return _beam_search(model, input_ids, num_beams, steps, eos_id, length_penalty)


def _beam_search(
    model: CausalLM, input_ids: Tensor, k: int, steps: int, eos_id: int | None, length_penalty: float
) -> Tensor:
    device = input_ids.device
    cache = model.new_cache()
    log_probs = model(input_ids, cache=cache)[:, -1].float().log_softmax(dim=-1)  # (1, V)
    beams = [[]]  # token lists of the live beams
    scores = torch.zeros(1, device=device)
    finished: list[tuple[float, list[int]]] = []
    for step in range(1, steps + 1):
        vocab = log_probs.shape[-1]
        candidates = (scores[:, None] + log_probs).view(-1)  # (beams * V,)
        top_scores, top_index = candidates.topk(min(2 * k, candidates.numel()))
        new_beams, new_scores, rows = [], [], []
        for score, index in zip(top_scores.tolist(), top_index.tolist(), strict=True):
            row, token = divmod(index, vocab)
            tokens = beams[row] + [token]
            if token == eos_id:
                finished.append((score / step**length_penalty, tokens))
            else:
                new_beams.append(tokens)
                new_scores.append(score)
                rows.append(row)
            if len(new_beams) == k:
                break
        finished = sorted(finished, key=lambda f: f[0], reverse=True)[:k]
        if not new_beams or step == steps:
            break
        if len(finished) == k and max(new_scores) / step**length_penalty <= finished[-1][0]:
            break
        beams, scores = new_beams, torch.tensor(new_scores, device=device)
        cache.reorder(torch.tensor(rows, device=device))
        last = torch.tensor([b[-1] for b in beams], device=device)[:, None]
        log_probs = model(last, cache=cache)[:, -1].float().log_softmax(dim=-1)
    live = [(s / len(b) ** length_penalty, b) for s, b in zip(new_scores, new_beams, strict=True)]
    best = max(finished + live, key=lambda f: f[0])[1]
    return torch.tensor([best], dtype=torch.long, device=device)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first of the ``stop`` strings, and whether one was found."""
    cuts = [text.index(s) for s in stop if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def stream_text(
    tokens: Iterable[int], decode: Callable[[list[int]], str], stop: Sequence[str] = ()
) -> Iterator[str]:
    """Text pieces of a token stream: each piece is what the decoded text gained since the last one.

    A piece is held back while the text ends inside a UTF-8 character (a byte-level token may stop half
    way) and flushed at the end; the stream ends at the first ``stop`` string, cut before it. The pieces
    join to ``cut_at_stop(decode(all tokens), stop)``."""
    seen: list[int] = []
    text, sent = "", ""
    for token in tokens:
        seen.append(token)
        text, stopped = cut_at_stop(decode(seen), stop)
        if (stopped or not text.endswith("\ufffd")) and len(text) > len(sent) and text.startswith(sent):
            yield text[len(sent) :]
            sent = text
        if stopped:
            return
    if len(text) > len(sent) and text.startswith(sent):
        yield text[len(sent) :]
