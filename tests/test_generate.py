import itertools

import pytest
import torch

from polymodal.generate import beam_search, generate, sample_next, stream_tokens
from polymodal.modules.decoder import CausalLM, DecoderConfig


def tiny(vocab: int = 40, context: int = 24) -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(
        DecoderConfig(vocab_size=vocab, context_length=context, width=32, depth=2, heads=4)
    ).eval()


def naive_greedy(model, ids, n):
    """Greedy decoding without a cache: the full sequence re-run at every step."""
    out = []
    for _ in range(n):
        token = model(ids)[:, -1].argmax(-1)
        out.append(token)
        ids = torch.cat([ids, token[:, None]], dim=1)
    return torch.stack(out, dim=1)


def test_greedy_with_cache_equals_naive_greedy_for_a_left_padded_batch():
    model = tiny()
    a, b = torch.randint(1, 40, (1, 3)), torch.randint(1, 40, (1, 6))
    batch = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), a], 1), b])
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, :3] = False
    out = generate(model, batch, mask, max_new_tokens=8)
    assert out.shape == (2, 8) and out.dtype == torch.long
    torch.testing.assert_close(out[:1], naive_greedy(model, a, 8), rtol=0, atol=0)
    torch.testing.assert_close(out[1:], naive_greedy(model, b, 8), rtol=0, atol=0)


def test_eos_and_stop_sequences_end_rows_and_pad_after():
    model = tiny()
    ids = torch.randint(1, 40, (2, 4))
    free = generate(model, ids, max_new_tokens=6)
    eos = int(free[0, -1])
    out = generate(model, ids, max_new_tokens=6, eos_id=eos, pad_id=-1)
    for row, free_row in zip(out.tolist(), free.tolist(), strict=True):
        end = free_row.index(eos) + 1 if eos in free_row else 6
        assert row[:end] == free_row[:end] and row[end:] == [-1] * (len(row) - end)
    stop = free[0, -2:].tolist()
    end = next(e for e in range(2, 7) if free[0, e - 2 : e].tolist() == stop)
    stopped = generate(model, ids[:1], max_new_tokens=6, stop=[[39, 39, 39], stop])
    assert stopped.tolist() == [free[0, :end].tolist()]


def test_limits_max_new_tokens_context_and_prompt_length():
    model = tiny(context=10)
    ids = torch.randint(0, 40, (1, 7))
    assert generate(model, ids, max_new_tokens=2).shape == (1, 2)
    assert generate(model, ids, max_new_tokens=50).shape == (1, 3)
    with pytest.raises(ValueError, match="truncate the prompt"):
        generate(model, torch.zeros(1, 10, dtype=torch.long), max_new_tokens=1)


def test_sampling_is_seeded_and_top_p_keeps_the_nucleus():
    model = tiny()
    ids = torch.randint(0, 40, (2, 3))
    first = generate(model, ids, max_new_tokens=6, temperature=1.0, seed=3)
    torch.testing.assert_close(first, generate(model, ids, max_new_tokens=6, temperature=1.0, seed=3))
    assert not torch.equal(first, generate(model, ids, max_new_tokens=6, temperature=1.0, seed=4))
    logits = torch.tensor([[3.0, 2.0, 0.0, -1.0]])  # softmax ~ [0.70, 0.26, 0.03, 0.01]
    g = torch.Generator().manual_seed(0)
    drawn = {int(sample_next(logits, 1.0, top_p=0.9, generator=g)) for _ in range(200)}
    assert drawn == {0, 1}
    assert {int(sample_next(logits, 1.0, top_p=0.5, generator=g)) for _ in range(50)} == {0}


def test_stream_tokens_yields_the_generated_ids():
    model = tiny()
    ids = torch.randint(0, 40, (1, 5))
    streamed = list(stream_tokens(model, ids[0], max_new_tokens=7, temperature=0.8, seed=1))
    assert streamed == generate(model, ids, max_new_tokens=7, temperature=0.8, seed=1)[0].tolist()
    with pytest.raises(ValueError, match="one prompt"):
        next(stream_tokens(model, torch.zeros(2, 3, dtype=torch.long)))


def test_beam_search_with_one_beam_is_greedy():
    model = tiny()
    ids = torch.randint(0, 40, (1, 4))
    torch.testing.assert_close(beam_search(model, ids, 1, 6), generate(model, ids, max_new_tokens=6))


@torch.no_grad()
def test_beam_search_with_a_beam_per_token_finds_the_best_two_token_sequence():
    model = tiny(vocab=6)
    ids = torch.randint(0, 6, (1, 3))
    best, best_score = None, -float("inf")
    for pair in itertools.product(range(6), repeat=2):  # exhaustive search over all continuations
        seq = torch.cat([ids, torch.tensor([pair])], dim=1)
        logp = model(seq[:, :-1]).log_softmax(-1)[0, -2:]
        score = float(logp[0, pair[0]] + logp[1, pair[1]])
        if score > best_score:
            best, best_score = list(pair), score
    assert beam_search(model, ids, num_beams=6, max_new_tokens=2).tolist() == [best]
    assert beam_search(model, ids, num_beams=6, max_new_tokens=0).shape == (1, 0)


def test_beam_search_stops_at_eos():
    model = tiny()
    ids = torch.randint(0, 40, (1, 4))
    greedy = generate(model, ids, max_new_tokens=5)[0].tolist()
    eos = greedy[-1]
    out = beam_search(model, ids, num_beams=1, max_new_tokens=5, eos_id=eos)[0].tolist()
    assert out == greedy[: greedy.index(eos) + 1]


def test_stream_text_pieces_join_to_the_cut_text_and_wait_for_whole_characters():
    from polymodal.generate import cut_at_stop, stream_text

    pieces = {1: "he", 2: "llo", 3: " wor", 4: "ld."}
    decode = lambda ids: "".join(pieces[i] for i in ids)  # noqa: E731
    assert list(stream_text([1, 2, 3, 4], decode)) == ["he", "llo", " wor", "ld."]
    assert "".join(stream_text([1, 2, 3, 4], decode, stop=["wor"])) == cut_at_stop("hello world.", ["wor"])[0]
    # token 2 alone ends inside a character; with token 3 the character decodes whole
    decode_bytes = lambda ids: "a" + ("é" if 3 in ids else "\ufffd" if 2 in ids else "")  # noqa: E731
    assert list(stream_text([1, 2, 3], decode_bytes)) == ["a", "é"]
    assert list(stream_text([1, 2], decode_bytes)) == ["a", "\ufffd"]  # flushed at the end
