"""The streaming index build (core.index_stream): same index as in memory, resumable."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from core.errors import UserError
from core.index import IndexManifest, build_index, index_type_of, load_index, save_index, search
from core.index_stream import (
    PROGRESS_FILE,
    DescriptorShards,
    build_index_from_shards,
    finish_build,
    search_reranked,
    write_shards,
)

KNOBS = {"nlist": 24, "pq_m": 8, "hnsw_m": 8, "ef_search": 32, "nprobe": 4}
TRAIN = {"train_size": 1500, "seed": 3}


@pytest.fixture(autouse=True)
def one_faiss_thread():
    # A graph built by several threads depends on their timing; one thread builds it the same
    # way every time, which the equality tests below need.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def clustered(count, dim=32, clusters=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    points = centres[rng.integers(0, clusters, count)] + 0.3 * rng.standard_normal((count, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def database():
    return clustered(3000)


def shards_of(database, folder, rows=(700, 900, 650, 750)):
    """The database as uneven shards on disk."""
    edges = np.cumsum((0, *rows))
    assert edges[-1] == len(database)
    write_shards(folder, (database[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)))
    return DescriptorShards(folder)


@pytest.mark.parametrize("index_type", ["flat", "ivf_pq", "ivf_hnsw_pq"])
def test_streaming_build_is_the_in_memory_build(tmp_path, database, index_type):
    shards = shards_of(database, tmp_path / "shards")
    streamed, streamed_params = build_index_from_shards(
        shards, tmp_path / "work", index_type, progress=False, **TRAIN, **KNOBS
    )
    in_memory, params = build_index(database, index_type, **TRAIN, **KNOBS)
    assert streamed_params == params and streamed.ntotal == len(database)
    queries = clustered(40, seed=9)
    np.testing.assert_array_equal(search(streamed, queries)[1], search(in_memory, queries)[1])
    assert faiss.serialize_index(streamed).tobytes() == faiss.serialize_index(in_memory).tobytes()


def test_interrupted_build_resumes_to_the_uninterrupted_index(tmp_path, database, monkeypatch):
    shards = shards_of(database, tmp_path / "shards")
    work = tmp_path / "work"
    build = dict(progress=False, checkpoint_rows=1, **TRAIN, **KNOBS)
    reads = []
    original = DescriptorShards.shard_chunks

    def stop_at_third_shard(self, number, *args):
        reads.append(number)
        if number == 2:
            raise KeyboardInterrupt
        return original(self, number, *args)

    monkeypatch.setattr(DescriptorShards, "shard_chunks", stop_at_third_shard)
    with pytest.raises(KeyboardInterrupt):
        build_index_from_shards(shards, work, "ivf_hnsw_pq", **build)
    assert json.loads((work / PROGRESS_FILE).read_text())["shards_done"] == 2
    reads.clear()
    monkeypatch.setattr(
        DescriptorShards, "shard_chunks", lambda self, n, *a: reads.append(n) or original(self, n)
    )
    resumed, _ = build_index_from_shards(shards, work, "ivf_hnsw_pq", **build)
    assert reads == [2, 3]  # the shards already in were not added again
    whole, _ = build_index(database, "ivf_hnsw_pq", **TRAIN, **KNOBS)
    assert faiss.serialize_index(resumed).tobytes() == faiss.serialize_index(whole).tobytes()
    finish_build(work)
    assert not work.exists()


def test_resume_refuses_a_build_of_other_shards(tmp_path, database):
    work = tmp_path / "work"
    first = shards_of(database, tmp_path / "a")
    build_index_from_shards(first, work, "ivf_pq", progress=False, **TRAIN, **KNOBS)
    other = shards_of(database[:2900], tmp_path / "b", rows=(700, 900, 650, 650))
    with pytest.raises(UserError, match="interrupted build of other shards"):
        build_index_from_shards(other, work, "ivf_pq", progress=False, **TRAIN, **KNOBS)


def test_shards_that_cannot_be_indexed_are_one_sentence(tmp_path):
    with pytest.raises(UserError, match="holds no descriptor shards"):
        DescriptorShards(tmp_path)
    np.save(tmp_path / "shard_00000.npy", np.zeros((4, 8), np.float32))
    np.save(tmp_path / "shard_00001.npy", np.zeros((4, 16), np.float32))
    with pytest.raises(UserError, match="different models"):
        DescriptorShards(tmp_path)
    np.save(tmp_path / "shard_00001.npy", np.zeros((4, 8), np.int64))
    with pytest.raises(UserError, match="not rows of float16 or float32"):
        DescriptorShards(tmp_path)


def test_rows_read_back_in_any_order_across_shards(tmp_path, database):
    shards = shards_of(database.astype(np.float16), tmp_path / "shards")
    ids = np.array([2999, 0, 700, 699, 1600, 700])
    np.testing.assert_array_equal(shards.rows(ids), database.astype(np.float16)[ids])


def test_reranking_from_shards_restores_the_exact_order(tmp_path, database):
    shards = shards_of(database, tmp_path / "shards")
    index, _ = build_index(database, "ivf_hnsw_pq", **TRAIN, **{**KNOBS, "pq_m": 4})
    exact, _ = build_index(database, "flat")
    queries = clustered(40, seed=9)
    _, truth = search(exact, queries, k=10)
    _, approximate = search(index, queries, k=10)
    # With every row a candidate, re-ranking is exact search.
    faiss.extract_index_ivf(index).nprobe = KNOBS["nlist"]
    _, reranked = search_reranked(index, shards, queries, 10, candidates=len(database))
    np.testing.assert_array_equal(reranked, truth)
    assert not np.array_equal(approximate, truth)  # 4-byte codes alone do not


def test_manifest_of_an_ivf_hnsw_pq_index(tmp_path, database):
    index, params = build_index(database, "ivf_hnsw_pq", **TRAIN, **KNOBS)
    assert index_type_of(index) == "ivf_hnsw_pq"
    assert index_type_of(build_index(database, "ivf_pq", **TRAIN, **KNOBS)[0]) == "ivf_pq"
    assert params == {"hnsw_m": 8, "quantizer_ef_search": 32, "pq_m": 8, "nlist": 24, "nprobe": 4}
    manifest = IndexManifest("ivf_hnsw_pq", index.d, index.ntotal, params=params)
    save_index(index, tmp_path, manifest)
    loaded, read = load_index(tmp_path, count=len(database))
    assert read.index_type == "ivf_hnsw_pq" and read.params == params
    ivf = faiss.extract_index_ivf(loaded)
    assert ivf.nprobe == 4 and faiss.downcast_index(ivf.quantizer).hnsw.efSearch == 32
    queries = clustered(20, seed=5)
    np.testing.assert_array_equal(search(loaded, queries)[1], search(index, queries)[1])
    # Recorded as the other IVF-PQ kind, the file is refused.
    written = json.loads((tmp_path / "index_manifest.json").read_text())
    (tmp_path / "index_manifest.json").write_text(json.dumps({**written, "index_type": "ivf_pq"}))
    with pytest.raises(UserError, match="manifest says 'ivf_pq'"):
        load_index(tmp_path)


def test_benchmark_streams_the_same_descriptors_and_exact_top_in_chunks(tmp_path, monkeypatch):
    from benchmarks import index_scale
    from benchmarks.fast_index import PlaceModel

    places = PlaceModel(places=30, dim=16)
    whole = places.sample(250_000, seed=4)
    for chunk_rows in (60_000, 100_000, 250_000):
        chunks = list(places.stream(250_000, seed=4, chunk_rows=chunk_rows))
        assert max(len(c) for c in chunks) == chunk_rows
        np.testing.assert_array_equal(np.concatenate(chunks), whole)
    monkeypatch.setattr(index_scale, "SHARD_ROWS", 400)  # several chunks per shard
    shards = shards_of(clustered(3000), tmp_path / "shards")
    queries = clustered(25, seed=8)
    _, merged = index_scale.exact_top(shards, queries)
    exact, _ = build_index(shards.rows(np.arange(3000)), "flat")
    np.testing.assert_array_equal(merged, search(exact, queries, k=10)[1])
