"""Shared fixtures for the server tests: the shipped tiny models, loaded once, and request helpers."""

from __future__ import annotations

import contextlib

import pytest
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
