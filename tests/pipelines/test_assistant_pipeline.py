import base64
import io

import pytest
import torch

import polymodal
from polymodal.config import ConfigError
from polymodal.data.worlds.shapes import ShapesWorld
from polymodal.generate import generate
from polymodal.pipelines.assistant import ConditionedLM


@pytest.fixture(scope="module")
def images():
    world = ShapesWorld(split="test", image_size=32)
    return [world.render(world.scene(i)) for i in range(3)]


@pytest.mark.parametrize("adapter", ["mlp", "perceiver", "xattn"])
def test_batched_left_padded_generation_matches_one_by_one(make_assistant, images, adapter):
    pipe = make_assistant(adapter)
    if adapter == "xattn":
        for layer in pipe.model.adapter.layers:
            torch.nn.init.constant_(layer.attn_gate, 0.7)
    prompts = ["how many shapes are there?", "describe the image in detail please, with every object.", "hi"]
    conversations = [[{"role": "user", "content": f"<image> {p}"}] for p in prompts]
    batched = pipe.generate_batch(conversations, [[im] for im in images], max_tokens=6)
    single = [
        pipe.generate_batch([c], [[im]], max_tokens=6)[0] for c, im in zip(conversations, images, strict=True)
    ]
    assert batched == single


def test_stream_matches_the_full_reply_and_stops_at_max_tokens(make_assistant, images):
    pipe = make_assistant("mlp")
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": images[0]}, {"type": "text", "text": "what?"}],
        }
    ]
    full = pipe.chat(messages, max_tokens=7)
    assert "".join(pipe.chat(messages, max_tokens=7, stream=True)) == full
    ids = torch.tensor([pipe._prompt_ids([{"role": "user", "content": "<image> what?"}], 1)])
    out = generate(ConditionedLM(pipe.model, pipe._pixels(images[:1])), ids, max_new_tokens=3)
    assert out.shape[1] <= 3


def test_data_uri_images_are_accepted_and_remote_urls_refused(make_assistant, images):
    pipe = make_assistant("mlp")
    buffer = io.BytesIO()
    images[0].save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    parts = [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": "what?"}]
    direct = pipe.chat(
        [{"role": "user", "content": [{"type": "image", "image": images[0]}, parts[1]]}], max_tokens=4
    )
    assert pipe.chat([{"role": "user", "content": parts}], max_tokens=4) == direct
    with pytest.raises(ValueError, match="remote URLs"):
        pipe.chat(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}]
        )


def test_bad_requests_get_clear_errors(make_assistant, images):
    pipe = make_assistant("mlp")
    with pytest.raises(ValueError, match="empty"):
        pipe.ask(images[0], "  ")
    with pytest.raises(ValueError, match="placeholder"):  # an image where none is expected
        pipe.chat([{"role": "user", "content": "hello"}], images=[images[0]])
    with pytest.raises(ValueError, match="placeholder"):  # too many images
        pipe.chat([{"role": "user", "content": "<image> hello"}], images=images[:2])
    with pytest.raises(ValueError, match="context length"):
        pipe.ask(images[0], "circle " * 200)
    with pytest.raises(ValueError, match="style"):
        pipe.caption(images[0], style="poem")


def test_save_and_load_round_trip(make_assistant, images, tmp_path):
    pipe = make_assistant("qformer")
    folder = pipe.save(tmp_path / "assistant")
    loaded = polymodal.load(folder)
    assert type(loaded).__name__ == "AssistantPipeline"
    assert loaded.caption(images[1], max_tokens=6) == pipe.caption(images[1], max_tokens=6)


def test_ground_raises_when_no_box_comes_back(make_assistant, images):
    pipe = make_assistant("mlp")
    with pytest.raises(ValueError, match="did not answer with a box"):
        pipe.ground(images[0], "the red circle")


@pytest.mark.parametrize("adapter", ["mlp", "xattn"])
def test_beam_search_with_one_beam_is_greedy(make_assistant, images, adapter):
    pipe = make_assistant(adapter)
    if adapter == "xattn":
        for layer in pipe.model.adapter.layers:
            torch.nn.init.constant_(layer.attn_gate, 0.7)
    messages = [{"role": "user", "content": "<image> what is it?"}]
    greedy = pipe.chat(messages, images=[images[0]], max_tokens=5)
    assert pipe._beam(pipe._prompt_ids(messages, 1), [images[0]], 5, 1, ()) == greedy
    assert isinstance(pipe.chat(messages, images=[images[0]], max_tokens=5, num_beams=3), str)


def test_bundled_tiny_assistant_sees_the_scene():
    """The shipped model: shape names and single-object captions are right on unseen test scenes."""
    from polymodal.data.instructions import short_caption

    assistant = polymodal.load("tiny-assistant")
    world = ShapesWorld(split="test", min_objects=1, max_objects=1)
    scenes = [world.scene(i) for i in range(12)]
    images = [world.render(s) for s in scenes]
    captions = assistant.generate_batch(
        [[{"role": "user", "content": "<image> describe the image briefly."}] for _ in scenes],
        [[im] for im in images],
    )
    correct = sum(c == short_caption(s) for c, s in zip(captions, scenes, strict=True))
    assert correct >= 10, list(zip(captions, [short_caption(s) for s in scenes], strict=True))


def test_image_position_sets_where_single_turn_prompts_put_the_image(make_assistant, images):
    pipe = make_assistant("mlp")
    assert pipe.user_prompt("what is it?") == "<image> what is it?"
    pipe.model.config.image_position = "after"
    assert pipe.user_prompt("what is it?") == "what is it? <image>"
    assert isinstance(pipe.ask(images[0], "what is it?", max_tokens=3), str)
    pipe.model.config.image_position = "middle"
    with pytest.raises(ConfigError, match="image_position"):
        pipe.model.config.validate()
