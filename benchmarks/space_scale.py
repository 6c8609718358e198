"""Rows of benchmarks/app_scale for the Descriptor space page and the match heat maps.

Descriptor space at SF-XL size: an exact (flat) index of --space_database random unit
descriptors (512-D, 2.8M by default: SF-XL's test database, 5.7 GB of memory) beside
generated SF-XL names; the page's work from the sample of 20,000 rows to the plotly JSON,
with 1,000 saved query descriptors; extracting query descriptors in the app is timed on 64
photos of 640x480.

What a match rests on: the shipped demo model (ResNet-18) on a query and a database image
at 96 px (the demo's size), and at 512 px (SF-XL's), best of 5.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks.retrieval_scale import jpeg_upload
from benchmarks.table import best_time, timed

REPO = Path(__file__).resolve().parents[1]
DEMO_WEIGHTS = REPO / "models" / "demo" / "demo_model.pth"


def _flat_index(count: int, dim: int, rng):
    """A flat index of `count` random unit vectors, added in chunks (no second full copy)."""
    import faiss

    index = faiss.IndexFlatL2(dim)
    for start in range(0, count, 200_000):
        chunk = rng.standard_normal((min(200_000, count - start), dim), dtype=np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        index.add(chunk)
    return index


def _serving(count: int, rng):
    from app.retrieval import RunServing
    from benchmarks.catalog_ingest import generate_names
    from core.geo import UTMZone
    from core.index import IndexManifest
    from core.model import CosPlaceNet
    from data_catalog.name_table import parse_paths
    from data_catalog.serving import ServingDatabase

    with tempfile.TemporaryDirectory() as folder:
        listing = Path(folder) / "database_paths.txt"
        generate_names(count, listing, prefix="database/")
        paths = listing.read_text().splitlines()
    names, _ = parse_paths(paths)
    utm = np.stack([names.east, names.north], axis=1)
    database = ServingDatabase(Path("/absent"), paths, utm, UTMZone(10, "S"), None)
    model = CosPlaceNet("ResNet18", 512).eval()
    index = _flat_index(count, 512, rng)
    return RunServing("sfxl", model, index, IndexManifest("flat", 512, count), database)


def _photo_files(folder: Path, count: int, size: tuple[int, int], rng) -> list[str]:
    for i in range(count):
        (folder / f"q{i}.jpg").write_bytes(jpeg_upload(rng, size))
    return [str(folder / f"q{i}.jpg") for i in range(count)]


def measure_space(database: int, rows: list) -> None:
    from app import descriptor_space as space
    from app.dataset_stats import figure_payload_bytes
    from app.space_colours import colour_points
    from core.partition import PartitionParams

    rng = np.random.default_rng(0)
    serving, seconds = timed(lambda: _serving(database, rng))
    rows.append(["(setup)", f"{database:,} names + flat index of 512-D", seconds, "-", ""])

    def sample():
        picked = space.sample_rows(serving.index.ntotal, space.DEFAULT_POINTS)
        return space.database_points(serving, picked)

    points, cold = timed(sample)
    rows.append(["Space", f"sample {len(points):,} of {database:,}: descriptors + names",
                 cold, "-", "cached by the app"])  # fmt: skip
    queries = space.SpacePoints(
        "query",
        [f"q{i}.jpg" for i in range(1000)],
        rng.standard_normal((1000, 512)).astype(np.float32),
        points.east[:1000] + 5.0,
        points.north[:1000],
        np.full(1000, np.nan),
        np.full(1000, 2017),
    )

    def draw():
        projection = space.fit_pca(points.descriptors)
        centre = (float(np.nanmean(points.east)), float(np.nanmean(points.north)))
        drawn = []
        for kind in (points, queries):
            colouring = colour_points(kind, "group", PartitionParams(), centre)
            drawn.append((kind, projection(kind.descriptors), colouring))
        return space.space_figure(drawn, projection)

    figure, seconds = timed(draw)
    rows.append(["Space", "PCA + colours + figure (+1,000 saved queries)", seconds,
                 figure_payload_bytes(figure) / 1e6, "what a rerun costs"])  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        files = _photo_files(Path(folder), 64, (640, 480), rng)
        _, seconds = timed(
            lambda: space.extract_query_descriptors(serving.model, files, resize=None)
        )
    cap = space.MAX_EXTRACTED_QUERIES
    note = f"{cap} (the app's cap): about {seconds / 64 * cap:.0f} s"
    rows.append(["Space", "extract 64 queries of 640x480 in the app", seconds, "-", note])


def measure_match(rows: list) -> None:
    import torch
    from PIL import Image

    from app.match_heatmap import match_overlays
    from core.model import CosPlaceNet, model_from_checkpoint

    if DEMO_WEIGHTS.is_file():
        model, label = model_from_checkpoint(DEMO_WEIGHTS).eval(), "demo model"
    else:
        torch.manual_seed(0)
        model, label = CosPlaceNet("ResNet18", 512).eval(), "random ResNet-18"
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        for resize, size in ((96, (160, 120)), (512, (640, 480))):
            match_file = _photo_files(Path(folder), 1, size, rng)[0]
            query = Image.open(match_file).convert("RGB")
            overlays = partial(match_overlays, model, query, match_file, resize)
            overlays()  # the first run initialises lazily: not timed
            best = best_time(overlays, 5)
            rows.append(["Retrieve", f"what a match rests on, {label}, {resize} px", best, "-",
                         "2 heat maps + overlays, best of 5"])  # fmt: skip
