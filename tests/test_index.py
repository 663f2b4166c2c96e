"""EmbeddingIndex: add/search, save/load round trip, and clear errors on bad input or files."""

import json

import numpy as np
import pytest

from polymodal.index import EmbeddingIndex, EmbeddingIndexError, Hit


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def filled_index(n: int = 20, dim: int = 8, kind: str = "flat") -> tuple[EmbeddingIndex, np.ndarray]:
    index = EmbeddingIndex(dim, kind=kind)
    vectors = unit_rows(n, dim)
    index.add(vectors, [{"caption": f"item {i}", "n": i} for i in range(n)])
    return index, vectors


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_search_returns_exact_top_k_by_inner_product(kind):
    index, vectors = filled_index(kind=kind)
    queries = unit_rows(3, 8, seed=1)
    hits = index.search(queries, k=4)
    expected = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :4]
    assert [[h.id for h in row] for row in hits] == expected.tolist()
    top = hits[0][0]
    assert isinstance(top, Hit)
    assert top.metadata == {"caption": f"item {top.id}", "n": top.id}
    assert top.score == pytest.approx(float(queries[0] @ vectors[top.id]), abs=1e-5)


def test_single_vector_query_and_k_clipped_to_size():
    index, vectors = filled_index(n=5)
    hits = index.search(vectors[2], k=50)
    assert len(hits) == 1 and len(hits[0]) == 5
    assert hits[0][0].id == 2 and hits[0][0].score == pytest.approx(1.0, abs=1e-5)


def test_add_appends_ids_in_order():
    index = EmbeddingIndex(4)
    a, b = unit_rows(2, 4, seed=2), unit_rows(3, 4, seed=3)
    index.add(a, [{"i": 0}, {"i": 1}])
    index.add(b, [{"i": 2}, {"i": 3}, {"i": 4}])
    assert len(index) == 5
    assert index.search(b[1], k=1)[0][0].metadata == {"i": 3}
    np.testing.assert_allclose(index.embeddings(), np.concatenate([a, b]), atol=1e-6)


def test_add_rejects_mismatched_dim_count_and_non_finite():
    index = EmbeddingIndex(8)
    with pytest.raises(EmbeddingIndexError, match="dim 4 but the index was built with dim 8"):
        index.add(unit_rows(2, 4), [{}, {}])
    with pytest.raises(EmbeddingIndexError, match="2 embeddings but 1 metadata"):
        index.add(unit_rows(2, 8), [{}])
    bad = unit_rows(3, 8)
    bad[1, 0] = np.nan
    with pytest.raises(EmbeddingIndexError, match=r"non-finite .* rows \[1\]"):
        index.add(bad, [{}, {}, {}])
    with pytest.raises(EmbeddingIndexError, match="not JSON-serialisable"):
        index.add(unit_rows(1, 8), [{"x": object()}])
    assert len(index) == 0  # nothing half-added


def test_search_errors():
    index = EmbeddingIndex(8)
    with pytest.raises(EmbeddingIndexError, match="empty"):
        index.search(unit_rows(1, 8))
    index.add(unit_rows(2, 8), [{}, {}])
    index.model_name = "tiny-clip"
    with pytest.raises(EmbeddingIndexError, match="built with model tiny-clip with dim 8"):
        index.search(unit_rows(1, 16))
    with pytest.raises(EmbeddingIndexError, match="k must be a positive integer"):
        index.search(unit_rows(1, 8), k=0)


