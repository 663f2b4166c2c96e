"""A tiny random transformers LLaVA (CLIP vision tower, Llama LM) saved offline with its processor files,
loaded by ``polymodal.load`` as polymodal's own Assistant: logits and greedy answers match transformers."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import polymodal
from polymodal.interop import UnsupportedCheckpointError

transformers = pytest.importorskip("transformers")
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

CORPUS = [
    "USER: <image>\nwhat is this? ASSISTANT: a red circle left of a blue square",
    "USER: describe the image. ASSISTANT: the quick brown fox jumps over the lazy dog",
    "how many shapes are there? two. is it a cat? no, it is a green star",
] * 10
PROMPT = "USER: <image>\nwhat is this? ASSISTANT:"


def llama_tokenizer():
    """A Llama-style BPE (Metaspace, BOS-only post-processor) with <image> and <pad> added, as LLaVA-1.5's."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    tok.decoder = decoders.Metaspace(prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=150, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.add_tokens(["<image>", "<pad>"], special_tokens=True)
    return fast


def perturb_norms(model):
    """Non-trivial norm weights, so a norm converted wrongly (or applied where LLaVA has none) shows up."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.5 * torch.randn_like(p))


def save_llava(folder, strategy: str, layer: int):
    """Save a tiny random LLaVA, its tokenizer and its image processor in ``folder``; return model, processor."""
    torch.manual_seed(0)
    tokenizer = llama_tokenizer()
    vision = transformers.CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32,
        patch_size=8, layer_norm_eps=1e-5,
    )  # fmt: skip
    text = transformers.LlamaConfig(
        vocab_size=160, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.1,
        bos_token_id=1, eos_token_id=2, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    config = transformers.LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy=strategy, vision_feature_layer=layer,
    )  # fmt: skip
    model = transformers.LlavaForConditionalGeneration(config).eval()
    perturb_norms(model)
    model.save_pretrained(folder, safe_serialization=True)
    image_processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    image_processor.save_pretrained(folder)  # preprocessor_config.json, as LLaVA-1.5 repositories ship it
    tokenizer.save_pretrained(folder)
    processor = transformers.LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
        vision_feature_select_strategy=strategy, num_additional_image_tokens=1,
    )  # fmt: skip
    return model, processor


@pytest.fixture(scope="module", params=[("default", -2), ("full", -1)], ids=["default-2", "full-1"])
def llava(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("llava") / "tiny-llava"
    hf, processor = save_llava(folder, *request.param)
    return folder, hf, processor, polymodal.load(folder)


def picture(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8))


def test_converted_config_follows_the_checkpoint(llava):
    _, hf, _, pipeline = llava
    config = pipeline.model.config
    strategy = hf.config.vision_feature_select_strategy
    assert (config.template, config.feature_norm, config.end_token_id) == ("llava", False, 2)
    assert config.vision_layer == hf.config.vision_feature_layer
    assert config.vision_class_token == (strategy == "full")
    assert pipeline.template.tokens_per_image == 16 + (strategy == "full")
    assert pipeline.image_processor.config.resize_mode == "shortest_crop"


def test_prompt_ids_match_the_llava_processor(llava):
    _, _, processor, pipeline = llava
    expected = processor(images=picture(), text=PROMPT, return_tensors="pt").input_ids[0].tolist()
    messages = [{"role": "user", "content": "<image> what is this?"}]
    assert pipeline.template.encode(messages, add_generation_prompt=True).ids == expected


def test_logits_match_transformers(llava):
    _, hf, processor, pipeline = llava
    inputs = processor(images=[picture(0), picture(1)], text=[PROMPT, PROMPT], return_tensors="pt")
    pixels = pipeline.image_processor([picture(0), picture(1)])
    torch.testing.assert_close(pixels, inputs.pixel_values, atol=1e-5, rtol=0)  # same preprocessing
    with torch.no_grad():
        expected = hf(input_ids=inputs.input_ids, pixel_values=inputs.pixel_values).logits
        got = pipeline.model(inputs.input_ids, images=inputs.pixel_values)
    assert (got - expected).abs().max() <= 1e-4


def test_ask_matches_transformers_greedy_generate(llava):
    _, hf, processor, pipeline = llava
    inputs = processor(images=picture(), text=PROMPT, return_tensors="pt")
    with torch.no_grad():
        out = hf.generate(**inputs, max_new_tokens=5, do_sample=False)
    expected = processor.tokenizer.decode(out[0, inputs.input_ids.shape[1] :], skip_special_tokens=True)
    assert pipeline.ask(picture(), "what is this?", max_tokens=5) == expected.strip()


def test_saved_conversion_reloads_as_the_same_pipeline(llava, tmp_path):
    from polymodal.interop.llava import LlavaChatTemplate

    _, _, _, pipeline = llava
    reloaded = polymodal.load(pipeline.save(tmp_path / "converted"))
    assert isinstance(reloaded.template, LlavaChatTemplate)
    assert json.loads((tmp_path / "converted" / "config.json").read_text())["model"]["template"] == "llava"
    question = dict(image=picture(2), question="what is this?", max_tokens=6)
    assert reloaded.ask(**question) == pipeline.ask(**question)


def test_template_labels_answers_and_their_end_token(llava):
    _, _, _, pipeline = llava
    template = pipeline.template
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is this?"}]},
        {"role": "assistant", "content": "a red circle"},
        {"role": "user", "content": "is it a cat?"},
    ]
    text, _, images = template.render(messages, add_generation_prompt=True)
    assert text == "USER: <image>\nwhat is this? ASSISTANT: a red circle</s>USER: is it a cat? ASSISTANT:"
    encoded = template.encode(messages[:2])
    answer = [t for t in encoded.labels if t != -100]
    assert images == 1 and encoded.ids.count(template.image_id) == template.tokens_per_image
    assert template.tokenizer.decode(answer) == "a red circle" and answer[-1] == template.end_id
    with pytest.raises(ValueError, match="may not contain"):
        template.encode([{"role": "user", "content": "hi</s>"}])


def write_config(folder, **changes):
    cfg = transformers.LlavaConfig(
        text_config=transformers.LlamaConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=1)
    ).to_dict()
    for key, value in changes.items():
        cfg[key] = cfg[key] | value if isinstance(value, dict) else value
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_unsupported_llava_variants_are_refused_before_reading_weights(tmp_path):
    siglip = write_config(tmp_path / "siglip", vision_config={"model_type": "siglip_vision_model"})
    with pytest.raises(UnsupportedCheckpointError, match=r"'siglip_vision_model' vision tower.*CLIP"):
        polymodal.load(siglip)
    qwen = write_config(tmp_path / "qwen", text_config={"model_type": "qwen2"})
    with pytest.raises(UnsupportedCheckpointError, match=r"'qwen2' language model.*llama, mistral"):
        polymodal.load(qwen)
    layers = write_config(tmp_path / "layers", vision_feature_layer=[-2, -5])
    with pytest.raises(UnsupportedCheckpointError, match="concatenates several layers"):
        polymodal.load(layers)
