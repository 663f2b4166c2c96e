import json

import pytest

import polymodal
from polymodal.config import ConfigError
from polymodal.train.recipe import load_recipe, recipe_names, run_recipe

TINY = [
    'model_overrides={"embed_dim": 16, "image": {"stages": 2, "base_channels": 8, "width": 32},'
    ' "text": {"depth": 1, "width": 32, "heads": 2}}',
    "batch_size=8",
    "train.steps=3",
    "train.warmup_steps=1",
    "train.log_every=1",
    "train.ckpt_every=0",
    "tokenizer.corpus_size=500",
    'eval_tasks=["digits-zeroshot"]',
    "eval_n=0",
]


def test_bundled_recipes_validate():
    assert "tiny-clip" in recipe_names()
    for name in recipe_names():
        load_recipe(name)


def test_recipe_errors():
    with pytest.raises(ConfigError, match="unknown key 'lrr'"):
        load_recipe("tiny-clip", ["train.lrr=1"])
    with pytest.raises(ConfigError, match="unknown eval tasks"):
        load_recipe("tiny-clip", ['eval_tasks=["nope"]'])
    with pytest.raises(FileNotFoundError, match="no recipe 'nope'"):
        load_recipe("nope")


def test_tiny_recipe_trains_saves_and_evaluates(tmp_path):
    summary = run_recipe(load_recipe("tiny-clip", TINY), tmp_path / "run")
    assert summary["steps"] == 3
    model = polymodal.load(tmp_path / "run" / "model")
    assert model.embed_text(["a red circle"]).shape == (1, 16)
    results = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert results[0]["task"] == "digits-zeroshot" and results[0]["n"] == 359
    assert (tmp_path / "run" / "curves.png").is_file() and (
        tmp_path / "run" / "model" / "README.md"
    ).is_file()


@pytest.mark.slow
def test_recipe_under_torchrun_two_cpu_processes(tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "polymodal.cli",
        "train",
        "--recipe",
        "tiny-clip",
        "--out",
        str(tmp_path / "run"),
    ]
    for override in TINY:
        cmd += ["--set", override]
    subprocess.run(cmd, check=True, timeout=300, capture_output=True)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    assert polymodal.load(tmp_path / "run" / "model").embed_text(["x"]).shape == (1, 16)
