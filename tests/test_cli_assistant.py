import json

import pytest
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.data.worlds.shapes import ShapesWorld

runner = CliRunner()


@pytest.fixture(scope="module")
def assistant_dir(make_assistant, tmp_path_factory):
    return make_assistant("mlp").save(tmp_path_factory.mktemp("cli") / "assistant")


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    world = ShapesWorld(split="test", image_size=32)
    path = tmp_path_factory.mktemp("img") / "scene.png"
    world.render(world.scene(0)).save(path)
    return path


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def test_caption_ask_and_chat(assistant_dir, image_file):
    result = invoke("caption", image_file, "--model", assistant_dir, "--style", "detailed", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["image"] == str(image_file)
    result = invoke(
        "ask", image_file, "how many shapes are there?", "--model", assistant_dir, "--max-tokens", 4
    )
    assert result.exit_code == 0, result.output
    result = invoke(
        "chat", "--image", image_file, "--model", assistant_dir, "--max-tokens", 3, input="hi\nand?\n\n"
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("assistant> ") == 2


def test_assistant_commands_fail_clearly(assistant_dir, image_file, tiny_model_dir, tmp_path):
    result = invoke("ask", image_file, "what?", "--model", tiny_model_dir)
    assert result.exit_code == 2 and "not an assistant" in result.output
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    result = invoke("caption", broken, "--model", assistant_dir)
    assert result.exit_code == 2 and "broken.png" in result.output
    result = invoke("ask", image_file, " ", "--model", assistant_dir)
    assert result.exit_code == 2 and "empty" in result.output
