"""Shared fixtures for the server tests: the shipped tiny models, loaded once, and request helpers."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
import torch
from fastapi.testclient import TestClient

import polymodal
from polymodal.serve import ServeConfig, create_app


@pytest.fixture(scope="session")
def clip():
    return polymodal.load("tiny-clip")


@pytest.fixture(scope="session")
def assistant():
    return polymodal.load("tiny-assistant")


@pytest.fixture(scope="session")
def models(clip, assistant):
    return {"tiny-clip": clip, "tiny-assistant": assistant}


@pytest.fixture(scope="session")
def asr():
    """An untrained tiny speech recogniser (tiny-asr is not shipped; only the plumbing is under test)."""
    from polymodal.data.tokenizer import TextTokenizer
    from polymodal.data.worlds.spoken import VOCABULARY
    from polymodal.pipelines import pipeline_for
    from polymodal.registry import build_model, get_spec

    tokenizer = TextTokenizer.train_bpe(list(VOCABULARY) * 3, vocab_size=96, context_length=12)
    torch.manual_seed(0)
    overrides = {
        "audio": {"n_mels": 32, "max_positions": 200, "width": 32, "depth": 1, "heads": 2},
        "decoder": {"width": 32, "depth": 1, "heads": 2, "vocab_size": tokenizer.vocab_size},
    }
    spec = replace(
        get_spec("tiny-asr", **overrides), name="asr", audio_processor={"n_mels": 32, "max_seconds": 4}
    )
    return pipeline_for(spec, build_model(spec), None, tokenizer=tokenizer)


@pytest.fixture(scope="session")
def serve(models):
    """``serve(**config)`` -> a context manager yielding a started TestClient over the tiny models."""

    @contextlib.contextmanager
    def start(pipelines=None, **settings):
        config = ServeConfig(models=list(pipelines or models), **settings)
        with TestClient(create_app(config, pipelines or models), raise_server_exceptions=False) as client:
            yield client

    return start


@pytest.fixture(scope="session")
def client(serve):
    """One started server with the default limits, shared by read-only tests."""
    with serve() as c:
        yield c
