"""Approximate indexes on structured descriptors: recall of the exact top-10, speed, bytes.

The database is clustered like place descriptors (many images of each place, places far
apart), not uniform noise, on which no index structure can help. Each index is compared
with exact search on the same data: the share of the exact top-10 it returns, and its
single-query throughput relative to exact single-query search.

    python benchmarks/fast_index.py [--num_database 1000000 --dim 512]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.table import print_table
from core.index import build_index, bytes_per_descriptor, search


class PlaceModel:
    """Descriptors of `places` places: a centre each, plus a view-dependent offset drawn from
    a shared low-dimensional subspace (real descriptors vary along few directions), plus a
    little isotropic noise. Database and queries come from the same places."""

    def __init__(self, places: int, dim: int, latent_dim: int = 32, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.centres = rng.standard_normal((places, dim), dtype=np.float32)
        # Offsets about a third to two thirds of a centre's length: same-place descriptors
        # then have cosine similarity 0.7-0.9, different places about 0.
        self.spread = rng.uniform(0.3, 0.7, places).astype(np.float32)
        basis = rng.standard_normal((latent_dim, dim), dtype=np.float32)
        self.basis = basis / np.sqrt(latent_dim, dtype=np.float32)

    def sample(self, count: int, seed: int) -> np.ndarray:
        return np.concatenate(list(self.stream(count, seed)))

    def stream(self, count: int, seed: int, chunk_rows: int = 100_000):
        """The descriptors of sample(count, seed) as float32 chunks of `chunk_rows` rows, for
        databases larger than memory (any chunk_rows gives the same rows as sample)."""
        rng = np.random.default_rng(seed)
        places, dim = self.centres.shape
        block = 100_000  # draws per block of rows fixed, so the rows do not depend on chunks
        pending: list[np.ndarray] = []
        held = 0
        for start in range(0, count, block):
            stop = min(start + block, count)
            place = rng.integers(0, places, stop - start)
            latent = rng.standard_normal((stop - start, len(self.basis)), dtype=np.float32)
            iso = rng.standard_normal((stop - start, dim), dtype=np.float32)
            rows = self.centres[place] + self.spread[place, None] * (latent @ self.basis)
            rows += 0.1 * iso
            rows /= np.linalg.norm(rows, axis=1, keepdims=True)
            pending.append(rows)
            held += len(rows)
            while held >= chunk_rows:
                joined = np.concatenate(pending)
                yield joined[:chunk_rows]
                pending, held = [joined[chunk_rows:]], held - chunk_rows
        if held:
            yield np.concatenate(pending)


def single_query_qps(index, queries: np.ndarray, seconds: float = 3.0) -> float:
    """Queries answered per second when they come one at a time (an app's request pattern)."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds and done < len(queries):
        search(index, queries[done : done + 1], k=10)
        done += 1
    return done / (time.perf_counter() - start)


def recall_of_exact(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


CONFIGS = [
    ("flat", {}),
    ("flat_fp16", {}),
    # Fewer lists than places split each place over several lists (1,024 lists on 1M gave
    # 0.39-0.64 of the exact top-10), so use about 4 sqrt(n) lists, faiss's usual choice.
    ("ivf_flat", {"nlist": 4096, "nprobe": 32}),
    ("ivf_flat", {"nlist": 4096, "nprobe": 128}),
    ("ivf_pq", {"nlist": 4096, "nprobe": 32, "pq_m": 64}),
    ("ivf_pq", {"nlist": 4096, "nprobe": 128, "pq_m": 64}),
    ("hnsw", {"hnsw_m": 32, "ef_search": 128}),
    ("hnsw", {"hnsw_m": 32, "ef_search": 256}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_database", type=int, default=1_000_000)
    parser.add_argument("--num_queries", type=int, default=500)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--places", type=int, default=20_000)
    parser.add_argument("--skip", nargs="*", default=[], help="index types to leave out")
    args = parser.parse_args()

    places = PlaceModel(args.places, args.dim)
    database = places.sample(args.num_database, seed=1)
    queries = places.sample(args.num_queries, seed=2)
    exact, _ = build_index(database, "flat")
    _, truth = search(exact, queries, k=10)
    exact_qps = single_query_qps(exact, queries)

    rows = []
    built: dict[tuple, object] = {}
    for index_type, knobs in CONFIGS:
        if index_type in args.skip:
            continue
        build_knobs = {k: v for k, v in knobs.items() if k in ("nlist", "pq_m", "hnsw_m")}
        key = (index_type, tuple(sorted(build_knobs.items())))
        build_seconds = "(same index)"
        if key not in built:
            start = time.perf_counter()
            built[key] = build_index(database, index_type, **knobs)[0]
            build_seconds = time.perf_counter() - start
        index = built[key]
        if "nprobe" in knobs:
            index.nprobe = knobs["nprobe"]
        if "ef_search" in knobs:
            index.hnsw.efSearch = knobs["ef_search"]
        _, found = search(index, queries, k=10)
        qps = single_query_qps(index, queries)
        rows.append(
            [
                index_type,
                ", ".join(f"{k}={v}" for k, v in knobs.items()) or "-",
                bytes_per_descriptor(index),
                recall_of_exact(found, truth),
                qps,
                qps / exact_qps,
                build_seconds,
            ]
        )
    print(f"{args.num_database:,} structured {args.dim}-D descriptors, {args.places:,} places")
    print_table(
        [
            "index",
            "settings",
            "bytes/descriptor",
            "recall of exact top-10",
            "single-query q/s",
            "x exact",
            "build (s)",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
