"""Exact search throughput against this CPU's float32 matrix-multiply peak.

Exhaustive L2 search of Q queries over N descriptors costs 2*Q*N*D flops, the same as the
matrix product of the two; the goal is that faiss's exact search runs at >= 70 % of the
sgemm rate measured here, in the same run.

    python benchmarks/exact_search.py [--num_database 1000000 --num_queries 1000 --dim 512]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.table import best_time, print_table
from core.index import build_index, search


def matmul_peak_gflops(dim: int, repeats: int) -> tuple[float, float]:
    """Best sgemm GFLOP/s of torch and numpy on a product shaped like the search's blocks."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1000, dim), dtype=np.float32)
    b = rng.standard_normal((dim, 65_536), dtype=np.float32)
    flops = 2 * a.shape[0] * b.shape[1] * dim
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    torch_rate = flops / best_time(lambda: ta @ tb, repeats) / 1e9
    numpy_rate = flops / best_time(lambda: a @ b, repeats) / 1e9
    return torch_rate, numpy_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_database", type=int, default=1_000_000)
    parser.add_argument("--num_queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    database = rng.standard_normal((args.num_database, args.dim), dtype=np.float32)
    queries = rng.standard_normal((args.num_queries, args.dim), dtype=np.float32)
    database /= np.linalg.norm(database, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index, _ = build_index(database, "flat")

    flops = 2 * args.num_queries * args.num_database * args.dim
    torch_rate, numpy_rate = matmul_peak_gflops(args.dim, args.repeats)
    search_time = best_time(lambda: search(index, queries, k=20), args.repeats)
    search_rate = flops / search_time / 1e9
    peak = max(torch_rate, numpy_rate)
    print_table(
        ["measure", "GFLOP/s", "of peak", "time (s)", "queries/s"],
        [
            ["sgemm peak, torch (1000x512 @ 512x65536)", torch_rate, torch_rate / peak, "", ""],
            ["sgemm peak, numpy (same shape)", numpy_rate, numpy_rate / peak, "", ""],
            [
                f"exact search, faiss flat, {args.num_queries} queries x "
                f"{args.num_database:,} x {args.dim}-D, top-20",
                search_rate,
                f"{search_rate / peak:.0%}",
                search_time,
                args.num_queries / search_time,
            ],
        ],
    )


if __name__ == "__main__":
    main()
