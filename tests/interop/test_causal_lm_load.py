"""Tiny random GPT-2 / Llama / Mistral transformers folders (weights + tokenizer, saved offline) behind
``polymodal.load``: greedy text equals transformers' ``generate`` token for token, and saving round-trips."""

import json

import pytest
import torch

import polymodal
from polymodal.interop import UnsupportedCheckpointError
from polymodal.pipelines.language_model import LanguageModelPipeline

transformers = pytest.importorskip("transformers")
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

CORPUS = [
    "the quick brown fox jumps over the lazy dog.",
    "a red circle left of a blue square",
    "Once upon a time",
]
PROMPTS = ["the quick brown fox", "Once upon a time there was a red square"]
SIZES = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def gpt2_tokenizer():
    """GPT-2's layout: byte-level BPE whose post-processor adds no BOS/EOS; <|endoftext|> is the EOS."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(CORPUS * 10, trainer)
    end = "<|endoftext|>"
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=end, eos_token=end)


def llama_tokenizer():
    """Llama's layout: a Metaspace BPE whose post-processor prepends <s> (id 1); </s> (id 2) is the EOS."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    tok.decoder = decoders.Metaspace(prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tok.train_from_iterator(CORPUS * 10, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_model(family: str):
    """A small random model (weights wide enough for varied greedy text) and its tokenizer."""
    torch.manual_seed({"gpt2": 0, "llama": 1, "mistral": 2}[family])
    if family == "gpt2":
        tokenizer = gpt2_tokenizer()
        cfg = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                      initializer_range=0.1, bos_token_id=0, eos_token_id=0)  # fmt: skip
        return transformers.GPT2LMHeadModel(cfg).eval(), tokenizer
    tokenizer = llama_tokenizer()
    common = dict(vocab_size=len(tokenizer), max_position_embeddings=64, num_key_value_heads=2,
                  initializer_range=0.1, bos_token_id=1, eos_token_id=2, **SIZES)  # fmt: skip
    if family == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common))
    else:
        model = transformers.MistralForCausalLM(transformers.MistralConfig(sliding_window=None, **common))
    return model.eval(), tokenizer


def hf_greedy(hf, tokenizer, prompts, max_new_tokens=8):
    """transformers' greedy continuation ids of a left-padded batch, each cut after its first EOS."""
    tokenizer.padding_side, tokenizer.pad_token = "left", tokenizer.pad_token or tokenizer.eos_token
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = hf.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    rows, eos = out[:, batch.input_ids.shape[1] :].tolist(), hf.generation_config.eos_token_id
    return [row[: row.index(eos) + 1] if eos in row else row for row in rows]


@pytest.fixture(scope="module", params=["gpt2", "llama", "mistral"])
def checkpoint(request, tmp_path_factory):
    """A saved folder whose EOS is the third token greedy decoding of PROMPTS[0] makes, so stopping is tested."""
    hf, tokenizer = tiny_model(request.param)
    hf.generation_config.eos_token_id = None
    free = hf_greedy(hf, tokenizer, PROMPTS[:1])[0]
    eos = next((t for i, t in enumerate(free) if i >= 2 and t not in free[:i]), free[0])
    hf.config.eos_token_id = hf.generation_config.eos_token_id = eos
    folder = tmp_path_factory.mktemp("lm") / f"tiny-{request.param}"
    hf.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder, hf, tokenizer, polymodal.load(folder)


def test_prompt_tokens_keep_the_checkpoints_special_tokens(checkpoint):
    _, hf, tokenizer, pipeline = checkpoint
    assert isinstance(pipeline, LanguageModelPipeline)
    ids = pipeline.tokenizer.encode(PROMPTS[0])
    assert ids == tokenizer(PROMPTS[0]).input_ids
    assert (ids[0] == 1) == (hf.config.model_type != "gpt2")  # Llama prepends <s>, GPT-2 adds nothing


def test_greedy_batch_matches_transformers_generate(checkpoint):
    _, hf, tokenizer, pipeline = checkpoint
    expected = [tokenizer.decode(row, skip_special_tokens=True) for row in hf_greedy(hf, tokenizer, PROMPTS)]
    assert pipeline.generate(PROMPTS, max_tokens=8) == expected
    assert pipeline.generate(PROMPTS[1], max_tokens=8) == expected[1]
    assert len(hf_greedy(hf, tokenizer, PROMPTS[:1])[0]) < 8  # the first prompt stopped at the EOS


def test_stream_joins_to_the_generated_text(checkpoint):
    *_, pipeline = checkpoint
    text = pipeline.generate(PROMPTS[1], max_tokens=8)
    assert "".join(pipeline.stream(PROMPTS[1], max_tokens=8)) == text
    cut = text[len(text) // 2 :][:2]
    assert pipeline.generate(PROMPTS[1], max_tokens=8, stop=[cut]) == text[: text.index(cut)]


def test_sampling_is_reproducible_with_a_seed(checkpoint):
    *_, pipeline = checkpoint
    a, b = (pipeline.generate(PROMPTS, max_tokens=6, temperature=1.0, top_p=0.9, seed=7) for _ in range(2))
    assert a == b


def test_save_and_load_round_trip(checkpoint, tmp_path):
    *_, pipeline = checkpoint
    folder = pipeline.save(tmp_path / "converted")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "causal_lm" and config["model"]["eos_ids"] == pipeline.eos_ids
    reloaded = polymodal.load(folder)
    assert isinstance(reloaded, LanguageModelPipeline)
    assert reloaded.generate(PROMPTS, max_tokens=8) == pipeline.generate(PROMPTS, max_tokens=8)


def test_bad_prompts_and_sliding_windows_are_explained(checkpoint, tmp_path):
    *_, pipeline = checkpoint
    with pytest.raises(ValueError, match="no prompts"):
        pipeline.generate([])
    with pytest.raises(ValueError, match="context length"):
        pipeline.generate("fox " * 80)
    cfg = transformers.MistralConfig(sliding_window=16, max_position_embeddings=64, **SIZES).to_dict()
    (tmp_path / "windowed").mkdir()
    (tmp_path / "windowed" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedCheckpointError, match="sliding window of 16 tokens"):
        polymodal.load(tmp_path / "windowed")
