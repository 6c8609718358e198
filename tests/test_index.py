import json

import numpy as np
import pytest
import torch

from core.index import (
    INDEX_TYPES,
    IndexManifest,
    IndexMismatchError,
    build_index,
    bytes_per_descriptor,
    load_index,
    model_identity,
    paths_fingerprint,
    save_index,
    search,
)
from core.model import CosPlaceNet


def clustered(count, dim=64, clusters=50, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim))
    points = centers[rng.integers(0, clusters, count)] + 0.3 * rng.standard_normal((count, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def test_flat_is_exact_l2_knn():
    database, queries = clustered(2000), clustered(30, seed=1)
    index, _ = build_index(database, "flat")
    distances, predictions = search(index, queries, k=20)
    brute = ((queries[:, None, :] - database[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(predictions[:, 0], brute.argmin(1))
    np.testing.assert_allclose(distances, np.sort(brute, axis=1)[:, :20], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("index_type", INDEX_TYPES)
def test_every_index_type_finds_most_of_the_exact_neighbours(index_type):
    database, queries = clustered(5000), clustered(50, seed=1)
    exact, _ = build_index(database, "flat")
    _, truth = search(exact, queries, k=10)
    index, params = build_index(database, index_type, nprobe=8, pq_m=16, ef_search=256)
    _, found = search(index, queries, k=10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert overlap > (0.5 if index_type.endswith("pq") else 0.9), overlap
    assert bytes_per_descriptor(index) > 0


def test_compressed_indexes_are_smaller():
    database = clustered(5000)
    sizes = {t: bytes_per_descriptor(build_index(database, t, pq_m=16)[0]) for t in INDEX_TYPES}
    assert sizes["flat_fp16"] < 0.6 * sizes["flat"]
    assert sizes["ivf_pq"] < 0.2 * sizes["flat"]


def test_small_database_returns_all_rows():
    index, _ = build_index(clustered(5), "flat")
    _, predictions = search(index, clustered(2, seed=3), k=20)
    assert predictions.shape == (2, 5)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CosPlaceNet("ResNet18", 64)


def _saved(tmp_path, model, database, paths, index_type="ivf_flat"):
    index, params = build_index(database, index_type)
    manifest = IndexManifest(
        index_type=index_type,
        dim=index.d,
        count=index.ntotal,
        model=model_identity(model),
        database_fingerprint=paths_fingerprint(paths),
        params=params,
    )
    save_index(index, tmp_path, manifest)
    return index


def test_round_trip_keeps_results_and_search_params(tmp_path, model):
    database = clustered(3000)
    paths = [f"db/{i}.jpg" for i in range(3000)]
    index = _saved(tmp_path, model, database, paths)
    loaded, manifest = load_index(tmp_path, model, paths_fingerprint(paths), 3000)
    assert manifest.index_type == "ivf_flat" and manifest.count == 3000 and manifest.dim == 64
    assert loaded.nprobe == index.nprobe
    queries = clustered(5, seed=2)
    np.testing.assert_array_equal(search(loaded, queries)[1], search(index, queries)[1])


def test_other_model_is_refused(tmp_path, model):
    paths = [f"{i}.jpg" for i in range(500)]
    _saved(tmp_path, model, clustered(500), paths, "flat")
    other = CosPlaceNet("ResNet18", 64)
    with pytest.raises(IndexMismatchError, match="model weights"):
        load_index(tmp_path, other)
    with pytest.raises(IndexMismatchError, match="descriptor dimension 64.*128"):
        load_index(tmp_path, CosPlaceNet("ResNet18", 128))


def test_other_database_is_refused(tmp_path, model):
    paths = [f"{i}.jpg" for i in range(500)]
    _saved(tmp_path, model, clustered(500), paths, "flat")
    with pytest.raises(IndexMismatchError, match="built for database"):
        load_index(tmp_path, database_fingerprint=paths_fingerprint(paths[::-1]))
    with pytest.raises(IndexMismatchError, match="database size 500"):
        load_index(tmp_path, count=499)


def test_mismatched_or_missing_files_are_refused(tmp_path, model):
    paths = [f"{i}.jpg" for i in range(500)]
    _saved(tmp_path, model, clustered(500), paths, "flat")
    manifest = json.loads((tmp_path / "index_manifest.json").read_text())
    manifest["count"] = 400
    (tmp_path / "index_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="do not belong together"):
        load_index(tmp_path)
    (tmp_path / "index_manifest.json").write_text("{not json")
    with pytest.raises(IndexMismatchError, match="not a valid manifest"):
        load_index(tmp_path)
    with pytest.raises(IndexMismatchError, match="has no index.faiss"):
        load_index(tmp_path / "elsewhere")


def test_query_dimension_mismatch_is_named():
    index, _ = build_index(clustered(100), "flat")
    with pytest.raises(IndexMismatchError, match="32-D descriptors but the index holds 64-D"):
        search(index, clustered(2, dim=32))


def test_default_lists_grow_as_sqrt_n_up_to_what_an_hour_of_building_allows():
    from core.index import MAX_DEFAULT_NLIST, default_nlist

    assert default_nlist(1_000) == 1_000 // 39  # enough training points per list
    assert default_nlist(1_000_000) == 4_000
    assert default_nlist(41_200_000) == MAX_DEFAULT_NLIST == 8192
