"""The app at city scale: each page's logic on a catalog of generated names, and retrieval at 100k.

For --names generated SF-XL names (default 41,200,000, the size of SF-XL raw; written and
ingested as benchmarks/catalog_ingest does), it times what each page computes, without
Streamlit: the ingest's last step (data_catalog.map_views: the Map's first view stored), the
Map's first view after the ingest (stored partition and street squares read back and drawn:
goal under 10 s), the cold computation that the app caches for other parameters and for the
catalog statistics, then each page's own work once that is cached (the aggregated map, a
group's Fig. 4, a block at full resolution, a cell's images, the charts), and the bytes of
pydeck/plotly JSON each page sends to the browser (goals: under 10 s once cached, 20 MB).

The Failures page at SF-XL test size: --failures_queries queries (default 1,000) with 20
predictions each, against a catalog of --failures_database names (default 2,800,000) whose
positions make the street layer: the street layer (cached by the app), then the first draw
(predictions read and placed, squares, lines, streets) and its bytes, and a run B compared.

Retrieval (benchmarks/retrieval_scale): upload to results with a randomly initialised
ResNet-18 (512-D), against an exact index over --database random unit descriptors (goal:
under 1 s at 100k) and, with --index_file, against a prebuilt index (e.g. the 41.2M IVF-PQ
of benchmarks.index_scale) at --nprobe; --index_only measures that alone.

Descriptor space and match heat maps: benchmarks/space_scale (goals: the space under 10 s
and 20 MB from a 2.8M-image index; a match's heat maps under 1 s for the demo model).

    python -m benchmarks.app_scale [--names 41200000] [--database 100000] [--keep DIR]
        [--space_database 2800000]
        [--failures_database 2800000] [--failures_queries 1000] [--failures_only]
        [--index_file FILE [--nprobe 256] [--index_only]]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.retrieval_scale import measure_index_file, measure_retrieval
from benchmarks.space_scale import measure_match, measure_space
from benchmarks.table import print_table, timed, work_folder
from data_catalog import runs

PAYLOAD_LIMIT_MB = 20.0
OPEN_LIMIT_S = 10.0


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=41_200_000, help="generated names")
    parser.add_argument("--database", type=int, default=100_000, help="retrieval database size")
    parser.add_argument("--keep", default=None, help="folder to keep (and reuse) the catalog in")
    parser.add_argument("--skip_catalog", action="store_true", help="retrieval only")
    parser.add_argument(
        "--space_database", type=int, default=2_800_000, help="descriptor space index size"
    )
    parser.add_argument("--failures_database", type=int, default=2_800_000,
                        help="database images behind the Failures page (SF-XL: 2.8M)")  # fmt: skip
    parser.add_argument("--failures_queries", type=int, default=1_000)
    parser.add_argument("--failures_only", action="store_true", help="the Failures page only")
    parser.add_argument("--index_file", help="also time upload to results against this index")
    parser.add_argument("--nprobe", type=int, default=256, help="lists searched in --index_file")
    parser.add_argument("--index_only", action="store_true", help="only the --index_file rows")
    return parser.parse_args()


def build_catalog(folder: Path, names: int) -> tuple[Path, float]:
    """Generate and ingest the names once; a kept folder with a catalog is reused."""
    from benchmarks.catalog_ingest import generate_names
    from data_catalog.ingest import main as ingest_main

    db = folder / "catalog.duckdb"
    if (folder / f".built-{names}").exists():
        return db, float("nan")
    listing = folder / "city_images_paths.txt"
    start = time.perf_counter()
    generate_names(names, listing)
    ingest_main(
        [str(listing), "--db", str(db), "--dataset", "city", "--no_progress", "--no_map_views"]
    )
    listing.unlink()
    (folder / f".built-{names}").touch()
    return db, time.perf_counter() - start


def store_map_views(db: Path) -> float:
    """The ingest's last step (data_catalog.map_views), timed on its own."""
    from data_catalog.map_views import main as map_views_main

    return timed(lambda: map_views_main(["--db", str(db), "--no_progress"]))[1]


def mb(count: int) -> float:
    return count / 1e6


