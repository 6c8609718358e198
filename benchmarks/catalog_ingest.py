"""Catalog ingest + partition of N SF-XL file names, against a per-image Python loop.

Generates N synthetic names (default 1,000,000; --num_names 41200000 for the size of SF-XL
raw) into a `*_images_paths.txt` list, then times, each in its own process so that peak
memory is its own:
  - ours: `python -m data_catalog.ingest LIST` (bulk parse inside DuckDB), then
    catalog_partition.partition_images (arrays from DuckDB into core.partition);
  - the reference implementation's way, on the same first 1M names: a Python loop that
    splits each name on '@' and fills dicts of class -> images and group -> classes.
The loop's class and group keys come from core.partition (the one place of Eq. 1-2), computed
once over the parsed arrays; everything else in it is per image, as in the reference.

    python -m benchmarks.catalog_ingest [--num_names 41200000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb

from benchmarks.table import print_table, work_folder
from data_catalog.names import FIELD_NAMES, make_name, parse_name

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_NAMES = 1_000_000
# Panoramas lie on a street grid (a street every 100 m, both ways) with ~14 panoramas per
# 10 m of street, about SF-XL raw's density: 3.43M panoramas on ~11 km x 11 km.
STREET_SPACING = 100.0
PANOS_PER_STREET_CELL = 14
EAST0, NORTH0 = 543_000.0, 4_175_000.0
# Linear lat/lon around San Francisco: plenty for names nobody projects back.
LAT0, LON0, M_PER_DEG_LAT, M_PER_DEG_LON = 37.7, -122.5, 110_950.0, 88_300.0


def _unit(seed: str) -> str:
    """A pseudo-random number in [0, 1) from the panorama index (deterministic, parallel)."""
    return f"((hash(i * 7 + {seed}) % 1000003) / 1000003.0)"


def _field_sql() -> dict[str, str]:
    """SQL for each field of a crop's name, from the panorama's columns; keyed by field."""
    return {
        "utm_east": "printf('%010.2f', east)",
        "utm_north": "printf('%010.2f', north)",
        "utm_zone_number": "'10'",
        "utm_zone_letter": "'S'",
        "lat": f"printf('%09.5f', {LAT0} + (north - {NORTH0}) / {M_PER_DEG_LAT})",
        "lon": f"printf('%010.5f', {LON0} + (east - {EAST0}) / {M_PER_DEG_LON})",
        "pano_id": "md5(i::VARCHAR)[1:22]",
        "tile_num": "''",
        "heading": "((offset_deg + 30 * crop) % 360)::VARCHAR",  # not zero-padded
        "pitch": "''",
        "roll": "''",
        "height": "''",
        "timestamp": "year::VARCHAR || lpad(month::VARCHAR, 2, '0')",
        "note": "''",
        "extension": "'.jpg'",
    }


def generate_names(num_names: int, path: Path, prefix: str = "train/") -> None:
    """Write num_names crop paths (12 per panorama) under <prefix><lat>/<lon>/ to path."""
    panos = -(-num_names // 12)
    # Street cells of 10 m on a square of side S: 2 * (S / spacing) * (S / 10).
    street_cells = panos / PANOS_PER_STREET_CELL
    side = max((street_cells * STREET_SPACING * 10 / 2) ** 0.5, STREET_SPACING)
    fields = _field_sql()
    name_sql = "'@' || " + " || '@' || ".join(fields[field] for field in FIELD_NAMES)
    folder_sql = (
        f"printf('%.2f', {LAT0} + (north - {NORTH0}) / {M_PER_DEG_LAT}) || '/' || "
        f"printf('%.2f', {LON0} + (east - {EAST0}) / {M_PER_DEG_LON})"
    )
    along, across = f"{_unit('1')} * {side}", f"round({_unit('2')} * {side} / {STREET_SPACING})"
    query = f"""
        WITH panos AS (
            SELECT i,
                   CASE WHEN i % 2 = 0 THEN {along}
                        ELSE {across} * {STREET_SPACING} + ({_unit("3")} - 0.5) * 4 END
                       + {EAST0} AS east,
                   CASE WHEN i % 2 = 1 THEN {along}
                        ELSE {across} * {STREET_SPACING} + ({_unit("4")} - 0.5) * 4 END
                       + {NORTH0} AS north,
                   floor({_unit("5")} * 360)::INT AS offset_deg,
                   2009 + (i % 13) AS year, 1 + (i % 12) AS month
            FROM range({panos}) t(i))
        SELECT '{prefix}' || {folder_sql} || '/' || {name_sql} AS path
        FROM panos, range(12) c(crop) LIMIT {num_names}"""
    con = duckdb.connect()
    con.execute(
        f"COPY ({query}) TO '{path}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '')"
    ).fetchall()
    _check_names(path)


def _check_names(path: Path) -> None:
    """The SQL writer must write what names.make_name writes: compare a few lines."""
    with open(path) as file:
        lines = [next(file).rstrip("\n") for _ in range(24)]
    for line in lines:
        name = parse_name(line)
        again = make_name(
            name.east,
            name.north,
            name.zone_number,
            name.utm_zone_letter,
            name.latitude,
            name.longitude,
            pano_id=name.pano_id,
            heading=name.heading_deg,
            timestamp=name.timestamp,
        )
        if again != line.rsplit("/", 1)[1]:
            raise AssertionError(f"generated {line!r} but make_name writes {again!r}")


def run_measured(code: str) -> dict:
    """Run code in a fresh interpreter; it sets _result; add its peak RSS (GB) and CPU time.

    CPU seconds (all threads, start-up included) say more than wall time when other work
    shares the machine's cores.
    """
    wrapper = (
        "import resource as _resource\n"
        + textwrap.dedent(code)
        + textwrap.dedent(
            """
        import json as _json
        _usage = _resource.getrusage(_resource.RUSAGE_SELF)
        _result["peak_rss_gb"] = _usage.ru_maxrss / 1e6
        _result["cpu_seconds"] = _usage.ru_utime + _usage.ru_stime
        print("RESULT " + _json.dumps(_result))
        """
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"benchmark step failed:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def measure_ours(listing: Path, db: Path) -> dict:
    ingest = run_measured(
        f"""
        import time
        from data_catalog.ingest import main
        start = time.perf_counter()
        main([{str(listing)!r}, "--db", {str(db)!r}, "--no_progress"])
        _result = {{"seconds": time.perf_counter() - start}}
        """
    )
    part = run_measured(
        f"""
        import time
        from data_catalog import catalog, catalog_partition
        start = time.perf_counter()
        con = catalog.connect({str(db)!r}, read_only=True)
        dataset = {listing.name[: -len("_images_paths.txt")]!r}
        result = catalog_partition.partition_images(con, dataset)
        _result = {{"seconds": time.perf_counter() - start,
                    "classes": result.partition.num_classes}}
        """
    )
    return {"ingest": ingest, "partition": part}


def measure_loop(listing: Path) -> dict:
    return run_measured(
        f"""
        import time
        from collections import defaultdict
        import numpy as np
        from core.partition import PartitionParams, class_keys, group_keys
        params = PartitionParams()
        start = time.perf_counter()
        paths, east, north, heading = [], [], [], []
        with open({str(listing)!r}) as file:
            for line in file:
                path = line.rstrip("\\n")
                fields = path.rsplit("/", 1)[-1].split("@")
                paths.append(path)
                east.append(float(fields[1]))
                north.append(float(fields[2]))
                heading.append(float(fields[9]))
        keys = class_keys(np.array(east), np.array(north), np.array(heading),
                          params.M, params.alpha)
        groups = group_keys(keys, params.N, params.L)
        images_per_class = defaultdict(list)
        classes_per_group = defaultdict(set)
        for path, key, group in zip(paths, map(tuple, keys.tolist()), map(tuple, groups.tolist())):
            images_per_class[key].append(path)
            classes_per_group[group].add(key)
        kept = {{k: v for k, v in images_per_class.items()
                 if len(v) >= params.min_images_per_class}}
        classes_per_group = {{g: [c for c in cs if c in kept]
                             for g, cs in classes_per_group.items()}}
        _result = {{"seconds": time.perf_counter() - start, "classes": len(kept)}}
        """
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_names", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="work in this folder and leave it there")
    args = parser.parse_args()

    with work_folder(args.keep, "catalog_bench_") as work:
        listing = work / "sfxl_bench_images_paths.txt"
        start = time.perf_counter()
        generate_names(args.num_names, listing)
        print(f"generated {args.num_names:,} names in {time.perf_counter() - start:.0f} s")
        reference = listing
        if args.num_names > REFERENCE_NAMES:
            # Its own 1M names at the same density (the first 1M lines of the big list
            # would be spread over the whole city, leaving every class too small).
            reference = work / "sfxl_ref_images_paths.txt"
            generate_names(REFERENCE_NAMES, reference)
        rows = []
        ours_small = measure_ours(reference, work / "small.duckdb")
        loop = measure_loop(reference)
        if loop["classes"] != ours_small["partition"]["classes"]:
            raise AssertionError(f"class counts differ: loop {loop}, ours {ours_small}")
        small = min(args.num_names, REFERENCE_NAMES)
        rows.append(_row("ours: bulk ingest + partition", small, ours_small))
        measured = [loop[key] for key in ("seconds", "cpu_seconds", "peak_rss_gb", "classes")]
        rows.append(["per-image Python loop into dicts", f"{small:,}", "", "", *measured])
        if args.num_names > REFERENCE_NAMES:
            ours_big = measure_ours(listing, work / "big.duckdb")
            rows.append(_row("ours: bulk ingest + partition", args.num_names, ours_big))
        total_small = ours_small["ingest"]["seconds"] + ours_small["partition"]["seconds"]
        headers = ["method", "names", "ingest (s)", "partition (s)", "total (s)", "CPU (s)"]
        print_table([*headers, "peak RSS (GB)", "classes"], rows)
        print(
            f"at {small:,} names: ours is "
            f"{loop['seconds'] / total_small:.1f}x faster than the loop (loop builds dicts only; "
            "ours also writes the catalog) and peaks at "
            f"{_peak(ours_small) / loop['peak_rss_gb']:.2f}x its memory"
        )


def _peak(measured: dict) -> float:
    return max(measured["ingest"]["peak_rss_gb"], measured["partition"]["peak_rss_gb"])


def _row(label: str, names: int, measured: dict) -> list:
    ingest, part = measured["ingest"], measured["partition"]
    return [
        label,
        f"{names:,}",
        ingest["seconds"],
        part["seconds"],
        ingest["seconds"] + part["seconds"],
        ingest["cpu_seconds"] + part["cpu_seconds"],
        _peak(measured),
        part["classes"],
    ]


if __name__ == "__main__":
    main()
