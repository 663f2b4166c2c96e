"""A FAISS vector index saved together with its metadata.

Embeddings are expected to be L2-normalised, so inner product equals cosine similarity. An index is a
folder of three files, written atomically (temporary folder, fsync, rename) and never pickled:

- ``index.faiss``     the FAISS index (``faiss.write_index``)
- ``metadata.jsonl``  one JSON object per vector, in insertion order (line i belongs to id i)
- ``index.json``      ``{"format_version", "dim", "count", "kind", "model", "created"}``
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from polymodal.atomic import write_folder_atomic

FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
METADATA_FILE = "metadata.jsonl"
MANIFEST_FILE = "index.json"
KINDS = ("flat", "hnsw")


class EmbeddingIndexError(ValueError):
    """An index that cannot be built, searched, saved or loaded; the message says what to do."""


@dataclass(frozen=True)
class Hit:
    """One search result: similarity ``score``, insertion ``id`` and the stored ``metadata``."""

    score: float  # inner product (cosine for normalised embeddings); higher is more similar
    id: int  # position in insertion order, 0-based
    metadata: dict[str, Any] = field(default_factory=dict)  # what was passed to add() for this vector


def _new_faiss_index(dim: int, kind: str, hnsw_m: int) -> faiss.Index:
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = max(40, 2 * hnsw_m)
    return index


def _as_matrix(x: np.ndarray, dim: int, what: str, model_name: str | None) -> np.ndarray:
    """Validate a (N, dim) or (dim,) array and return it as contiguous float32 (N, dim)."""
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise EmbeddingIndexError(f"{what} must have shape (N, {dim}) or ({dim},), got {arr.shape}")
    if arr.shape[1] != dim:
        built = f" with model {model_name}" if model_name else ""
        raise EmbeddingIndexError(
            f"{what} have dim {arr.shape[1]} but the index was built{built} with dim {dim}; "
            "embed with the same model that built the index"
        )
    if not np.issubdtype(arr.dtype, np.number):
        raise EmbeddingIndexError(f"{what} must be numeric, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise EmbeddingIndexError(
            f"{what} contain non-finite values (NaN/inf) in rows {bad[:10].tolist()}"
            f"{' ...' if bad.size > 10 else ''}; fix or drop those rows"
        )
    return arr


class EmbeddingIndex:
    """Exact ("flat") or approximate ("hnsw") inner-product search over embeddings with metadata.

    Args:
        dim: embedding dimension.
        kind: "flat" (exact, ``IndexFlatIP``) or "hnsw" (``IndexHNSWFlat`` with inner product, for large
            galleries where exact search is too slow).
        hnsw_m: HNSW graph degree (ignored for "flat").
        ef_search: HNSW search breadth; raised to k when k is larger (ignored for "flat").

    Set ``model_name`` before ``save`` so a later ``load`` can say which model built the index.
    """

    def __init__(self, dim: int, kind: str = "flat", hnsw_m: int = 32, ef_search: int = 64):
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise EmbeddingIndexError(f"dim must be a positive integer, got {dim!r}")
        if kind not in KINDS:
            raise EmbeddingIndexError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.dim = dim
        self.kind = kind
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.model_name: str | None = None
        self._index = _new_faiss_index(dim, kind, hnsw_m)
        self._metadata: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self._metadata)

    def __repr__(self) -> str:
        model = f", model={self.model_name!r}" if self.model_name else ""
        return f"EmbeddingIndex(dim={self.dim}, kind={self.kind!r}, count={len(self)}{model})"

    def add(self, embeddings: np.ndarray, metadata: list[dict[str, Any]]) -> None:
        """Append ``embeddings`` (N, D) with one JSON-serialisable metadata dict per row."""
        vectors = _as_matrix(embeddings, self.dim, "embeddings", self.model_name)
        metadata = list(metadata)
        if len(metadata) != len(vectors):
            raise EmbeddingIndexError(
                f"got {len(vectors)} embeddings but {len(metadata)} metadata entries; pass one dict per row"
            )
        for i, meta in enumerate(metadata):
            if not isinstance(meta, dict):
                raise EmbeddingIndexError(f"metadata[{i}] must be a dict, got {type(meta).__name__}")
            try:
                json.dumps(meta, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise EmbeddingIndexError(
                    f"metadata[{i}] is not JSON-serialisable ({e}); store plain strings and numbers"
                ) from None
        if len(vectors):
            self._index.add(vectors)
            self._metadata.extend(dict(m) for m in metadata)

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Return the top-``k`` hits for each query (k is clipped to the index size).

        Args:
            queries: (Q, D) or (D,) embeddings; a single vector still returns a list with one hit list.
            k: number of hits per query.
        """
        if len(self) == 0:
            raise EmbeddingIndexError("the index is empty; add() embeddings before searching")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise EmbeddingIndexError(f"k must be a positive integer, got {k!r}")
        vectors = _as_matrix(queries, self.dim, "queries", self.model_name)
        k = min(k, len(self))
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = max(self.ef_search, k)
        scores, ids = self._index.search(vectors, k)
        # HNSW may return -1 ids when the graph yields fewer than k candidates
        return [
            [
                Hit(float(s), int(i), dict(self._metadata[i]))
                for s, i in zip(row_s, row_i, strict=True)
                if i >= 0
            ]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]

    def embeddings(self) -> np.ndarray:
        """All stored vectors as a (N, D) float32 array (reconstructed from the FAISS index)."""
        if len(self) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_n(0, len(self))

    def manifest(self) -> dict[str, Any]:
        """The ``index.json`` contents for the current state."""
        return {
            "format_version": FORMAT_VERSION,
            "dim": self.dim,
            "count": len(self),
            "kind": self.kind,
            "model": self.model_name,
            "hnsw_m": self.hnsw_m,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the index folder atomically; an existing index at ``directory`` is replaced."""

        def fill(tmp: Path) -> None:
            faiss.write_index(self._index, str(tmp / INDEX_FILE))
            with open(tmp / METADATA_FILE, "w", encoding="utf-8") as f:
                for meta in self._metadata:
                    f.write(json.dumps(meta, ensure_ascii=False) + "\n")
            (tmp / MANIFEST_FILE).write_text(json.dumps(self.manifest(), indent=2) + "\n", encoding="utf-8")

        try:
            return write_folder_atomic(directory, fill, guard=_refuse_non_index)
        except FileExistsError as e:
            raise EmbeddingIndexError(str(e)) from None

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        expect_model: str | None = None,
        expect_dim: int | None = None,
    ) -> EmbeddingIndex:
        """Load an index folder written by :meth:`save`, checking that its files agree.

        Args:
            directory: the folder holding index.faiss, metadata.jsonl and index.json.
            expect_model: when given, the model the caller will query with; a different build model raises.
            expect_dim: when given, the query embedding dim; a different index dim raises.
        """
        folder = Path(directory)
        manifest = _read_manifest(folder)
        _check_expectations(folder, manifest, expect_model, expect_dim)
        try:
            raw = faiss.read_index(str(folder / INDEX_FILE))
        except RuntimeError as e:
            raise EmbeddingIndexError(
                f"{folder / INDEX_FILE} could not be read by FAISS ({str(e).strip().splitlines()[-1]}); "
                "the file is corrupt — rebuild the index"
            ) from None
        metadata = _read_metadata(folder / METADATA_FILE)
        dim, count = manifest["dim"], manifest["count"]
        if raw.d != dim:
            raise EmbeddingIndexError(
                f"{folder}: index.json says dim {dim} but index.faiss has dim {raw.d}; rebuild the index"
            )
        if raw.ntotal != count or len(metadata) != count:
            raise EmbeddingIndexError(
                f"{folder}: index.json says {count} vectors, index.faiss holds {raw.ntotal} and "
                f"metadata.jsonl has {len(metadata)} lines; the folder is inconsistent — rebuild the index"
            )
        index = cls(dim, kind=manifest["kind"], hnsw_m=int(manifest.get("hnsw_m", 32)))
        index._index = raw
        index._metadata = metadata
        index.model_name = manifest.get("model")
        return index


def _refuse_non_index(target: Path) -> None:
    """Never replace a folder of someone's files just because its path was passed by mistake."""
    if any(target.iterdir()) and not (target / MANIFEST_FILE).is_file():
        raise EmbeddingIndexError(
            f"{target} is a non-empty folder that is not an index; choose an empty or new path"
        )


def _read_manifest(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise EmbeddingIndexError(f"no index folder at {folder}; build one first (EmbeddingIndex.save)")
    missing = [n for n in (INDEX_FILE, METADATA_FILE, MANIFEST_FILE) if not (folder / n).is_file()]
    if missing:
        raise EmbeddingIndexError(
            f"index at {folder} is missing {', '.join(missing)}; it was not written by EmbeddingIndex.save "
            "or was only partly copied — rebuild it"
        )
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EmbeddingIndexError(
            f"{folder / MANIFEST_FILE} is not valid JSON ({e}); rebuild the index"
        ) from None
    if not isinstance(manifest, dict):
        raise EmbeddingIndexError(f"{folder / MANIFEST_FILE} must hold a JSON object; rebuild the index")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise EmbeddingIndexError(
            f"index at {folder} has format_version {version!r}; this polymodal reads version {FORMAT_VERSION}"
        )
    for key, ok in (
        ("dim", lambda v: isinstance(v, int) and v > 0),
        ("count", lambda v: isinstance(v, int) and v >= 0),
        ("kind", lambda v: v in KINDS),
    ):
        if not ok(manifest.get(key)):
            raise EmbeddingIndexError(
                f"{folder / MANIFEST_FILE}: invalid or missing {key!r}; rebuild the index"
            )
    return manifest


def _check_expectations(
    folder: Path, manifest: dict[str, Any], expect_model: str | None, expect_dim: int | None
) -> None:
    built_model, built_dim = manifest.get("model"), manifest["dim"]
    model_differs = expect_model is not None and built_model is not None and expect_model != built_model
    dim_differs = expect_dim is not None and expect_dim != built_dim
    if model_differs or dim_differs:
        built = f"model {built_model} (dim {built_dim})" if built_model else f"dim {built_dim}"
        querying = f"model {expect_model}" if expect_model else "embeddings"
        if expect_dim is not None:
            querying += f" (dim {expect_dim})"
        raise EmbeddingIndexError(
            f"index at {folder} was built with {built}; you are querying with {querying}. "
            "Rebuild the index with your model, or query with the model that built it"
        )


def _read_metadata(path: Path) -> list[dict[str, Any]]:
    metadata = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                meta = json.loads(line)
            except json.JSONDecodeError as e:
                raise EmbeddingIndexError(
                    f"{path} line {line_no} is not valid JSON ({e}); rebuild the index"
                ) from None
            if not isinstance(meta, dict):
                raise EmbeddingIndexError(f"{path} line {line_no} must be a JSON object; rebuild the index")
            metadata.append(meta)
    return metadata


__all__ = ["EmbeddingIndex", "EmbeddingIndexError", "Hit", "FORMAT_VERSION"]
