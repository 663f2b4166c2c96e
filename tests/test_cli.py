import json
import subprocess
import sys

from PIL import Image
from typer.testing import CliRunner

from polymodal.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_does_not_import_torch():
    code = "import sys; from polymodal.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_list_models():
    result = invoke("list-models")
    assert result.exit_code == 0 and "tiny-clip" in result.output


def test_eval_json_contract(tiny_model_dir):
    result = invoke("eval", tiny_model_dir, "digits-zeroshot", "--n", 10, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["task"] == "digits-zeroshot" and data["n"] == 10 and "accuracy" in data["metrics"]


def test_index_search_classify_embed(tiny_model_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(photos / "red.png")
    (photos / "bad.jpg").write_bytes(b"nope")
    result = invoke("index", photos, "--out", tmp_path / "idx", "--model", tiny_model_dir)
    assert result.exit_code == 0 and "skipped 1: bad.jpg" in result.output
    result = invoke(
        "search", "a red thing", "--index", tmp_path / "idx", "--json"
    )  # model taken from the index
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["path"].endswith("red.png")
    result = invoke(
        "classify", photos / "red.png", "--labels", "red,blue", "--model", tiny_model_dir, "--json"
    )
    assert result.exit_code == 0 and set(json.loads(result.output)[0]["probs"]) == {"red", "blue"}
    result = invoke("embed", "hello", "world", "--model", tiny_model_dir)
    assert result.exit_code == 0 and len(json.loads(result.output)) == 2


def test_errors_are_messages_not_tracebacks(tiny_model_dir, tmp_path):
    result = invoke("eval", "no-such-model", "digits-zeroshot")
    assert result.exit_code == 2 and "no model 'no-such-model'" in result.output
    result = invoke("eval", tiny_model_dir, "nope")
    assert result.exit_code == 2 and "unknown task" in result.output
    (tmp_path / "x.png").write_text("text")
    result = invoke("embed", tmp_path / "x.png", "--images", "--model", tiny_model_dir)
    assert result.exit_code == 2 and "x.png" in result.output
    result = invoke("search", "q", "--index", tmp_path / "missing")
    assert result.exit_code == 2
    result = invoke("train", "--recipe", "tiny-clip", "--set", "train.stepz=3")
    assert result.exit_code == 2 and "unknown key 'stepz'" in result.output
    result = invoke("train", "--recipe", "tiny-fusion", "--set", f"init_from={tmp_path / 'base'}")
    assert result.exit_code == 2 and "was not found" in result.output and "tiny-fusion-base" in result.output


def test_export_fp16_keeps_card(tiny_model_dir, tmp_path):
    (tiny_model_dir / "README.md").write_text("# card\n")
    result = invoke("export", tiny_model_dir, tmp_path / "half", "--dtype", "float16")
    assert result.exit_code == 0, result.output
    assert (
        (tmp_path / "half" / "README.md")
        .read_text()
        .startswith("# card\n\nThis folder stores the weights as float16")
    )
    from safetensors import safe_open

    with safe_open(str(tmp_path / "half" / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    assert dtypes == {__import__("torch").float16}
