"""City scale: descriptor-store memory and search latency per index type, measured and projected.

Measures each `core.index` type (flat, flat_fp16, ivf_pq, hnsw) on --sizes databases of
unit-norm descriptors of --dim dimensions (clustered like place descriptors, see
benchmarks/fast_index.py): serialised bytes per descriptor, build time, and the latency of a
single query (top-20, the app's request pattern, median of --queries queries), in wall
time and in CPU time of this process; projections use the CPU time, which is robust to
other work on a shared machine when faiss runs one thread. HNSW and
IVF-PQ are measured only up to --hnsw_max and --ivf_max (their builds are the slow part on a
CPU). Set OMP_NUM_THREADS to choose faiss's threads; the table says how many it used.

It then projects each type to the SF-XL test database (2.8M images) and the raw SF-XL set
(41.2M) from its largest measured size: memory = n x bytes/descriptor; flat and flat_fp16
latency grow linearly in n; IVF-PQ (nlist about 4 sqrt(n), fixed nprobe) scans
nprobe n / nlist codes, so it grows as sqrt(n); HNSW's graph walk grows about as log(n).
Projected figures are formulas, not measurements, and the table says which is which.

    python -m benchmarks.city_scale [--sizes 100000 1000000 --dim 512 --hnsw_max 100000
        --ivf_max 1000000]
"""

from __future__ import annotations

import argparse
import math
import time

import faiss

from benchmarks.fast_index import PlaceModel
from benchmarks.table import print_table, single_query_ms
from core.index import build_index, bytes_per_descriptor, search

SFXL_SIZES = {"SF-XL test database": 2_800_000, "SF-XL raw set": 41_200_000}
INDEX_SETTINGS = {
    "flat": {},
    "flat_fp16": {},
    "ivf_pq": {"nprobe": 32, "pq_m": 64, "train_size": 100_000},
    "hnsw": {"hnsw_m": 32, "ef_search": 128},
}
GROWTH = {"flat": "n", "flat_fp16": "n", "ivf_pq": "sqrt(n)", "hnsw": "log(n)"}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--hnsw_max", type=int, default=100_000)
    parser.add_argument("--ivf_max", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--index_types", nargs="+", default=list(INDEX_SETTINGS))
    return parser.parse_args()


def project_latency(index_type: str, measured_ms: float, measured_n: int, target_n: int) -> float:
    if index_type == "hnsw":
        return measured_ms * math.log(target_n) / math.log(measured_n)
    ratio = target_n / measured_n
    return measured_ms * (math.sqrt(ratio) if index_type == "ivf_pq" else ratio)


def measure(options) -> dict[str, tuple[int, float, float]]:
    """Measured rows, and per index type its largest (n, bytes/descriptor, latency ms)."""
    places = PlaceModel(places=max(options.sizes) // 50, dim=options.dim)
    queries = places.sample(options.queries, seed=1)
    rows, largest = [], {}
    limits = {"hnsw": options.hnsw_max, "ivf_pq": options.ivf_max}  # slow builds on a CPU
    for size in sorted(options.sizes):
        database = places.sample(size, seed=2)
        for index_type in options.index_types:
            if size > limits.get(index_type, size):
                continue
            start = time.perf_counter()
            index, params = build_index(database, index_type, **INDEX_SETTINGS[index_type])
            build_s = time.perf_counter() - start
            per_descriptor = bytes_per_descriptor(index)
            wall_ms, latency = single_query_ms(lambda q, i=index: search(i, q, k=20), queries)
            settings = ", ".join(f"{k}={v}" for k, v in params.items()) or "-"
            rows.append(
                [
                    f"{size:,}",
                    index_type,
                    settings,
                    per_descriptor,
                    size * per_descriptor / 2**30,
                    wall_ms,
                    latency,
                    build_s,
                ]
            )
            largest[index_type] = (size, per_descriptor, latency)
            del index
        del database
    headers = [
        "n",
        "index",
        "settings",
        "bytes/desc",
        "memory GiB",
        "1-query ms",
        "CPU ms",
        "build s",
    ]
    print(f"Measured: {options.dim}-D descriptors, {faiss.omp_get_max_threads()} faiss threads")
    print_table(headers, rows)
    return largest


def project(largest: dict[str, tuple[int, float, float]]) -> None:
    rows = []
    for what, target in SFXL_SIZES.items():
        for index_type, (size, per_descriptor, latency) in largest.items():
            rows.append(
                [
                    f"{what} ({target / 1e6:.1f}M)",
                    index_type,
                    f"{size:,}",
                    target * per_descriptor / 2**30,
                    project_latency(index_type, latency, size, target),
                    GROWTH[index_type],
                ]
            )
    print("Projected from the largest measured size (memory = n x bytes/descriptor; latency from")
    print("the CPU ms of one query, scaled by the growth law):")
    print_table(
        ["database", "index", "from n", "memory GiB", "1-query CPU ms", "latency grows as"], rows
    )


def main() -> None:
    options = parse_arguments()
    project(measure(options))


if __name__ == "__main__":
    main()
