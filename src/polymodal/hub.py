"""Model folders: ``config.json`` + ``model.safetensors`` + tokenizer files; ``save`` and ``load``.

A name given to :func:`load` resolves, in order, to a local folder, a model bundled with polymodal
(``polymodal/pretrained/<name>``), then a Hugging Face hub id. Weights are only ever read with
safetensors: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from polymodal.config import from_dict, to_dict
from polymodal.registry import ModelSpec, build_model

FORMAT_VERSION = 1
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"


class ModelNotFoundError(FileNotFoundError):
    """A model name or path that resolves to nothing; the message lists what is available."""


def bundled_models() -> list[str]:
    """Names of the trained models shipped inside the package."""
    return sorted(p.parent.name for p in PRETRAINED_DIR.glob(f"*/{CONFIG_FILE}"))


def resolve(name_or_path: str | os.PathLike) -> Path:
    """Find the folder of a model given a local path or a bundled name."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ModelNotFoundError(
                f"{path} is a folder but has no {CONFIG_FILE}: it is not a polymodal model folder"
            )
        return path
    bundled = PRETRAINED_DIR / str(name_or_path)
    if (bundled / CONFIG_FILE).is_file():
        return bundled
    available = ", ".join(bundled_models()) or "none"
    raise ModelNotFoundError(
        f"no model {str(name_or_path)!r}: not a local folder, a bundled model (bundled: {available}) "
        "nor a Hugging Face hub id ('org/name')"
    )


def read_spec(folder: Path) -> ModelSpec:
    """Parse a model folder's ``config.json`` into a :class:`ModelSpec`, checking the format version."""
    try:
        data = json.loads((folder / CONFIG_FILE).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{folder / CONFIG_FILE} is not valid JSON: {e}") from None
    version = data.pop("format_version", None)
    if version is None or version > FORMAT_VERSION:
        raise ValueError(
            f"{folder / CONFIG_FILE} has format_version {version!r}; this polymodal reads up to {FORMAT_VERSION}"
        )
    return from_dict(ModelSpec, data, where=str(folder / CONFIG_FILE))


def load_weights(model, file: Path) -> None:
    """Load safetensors weights into ``model`` (cast to its dtypes); mismatched keys are listed."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not file.is_file():
        raise ModelNotFoundError(f"missing weights file {file}")
    try:
        state = load_file(file)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"cannot read {file}: it is not a valid safetensors file ({e})") from None
    load_state(model, state, source=str(file))


def load_state(model, state: dict, source: str) -> None:
    """Load a state dict whose keys and shapes must match the model exactly; mismatches are listed."""
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    bad_shapes = [
        f"{k}: {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or bad_shapes:
        raise ValueError(
            f"weights in {source} do not fit the model built from its config: missing {missing[:10]}, "
            f"unexpected {unexpected[:10]}, shape mismatches {bad_shapes[:10]}"
        )
    model.load_state_dict(state)


def save_weights(model, file: Path, dtype: Any = None) -> None:
    """Write the model's state dict with safetensors, optionally cast (e.g. ``torch.float16`` to ship)."""
    from safetensors.torch import save_file

    state = {}
    for key, tensor in model.state_dict().items():
        t = tensor.detach().cpu()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        state[key] = t.clone().contiguous()  # clone: safetensors refuses tensors that share storage
    save_file(state, str(file), metadata={"format": "pt"})


def spec_to_json(spec: ModelSpec) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, **to_dict(spec)}


def write_model_folder(model, spec: ModelSpec, tokenizer, path: str | os.PathLike, dtype: Any = None) -> Path:
    """Atomically write config.json, model.safetensors (cast to ``dtype``) and the tokenizer files."""
    from polymodal.atomic import write_folder_atomic
    from polymodal.config import save_json
    from polymodal.inference import FoldedQuickGELU, Int8Linear

    if any(isinstance(m, (Int8Linear, FoldedQuickGELU)) for m in model.modules()):
        raise ValueError(
            "a model prepared for inference (int8, bf16 or compiled: weights quantised or rescaled) is not "
            "saved: save the fp32 model; precision and compilation are applied at load"
        )

    def write(folder: Path) -> None:
        save_json(spec_to_json(spec), folder / CONFIG_FILE)
        save_weights(model, folder / WEIGHTS_FILE, dtype=dtype)
        tokenizer.save(folder)

    return write_folder_atomic(path, write)


def load_folder(folder: Path, device: str = "cpu"):
    """Build the model described by a folder, load its weights and wrap it in its pipeline."""
    from polymodal.pipelines import pipeline_for

    spec = read_spec(folder)
    model = build_model(spec)
    load_weights(model, folder / WEIGHTS_FILE)
    return pipeline_for(spec, model, folder, device=device)


def load(
    name_or_path: str | os.PathLike, device: str = "cpu", precision: str = "fp32", compile: bool = False
):
    """Load a model and return its pipeline (e.g. a ``DualEncoderPipeline``).

    ``name_or_path``: a bundled name, a polymodal model folder, a transformers checkpoint folder (converted
    on load), or a Hugging Face hub id (from the local cache, or downloaded when online).
    ``precision`` ("fp32" | "bf16" | "int8") and ``compile`` prepare the model for fast inference
    (:func:`polymodal.inference.prepare_for_inference`).
    """
    pipeline = _load_pipeline(name_or_path, device)
    if precision != "fp32" or compile:
        from polymodal.inference import prepare_for_inference

        prepare_for_inference(pipeline.model, precision, compile=compile)
    return pipeline


def _load_pipeline(name_or_path: str | os.PathLike, device: str):
    from polymodal import interop

    if interop.is_hub_id(name_or_path):  # 'org/name' (bundled names have no slash)
        pipeline = interop.load_hf_folder(interop.fetch_from_hub(str(name_or_path)), device=device)
        pipeline.source = str(name_or_path)
        return pipeline
    path = Path(name_or_path).expanduser()
    if path.is_dir() and interop.read_hf_config(path) is not None:
        pipeline = interop.load_hf_folder(path, device=device)
        pipeline.source = str(path.resolve())
        return pipeline
    folder = resolve(name_or_path)
    pipeline = load_folder(folder, device=device)
    pipeline.source = folder.name if folder.parent == PRETRAINED_DIR else str(folder.resolve())
    return pipeline


def save(model, path: str | os.PathLike, dtype: Any = None) -> Path:
    """Save a pipeline (model + tokenizer + processor) as a model folder; ``dtype`` casts the weights."""
    return model.save(path, dtype=dtype)