def measure_map(db: Path, rows: list) -> object:
    from app.dataset_stats import figure_payload_bytes
    from app.group_separation import fig4_figure, group_separation
    from app.map_layers import (
        CompactDeck,
        MapSelection,
        build_map_layers,
        cell_images,
        compute_partition_view,
        deck_payload_bytes,
    )
    from app.street_layer import base_layer, catalog_street_squares
    from core.partition import PartitionParams

    other = PartitionParams(min_images_per_class=5)  # not stored: computed as the app does
    view, cold = timed(lambda: compute_partition_view(db, "city", other, "train"))
    rows.append(["Map", "partition at other parameters (computed, cached by the app)", cold,
                 "-", f"{len(view.cells):,} cells, {len(view.classes):,} classes"])  # fmt: skip

    def first_view():  # what the Map page does on its first view after the ingest
        view = compute_partition_view(db, "city", PartitionParams(), "train")
        squares = catalog_street_squares(db, "city")
        return view, squares, build_map_layers(view, MapSelection(), base_layer(squares))

    (view, squares, layers), seconds = timed(first_view)
    shapes = f"{layers.cells_drawn:,} shapes of {layers.factor}x{layers.factor} cells"
    shapes += f", {layers.wedges_drawn:,} wedges, {len(squares):,} street squares"
    rows.append(["Map", "first view after the ingest: stored partition + streets, drawn",
                 seconds, mb(deck_payload_bytes(layers.deck)), shapes])  # fmt: skip
    streets = mb(deck_payload_bytes(CompactDeck(layers=[base_layer(squares)])))
    rows.append(["Map", "  of which the street layer", "-", streets,
                 f"{len(squares):,} squares of {squares.side_m:g} m"])  # fmt: skip
    layers, seconds = timed(lambda: build_map_layers(view, MapSelection()))
    shapes = f"{layers.cells_drawn:,} shapes of {layers.factor}x{layers.factor} cells"
    payload = mb(deck_payload_bytes(layers.deck))
    shapes += f", {layers.wedges_drawn:,} wedges"
    rows.append(["Map", "open: whole map (partition cached)", seconds, payload, shapes])
    group = int(view.groups["classes"].idxmax())

    def group_view():
        drawn = build_map_layers(view, MapSelection(group=group))
        separation = group_separation(view, group)
        figure = fig4_figure(view, group)
        return drawn, separation, figure

    (drawn, separation, figure), seconds = timed(group_view)
    payload = deck_payload_bytes(drawn.deck) + figure_payload_bytes(figure)
    rows.append(["Map", "pick a group (+ Fig. 4)", seconds, mb(payload),
                 f"{drawn.cells_drawn:,} shapes, gap {separation.min_gap_m} m"])  # fmt: skip
    import json

    blocks = json.loads(layers.deck.to_json())["layers"][0]["data"]
    if layers.factor > 1:  # the fullest block ("N cells, ..." in its tooltip)
        block = max(blocks, key=lambda b: int(b["tip"].split(" cells")[0].replace(",", "")))
    else:
        block = blocks[0]
    focus = (block["cell_e"], block["cell_n"], block["level"])
    focused, seconds = timed(lambda: build_map_layers(view, MapSelection(focus=focus)))
    step = "click a block: its cells" if layers.factor > 1 else "focus one cell (no blocks)"
    rows.append(["Map", step, seconds, mb(deck_payload_bytes(focused.deck)),
                 f"{focused.cells_drawn:,} cells, {focused.wedges_drawn:,} wedges"])  # fmt: skip
    busiest = view.cells.loc[view.cells["images"].idxmax()]
    cell = (int(busiest["cell_e"]), int(busiest["cell_n"]))
    images, seconds = timed(lambda: cell_images(db, view, cell))
    rows.append(["Map", "click a cell: its images", seconds, "-", f"{len(images)} images listed"])
    return view


def measure_dataset(db: Path, view, rows: list) -> None:
    from app.dataset_stats import (
        compute_dataset_stats,
        coverage_deck,
        figure_payload_bytes,
        panoramas_per_cell_figure,
        panoramas_per_year_figure,
        splits_figure,
    )
    from app.map_layers import deck_payload_bytes

    stats, cold = timed(lambda: compute_dataset_stats(db, "city"))
    squares = f"{len(stats.coverage):,} coverage squares of {stats.coverage_side_m:g} m"
    rows.append(["Dataset", "catalog statistics (cached by the app)", cold, "-", squares])

    def page():
        figures = [
            splits_figure(stats),
            panoramas_per_year_figure(stats),
            panoramas_per_cell_figure(view.cells, view.params.M),
        ]
        return sum(figure_payload_bytes(f) for f in figures) + deck_payload_bytes(
            coverage_deck(stats)
        )

    payload, seconds = timed(page)
    rows.append(["Dataset", "open: 3 charts + coverage map", seconds, mb(payload), ""])


