"""Indexes at SF-XL sizes, built from shards on disk and measured against exact search.

Streams --size place-clustered descriptors (benchmarks/fast_index.PlaceModel) to float16
shards on disk as extraction would write them, computes the exact top-10 of --queries
queries over them in chunks (faiss flat per chunk, top-k lists merged), then for each
--configs index builds it a shard at a time (core.index_stream, as training.build_index
--descriptors does) in a fresh process, and measures in another fresh process: build time
and its peak resident memory, index bytes, then for each --nprobes x --rerank setting the
recall of the exact top-10, the median milliseconds of a single query on one core
(faiss.omp_set_num_threads(1)), and the serving process's peak resident memory. Exact
search is measured on the same queries: in memory up to --exact_in_memory_gib, otherwise
streamed over the shards.

    python -m benchmarks.index_scale --size 1000000 --work /tmp/index_scale
    python -m benchmarks.index_scale --size 41200000 --work /big/disk \
        --configs ivf_hnsw_pq:nlist=65536,pq_m=64     # the SF-XL raw set: ~42 GB of shards
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from benchmarks.fast_index import PlaceModel, recall_of_exact
from benchmarks.table import print_table, single_query_ms
from core.index_stream import (
    DescriptorShards,
    build_index_from_shards,
    finish_build,
    search_reranked,
    write_shards,
)

SHARD_ROWS = 500_000
TOP = 10


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--work", required=True, help="folder for shards, truth and indexes")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--latency_queries", type=int, default=100)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["ivf_pq:nlist=4096,pq_m=64", "ivf_hnsw_pq:nlist=4096,pq_m=64"],
        help="index_type:knob=value,... (knobs of core.index.empty_index)",
    )
    parser.add_argument("--nprobes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rerank", type=int, nargs="+", default=[0, 100])
    parser.add_argument("--train_size", type=int, default=100_000)
    parser.add_argument("--exact_in_memory_gib", type=float, default=4.0)
    parser.add_argument(
        "--quantizer_nlists",
        type=int,
        nargs="*",
        help="only time the coarse quantizers (flat, HNSW) at these numbers of lists",
    )
    parser.add_argument(
        "--no_exact_row",
        action="store_true",
        help="leave out timing exact search (an earlier run's row; at 41.2M it reads 42 GB)",
    )
    parser.add_argument(
        "--reuse_built",
        action="store_true",
        help="measure indexes an earlier run built in --work (with its build figures)",
    )
    return parser.parse_args()


def memory_gib(field: str) -> float:
    """A line of /proc/self/status in GiB: VmHWM, the peak resident memory (unlike
    getrusage's ru_maxrss it is not inherited across the exec of a spawned process), or
    RssAnon, the resident memory that is not file pages (the shards' cached pages are)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20  # kB
    return float("nan")


def peak_rss_gib() -> float:
    return memory_gib("VmHWM")


def make_data(options, places: PlaceModel) -> tuple[str, np.ndarray]:
    """The folder of the database's shards on disk (made once, kept) and the queries."""
    folder = Path(options.work) / f"shards_{options.size}x{options.dim}"
    done = folder / "complete.json"
    if not done.is_file():
        chunks = places.stream(options.size, seed=2, chunk_rows=SHARD_ROWS)
        bar = tqdm(total=options.size, desc="descriptor shards", unit="desc", unit_scale=True)

        def float16_chunks():
            for chunk in chunks:
                bar.update(len(chunk))
                yield chunk.astype(np.float16)

        write_shards(folder, float16_chunks())
        bar.close()
        done.write_text(json.dumps({"size": options.size, "dim": options.dim}))
    return str(folder), places.sample(options.queries, seed=1)


def exact_top(shards: DescriptorShards, queries: np.ndarray, k: int = TOP):
    """Exact top-k over the shards, a shard at a time (only one in memory)."""
    best_d = np.full((len(queries), 0), np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for number in tqdm(range(len(shards.paths)), desc="exact top-10", unit="shard"):
        for offset, chunk in zip(
            range(int(shards.offsets[number]), int(shards.offsets[number + 1]), SHARD_ROWS),
            shards.shard_chunks(number, SHARD_ROWS),
            strict=True,
        ):
            flat = faiss.IndexFlatL2(shards.dim)
            flat.add(chunk)
            d, i = flat.search(queries, k)
            joined_d = np.concatenate([best_d, d], axis=1)
            joined_i = np.concatenate([best_i, i + offset], axis=1)
            keep = np.argsort(joined_d, axis=1, kind="stable")[:, :k]
            best_d = np.take_along_axis(joined_d, keep, axis=1)
            best_i = np.take_along_axis(joined_i, keep, axis=1)
    return best_d, best_i


def exact_row(shard_folder: str, queries, truth, in_memory_gib: float) -> dict:
    faiss.omp_set_num_threads(1)
    shards = DescriptorShards(shard_folder)
    if shards.count * shards.dim * 4 / 2**30 <= in_memory_gib:
        flat = faiss.IndexFlatL2(shards.dim)
        for number in range(len(shards.paths)):
            for chunk in shards.shard_chunks(number):
                flat.add(chunk)
        how = "flat in memory"
        wall, cpu = single_query_ms(lambda q: flat.search(q, TOP), queries)
    else:
        how = "flat streamed from shards, 1 query"  # each query reads every shard
        wall, cpu = single_query_ms(lambda q: exact_top(shards, q), queries[:1])
    return {"how": how, "wall_ms": wall, "cpu_ms": cpu, "peak_gib": peak_rss_gib()}


def parse_config(text: str) -> tuple[str, dict]:
    index_type, _, knobs = text.partition(":")
    pairs = (item.partition("=")[::2] for item in knobs.split(",") if item)
    return index_type, {key: int(value) for key, value in pairs}


def build_one(shard_folder: str, config: str, out: str, train_size: int) -> dict:
    """Build in a fresh process (its peak memory is the build's), save to `out`."""
    index_type, knobs = parse_config(config)
    shards = DescriptorShards(shard_folder)
    start, cpu_start = time.perf_counter(), time.process_time()
    timings: dict = {}
    index, params = build_index_from_shards(
        shards,
        Path(out).with_suffix(".work"),
        index_type,
        train_size=train_size,
        checkpoint_rows=10**12,  # measured without checkpoints: one uninterrupted build
        timings=timings,
        **knobs,
    )
    build_s, build_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    faiss.write_index(index, out)
    finish_build(Path(out).with_suffix(".work"))
    return {
        **timings,
        "build_s": build_s,
        "build_cpu_s": build_cpu_s,
        "build_peak_gib": peak_rss_gib(),
        "params": params,
    }


def search_one_config(shard_folder: str, out: str, queries, truth, nprobes, reranks) -> list:
    """Load the index in a fresh process and measure each search setting."""
    faiss.omp_set_num_threads(1)
    shards = DescriptorShards(shard_folder)
    index = faiss.read_index(out)
    ivf = faiss.extract_index_ivf(index)
    rows = []
    for nprobe in nprobes:
        ivf.nprobe = nprobe
        quantizer = faiss.downcast_index(ivf.quantizer)
        if isinstance(quantizer, faiss.IndexHNSWFlat):
            quantizer.hnsw.efSearch = max(128, 2 * nprobe)  # the graph must reach nprobe lists
        for rerank in reranks:

            def search(q, rerank=rerank):
                if rerank:
                    return search_reranked(index, shards, q, TOP, rerank)
                return index.search(q, TOP)

            found = np.concatenate([search(queries[r : r + 1])[1] for r in range(len(queries))])
            wall, cpu = single_query_ms(search, queries)
            rows.append(
                {
                    "nprobe": nprobe,
                    "rerank": rerank,
                    "recall": recall_of_exact(found, truth),
                    "wall_ms": wall,
                    "cpu_ms": cpu,
                    "serve_peak_gib": peak_rss_gib(),
                    "anon_gib": memory_gib("RssAnon"),
                }
            )
    return rows


def quantizer_costs(dim: int, nlists: list[int], vectors: int = 4000) -> None:
    """CPU time of the coarse quantizer alone, flat against HNSW, by number of lists: per
    descriptor added (a batch, as a build assigns them) and per single query, and how often
    the graph finds the nearest list. A build assigns every descriptor once, so at n
    descriptors the flat quantizer costs n x nlist x dim; the graph about log(nlist)."""
    faiss.omp_set_num_threads(1)
    rows = []
    for nlist in nlists:
        places = PlaceModel(places=nlist, dim=dim, seed=nlist)
        centroids = places.sample(nlist, seed=3)  # stand-ins for k-means centroids
        batch = places.sample(vectors, seed=4)
        flat = faiss.IndexFlatL2(dim)
        flat.add(centroids)
        graph = faiss.IndexHNSWFlat(dim, 32)
        cpu = time.process_time()
        graph.add(centroids)
        graph_build_s = time.process_time() - cpu
        graph.hnsw.efSearch = 128
        _, nearest = flat.search(batch, 1)
        _, found = graph.search(batch, 1)
        for name, index in (("flat", flat), ("hnsw M=32 ef=128", graph)):
            cpu = time.process_time()
            index.search(batch, 1)
            per_add_us = 1e6 * (time.process_time() - cpu) / vectors
            _, query_ms = single_query_ms(lambda q, index=index: index.search(q, 1), batch[:200])
            rows.append(
                [
                    f"{nlist:,}",
                    name,
                    per_add_us,
                    1000 * query_ms,
                    1.0 if name == "flat" else float(np.mean(found == nearest)),
                    "-" if name == "flat" else f"{graph_build_s:.2f}",
                ]
            )
    print(f"Coarse quantizer alone, {dim}-D, one core of {cpu_model()} (CPU time):")
    print_table(
        [
            "nlist",
            "quantizer",
            "CPU us per descriptor added",
            "CPU us per query",
            "finds the nearest list",
            "graph build CPU s",
        ],
        rows,
    )


def in_fresh_process(function, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def cpu_model() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    options = parse_arguments()
    if options.quantizer_nlists:
        quantizer_costs(options.dim, options.quantizer_nlists)
        return
    Path(options.work).mkdir(parents=True, exist_ok=True)
    places = PlaceModel(places=max(options.size // 50, 1), dim=options.dim)
    shard_folder, queries = make_data(options, places)
    del places
    shards = DescriptorShards(shard_folder)
    truth_path = Path(options.work) / f"truth_{options.size}x{options.dim}_{options.queries}.npy"
    start = time.perf_counter()
    if truth_path.is_file():  # the exact top-10 of these queries, from an earlier run
        truth = np.load(truth_path)
    else:
        _, truth = exact_top(shards, queries)
        np.save(truth_path, truth)
    truth_s = time.perf_counter() - start
    baseline = in_fresh_process(peak_rss_gib)
    latency_queries = queries[: options.latency_queries]
    rows = []
    if not options.no_exact_row:
        exact = in_fresh_process(
            exact_row, shard_folder, latency_queries, truth, options.exact_in_memory_gib
        )
        size = f"{shards.count * shards.dim * 4 / 2**30:.2f} (float32)"
        times = [exact["wall_ms"], exact["cpu_ms"]]
        rows.append(["exact", exact["how"], "-", size, f"{exact['peak_gib']:.2f}", 1.0, *times])
    for config in options.configs:
        out = str(Path(options.work) / f"{config.replace(':', '_').replace(',', '_')}.faiss")
        record = Path(out).with_suffix(".json")
        if options.reuse_built and record.is_file() and Path(out).is_file():
            built = json.loads(record.read_text())  # re-measure search settings only
        else:
            built = in_fresh_process(build_one, shard_folder, config, out, options.train_size)
            record.write_text(json.dumps(built))
        size = f"{Path(out).stat().st_size / 2**30:.3f}"
        measured = in_fresh_process(
            search_one_config, shard_folder, out, queries, truth, options.nprobes, options.rerank
        )
        build = (
            f"{built['build_s']:.0f} = {built['train_s']:.0f} train + {built['add_s']:.0f} add; "
            f"CPU {built['build_cpu_s']:.0f}; peak {built['build_peak_gib']:.2f} GiB"
        )
        for row in measured:
            search = f"nprobe={row['nprobe']}, rerank={row['rerank'] or '-'}"
            peak = f"{row['serve_peak_gib']:.2f} ({row.get('anon_gib', float('nan')):.2f})"
            figures = [row["recall"], row["wall_ms"], row["cpu_ms"]]
            rows.append([config, search, build, size, peak, *figures])
        print_results(options, truth_s, baseline, rows)  # after each index: partial results


def print_results(options, truth_s: float, baseline: float, rows: list) -> None:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"{options.size:,} place-clustered {options.dim}-D descriptors in float16 shards, "
        f"{options.queries} queries; {cpu_model()}, {os.cpu_count()} cores, load average "
        f"{load} at the end (this benchmark alone adds about 1), {faiss.omp_get_max_threads()} "
        f"faiss threads to build, 1 to search; exact top-10 over the shards in {truth_s:.0f} s "
        "(0 when an earlier run's was read back); "
        f"a process's imports alone take {baseline:.2f} GiB"
    )
    print_table(
        [
            "index",
            "search",
            "build s",
            "index GiB",
            "search process peak RSS GiB (anonymous now)",
            "recall of exact top-10",
            "1-query ms",
            "CPU ms",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