def test_constructor_rejects_bad_kind_and_dim():
    with pytest.raises(EmbeddingIndexError, match="unknown index kind 'ivf'"):
        EmbeddingIndex(8, kind="ivf")
    with pytest.raises(EmbeddingIndexError, match="positive integer"):
        EmbeddingIndex(0)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_round_trip_gives_same_hits(tmp_path, kind):
    index, _ = filled_index(kind=kind)
    index.model_name = "tiny-clip"
    queries = unit_rows(4, 8, seed=5)
    before = index.search(queries, k=5)
    folder = index.save(tmp_path / "idx")
    assert sorted(p.name for p in folder.iterdir()) == ["index.faiss", "index.json", "metadata.jsonl"]
    manifest = json.loads((folder / "index.json").read_text())
    assert manifest["dim"] == 8 and manifest["count"] == 20 and manifest["kind"] == kind
    assert manifest["model"] == "tiny-clip" and manifest["format_version"] == 1 and manifest["created"]
    loaded = EmbeddingIndex.load(folder)
    assert (len(loaded), loaded.dim, loaded.kind, loaded.model_name) == (20, 8, kind, "tiny-clip")
    assert loaded.search(queries, k=5) == before


def test_save_replaces_existing_index_and_leaves_no_temp_folders(tmp_path):
    index, _ = filled_index(n=3)
    index.save(tmp_path / "idx")
    index.add(unit_rows(2, 8, seed=9), [{"new": 1}, {"new": 2}])
    index.save(tmp_path / "idx")
    assert len(EmbeddingIndex.load(tmp_path / "idx")) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]


def test_save_refuses_to_replace_a_folder_that_is_not_an_index(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("keep me")
    index, _ = filled_index(n=2)
    with pytest.raises(EmbeddingIndexError, match="not an index"):
        index.save(tmp_path / "docs")
    assert (tmp_path / "docs" / "notes.txt").read_text() == "keep me"


def test_load_checks_expected_model_and_dim(tmp_path):
    index, _ = filled_index()
    index.model_name = "tiny-clip"
    index.save(tmp_path / "idx")
    expected = r"built with model tiny-clip \(dim 8\); you are querying with model base-clip \(dim 512\)"
    with pytest.raises(EmbeddingIndexError, match=expected):
        EmbeddingIndex.load(tmp_path / "idx", expect_model="base-clip", expect_dim=512)
    assert len(EmbeddingIndex.load(tmp_path / "idx", expect_model="tiny-clip", expect_dim=8)) == 20


def test_load_missing_folder_and_missing_files(tmp_path):
    with pytest.raises(EmbeddingIndexError, match="no index folder"):
        EmbeddingIndex.load(tmp_path / "nope")
    index, _ = filled_index()
    folder = index.save(tmp_path / "idx")
    (folder / "metadata.jsonl").unlink()
    with pytest.raises(EmbeddingIndexError, match="missing metadata.jsonl"):
        EmbeddingIndex.load(folder)


def test_load_corrupt_files_raise_clear_errors(tmp_path):
    index, _ = filled_index()
    folder = index.save(tmp_path / "idx")
    good_faiss = (folder / "index.faiss").read_bytes()

    (folder / "index.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(EmbeddingIndexError, match="could not be read by FAISS"):
        EmbeddingIndex.load(folder)
    (folder / "index.faiss").write_bytes(good_faiss)

    lines = (folder / "metadata.jsonl").read_text().splitlines()
    (folder / "metadata.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(EmbeddingIndexError, match="metadata.jsonl has 19 lines"):
        EmbeddingIndex.load(folder)
    (folder / "metadata.jsonl").write_text("\n".join(lines[:-1] + ["{broken"]) + "\n")
    with pytest.raises(EmbeddingIndexError, match="line 20 is not valid JSON"):
        EmbeddingIndex.load(folder)
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")

    manifest = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({**manifest, "dim": 16}))
    with pytest.raises(EmbeddingIndexError, match="says dim 16 but index.faiss has dim 8"):
        EmbeddingIndex.load(folder)
    (folder / "index.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(EmbeddingIndexError, match="format_version 99"):
        EmbeddingIndex.load(folder)
    (folder / "index.json").write_text("{")
    with pytest.raises(EmbeddingIndexError, match="not valid JSON"):
        EmbeddingIndex.load(folder)