def write_failure_predictions(path: Path, queries: int, db: Path, k: int = 20) -> None:
    """predictions.csv of `queries` queries at positions of the catalog's images (SF-XL
    names), k predictions each: about a third with a top-1 a few metres away, the others
    anywhere in the city (what an evaluation of the real SF-XL test set leaves)."""
    import csv

    from data_catalog.catalog import connect
    from data_catalog.names import make_name

    with connect(db, read_only=True) as con:
        places = con.execute(
            "SELECT utm_east, utm_north FROM images USING SAMPLE 20000 ROWS (reservoir, 0)"
        ).fetchnumpy()
    utm = np.stack([places["utm_east"], places["utm_north"]], axis=1)
    rng = np.random.default_rng(0)

    def name(east: float, north: float, tag: str, heading: int | None) -> str:
        return make_name(east, north, 10, "S", 37.7, -122.5, pano_id=tag, heading=heading,
                         timestamp="201706")  # fmt: skip

    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["query", "rank", "prediction", "distance", "correct"])
        for q in range(queries):
            east, north = utm[q]
            query = f"queries_v1/{name(east, north, f'q{q:021d}', None)}"
            guesses = utm[rng.integers(len(utm), size=k)]
            if rng.random() < 0.35:
                guesses[0] = (east + rng.uniform(-8, 8), north + rng.uniform(-8, 8))
            for rank, (pe, pn) in enumerate(guesses):
                prediction = f"database/{name(pe, pn, f'd{q:010d}{rank:011d}', 30 * rank % 360)}"
                writer.writerow([query, rank, prediction, 0.5 + rank / 100, 0])


def measure_failures(folder: Path, database: int, queries: int, rows: list) -> None:
    """The Failures page at SF-XL's size: `queries` queries against a catalog of `database`
    images, whose positions make the street layer."""
    from app import failure_map as fm
    from app import street_layer
    from app.map_layers import deck_payload_bytes
    from app.results_view import load_predictions

    db, seconds = build_catalog(folder, database)
    rows.append(["(setup)", f"generate + ingest {database:,} database names", seconds, "-", ""])
    predictions_csv = folder / runs.PREDICTIONS
    write_failure_predictions(predictions_csv, queries, db)
    squares, cold = timed(lambda: street_layer.catalog_street_squares(db, "city"))
    rows.append(["Failures", f"street layer of {database:,} images (cached by the app)", cold,
                 "-", f"{len(squares):,} squares of {squares.side_m:g} m"])  # fmt: skip

    def first_draw():
        outcomes = fm.query_outcomes(load_predictions(predictions_csv), 25.0)
        options = fm.FailureMapOptions(base=street_layer.base_layer(squares))
        drawn = fm.failure_deck(outcomes, outcomes.frame, options)
        return outcomes, drawn, deck_payload_bytes(drawn.deck)

    (outcomes, drawn, payload), seconds = timed(first_draw)
    notes = f"{drawn.queries_drawn:,} queries + lines, {drawn.squares_drawn:,} squares"
    step = f"open: {queries:,} queries x 20 predictions, streets"
    rows.append(["Failures", step, seconds, mb(payload), notes])
    # Run B: the same answers with one in ten flipped.
    other = outcomes.frame.copy()
    flip = np.random.default_rng(1).random(len(other)) < 0.1
    other.loc[flip, "correct"] = ~other.loc[flip, "correct"]
    other["first_hit"] = np.where(other["correct"], 0.0, np.inf)

    def compare():
        comparison = fm.compare_runs(outcomes.frame, other)
        options = fm.FailureMapOptions(base=street_layer.base_layer(squares))
        return fm.failure_deck(outcomes, comparison.frame, options, comparison)

    diff, seconds = timed(compare)
    rows.append(["Failures", "compare with run B (difference layer)", seconds,
                 mb(deck_payload_bytes(diff.deck)), f"{flip.sum()} answers changed"])  # fmt: skip


def main() -> None:
    args = parse_arguments()
    rows: list = []
    if args.index_file:
        measure_index_file(args.index_file, args.nprobe, rows)
        if args.index_only:
            print_table(["page", "step", "seconds", "MB to browser", "notes"], rows)
            return
    with work_folder(None, "app_scale_failures_") as folder:
        measure_failures(folder, args.failures_database, args.failures_queries, rows)
    if args.failures_only:
        print_table(["page", "step", "seconds", "MB to browser", "notes"], rows)
        return
    if not args.skip_catalog:
        with work_folder(args.keep, "app_scale_") as folder:
            db, seconds = build_catalog(folder, args.names)
            rows.append(["(setup)", f"generate + ingest {args.names:,} names", seconds, "-", ""])
            stored_s = store_map_views(db)
            rows.append(["(ingest)", "store the Map's first view (the ingest's last step)",
                         stored_s, "-", "default partition + street squares"])  # fmt: skip
            view = measure_map(db, rows)
            measure_dataset(db, view, rows)
    measure_retrieval(args.database, rows)
    measure_match(rows)
    measure_space(args.space_database, rows)
    print_table(["page", "step", "seconds", "MB to browser", "notes"], rows)
    print(
        f"Goals: every page opens in < {OPEN_LIMIT_S:g} s once its partition is cached and sends "
        f"< {PAYLOAD_LIMIT_MB:g} MB; upload to results < 1 s at 100k."
    )


if __name__ == "__main__":
    main()
