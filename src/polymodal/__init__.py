"""polymodal: build, train, evaluate and serve multimodal models.

Public API (imported lazily so ``polymodal --help`` does not pay for torch):
    load(name_or_path)        a bundled model name or a model folder -> pipeline
    save(pipeline, path)      write a model folder (config.json, model.safetensors, tokenizer)
    create_model(name, **kw)  a named architecture with fresh weights
    list_models()             named architectures; bundled_models(): trained models shipped in the package
    keep_freed_memory()       keep freed heap for the next batch (process-wide; polymodal's commands call it)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load": "polymodal.hub",
    "save": "polymodal.hub",
    "bundled_models": "polymodal.hub",
    "create_model": "polymodal.registry",
    "list_models": "polymodal.registry",
    "get_spec": "polymodal.registry",
    "keep_freed_memory": "polymodal.allocator",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'polymodal' has no attribute {name!r}")
