"""The DuckDB catalog: ingest (idempotent, atomic, malformed names kept aside) and its queries."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest

from core.geo import MixedUTMZoneError, UTMZone, utm_to_latlon
from core.partition import PartitionParams, partition
from data_catalog import catalog, catalog_partition
from data_catalog.ingest import ingest, main, resolve_source
from data_catalog.ingest_stages import LAYOUT_REASON
from data_catalog.names import make_name, parse_name

ZONE = UTMZone(10, "S")
ROOT_DIR = Path(__file__).resolve().parents[1]
# Train spots inside San Francisco: each holds PANOS panoramas of 12 crops (one per 30 deg),
# so each of its 12 classes has PANOS images; the lonely spot's classes get dropped.
SPOTS = [(543_105.0, 4_175_105.0), (548_005.0, 4_180_005.0), (551_234.5, 4_182_345.5)]
LONELY = (554_001.0, 4_184_001.0)
PANOS = 10
YEARS = (2013, 2014, 2015, 2016, 2017, 2018, 2019, 2020, 2021, 2022)
SUBSET_SIZES = {
    ("val", "database"): 5,
    ("val", "queries"): 3,
    ("test", "database"): 4,
    ("test", "queries_v1"): 2,
    ("test", "queries_v2"): 2,
}
TRAIN_IMAGES = (len(SPOTS) * PANOS + 2) * 12


def name_at(east: float, north: float, heading=None, pano_id="", timestamp="", zone=ZONE) -> str:
    lat, lon = utm_to_latlon([east], [north], zone)
    return make_name(
        east,
        north,
        zone.number,
        zone.letter,
        float(lat[0]),
        float(lon[0]),
        pano_id=pano_id,
        heading=heading,
        timestamp=timestamp,
    )


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def write_dataset(root: Path) -> Path:
    """A tiny SF-XL tree: nested train folders (one with '@'), val/test subsets, bad names."""
    for spot, (east, north) in enumerate([*SPOTS, LONELY]):
        panos = 2 if spot == len(SPOTS) else PANOS
        folder = "a@b" if spot == 1 else f"spot{spot}"
        for pano in range(panos):
            year = YEARS[pano]
            for crop in range(12):
                name = name_at(east, north, 15 + 30 * crop, f"pano{spot}x{pano}", f"{year}06")
                _touch(root / "train" / folder / str(year) / name)
    for (split, subset), count in SUBSET_SIZES.items():
        for index in range(count):
            heading = None if subset == "queries_v1" else 90
            name = name_at(
                546_000.0 + 7 * index, 4_178_000.0, heading, f"{subset}{index}", "201905"
            )
            _touch(root / split / subset / name)
    _touch(root / "train" / "spot0" / "not_a_name.jpg")
    _touch(root / "train" / "spot0" / "@0543037.38@4180974.80@10@S.jpg")
    _touch(root / "val" / "database" / name_at(546_000.0, 4_178_000.0, 90).replace("@10@", "@61@"))
    _touch(root / "loose" / name_at(546_000.0, 4_178_000.0, 90))  # outside train/val/test
    _touch(root / "train" / "README.txt")  # not an image: ignored
    return root


MALFORMED_COUNT = 4


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "sfxl")


@pytest.fixture(scope="module")
def ingested(dataset_dir, tmp_path_factory):
    """A read-only look at a catalog holding the tiny dataset (shared by the query tests)."""
    db = tmp_path_factory.mktemp("catalog") / "catalog.duckdb"
    con = catalog.connect(db)
    ingest(con, dataset_dir, progress=False)
    yield con
    con.close()


def counts(con) -> tuple:
    return tuple(
        con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        for table in ("images", "malformed_names", "datasets")
    )


# --- ingest ----------------------------------------------------------------------------------


def test_ingest_catalogues_every_split_and_subset(ingested):
    per_subset = dict(
        ingested.execute(
            "SELECT split || '/' || subset, count(*) FROM images GROUP BY 1"
        ).fetchall()
    )
    expected = {f"{split}/{subset}": count for (split, subset), count in SUBSET_SIZES.items()}
    assert per_subset == {"train/train": TRAIN_IMAGES, **expected}
    row = ingested.execute(
        "SELECT * FROM images WHERE path LIKE 'train/a@b/%' ORDER BY path LIMIT 1"
    ).df()
    name = parse_name(row["path"][0])
    assert row["utm_east"][0] == name.east and row["heading"][0] == name.heading_deg
    assert row["year"][0] == name.year and row["dataset"][0] == "sfxl"
    assert ingested.execute(
        "SELECT count(*) FROM images WHERE subset = 'queries_v1' AND heading IS NULL"
    ).fetchall() == [(2,)]
    datasets = catalog.list_datasets(ingested)
    assert set(datasets["utm_zone_number"]) == {10}


def test_malformed_names_are_kept_with_reasons(ingested):
    bad = catalog.malformed_names(ingested, "sfxl")
    reasons = dict(zip(bad["path"], bad["reason"], strict=True))
    assert len(reasons) == MALFORMED_COUNT
    assert "found 0" in reasons["train/spot0/not_a_name.jpg"]
    assert "found 4" in reasons["train/spot0/@0543037.38@4180974.80@10@S.jpg"]
    assert any("utm_zone_number" in reason for reason in reasons.values())
    assert any(reason == LAYOUT_REASON for reason in reasons.values())


def test_cli_prints_the_malformed_count(dataset_dir, tmp_path, capsys):
    main([str(dataset_dir), "--db", str(tmp_path / "c.duckdb"), "--no_progress"])  # no exit
    out = capsys.readouterr().out
    assert f"{TRAIN_IMAGES + sum(SUBSET_SIZES.values())} images added" in out
    assert f"{MALFORMED_COUNT} malformed names" in out


def test_reingest_adds_nothing(dataset_dir, tmp_path):
    con = catalog.connect(tmp_path / "c.duckdb")
    first = ingest(con, dataset_dir, progress=False)
    before = counts(con)
    again = ingest(con, dataset_dir, progress=False)
    assert again.added == 0 and again.malformed == 0
    assert again.already_present == first.names
    # The same files reached through a sub-folder or a path list are the same rows.
    assert ingest(con, dataset_dir / "val" / "database", progress=False).added == 0
    listing = dataset_dir / "train_images_paths.txt"
    train = sorted(
        p.relative_to(dataset_dir / "train")
        for p in (dataset_dir / "train").rglob("*@*")
        if p.is_file()
    )
    listing.write_text("".join(f"{p.as_posix()}\n" for p in train))
    source = resolve_source(listing)
    assert source.prefix == "train/" and source.list_file == listing
    assert ingest(con, listing, dataset="sfxl", progress=False).added == 0
    assert counts(con) == before


def test_path_list_gives_the_same_rows_as_the_walk(dataset_dir, tmp_path, ingested):
    files = sorted(p for p in dataset_dir.rglob("*") if p.is_file() and p.suffix == ".jpg")
    listing = tmp_path / "sfxl_images_paths.txt"
    # The reference's lists: one path per line relative to the folder, CRLF and blanks ok.
    listing.write_text("\r\n".join(p.relative_to(dataset_dir).as_posix() for p in files) + "\n\n")
    con = catalog.connect(tmp_path / "c.duckdb")
    result = ingest(con, listing, dataset="sfxl", progress=False)
    assert (result.added, result.malformed) == (counts(ingested)[0], MALFORMED_COUNT)
    query = "SELECT * EXCLUDE (image_id) FROM images ORDER BY path"
    assert con.execute(query).df().equals(ingested.execute(query).df())


def test_duplicate_lines_in_a_list_are_one_image(tmp_path):
    line = f"train/{name_at(*SPOTS[0], 30)}\n"
    listing = tmp_path / "dup_images_paths.txt"
    listing.write_text(line * 3)
    con = catalog.connect(tmp_path / "c.duckdb")
    assert ingest(con, listing, progress=False).added == 1


class Interrupt(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("stage", ["counted", "inserted", "fallback", "checked"])
def test_interrupted_ingest_leaves_the_catalog_unchanged(dataset_dir, tmp_path, stage):
    con = catalog.connect(tmp_path / "c.duckdb")
    ingest(con, dataset_dir / "val" / "queries", progress=False)
    before = counts(con)

    def interrupt(reached: str) -> None:
        if reached == stage:
            raise Interrupt(stage)

    with pytest.raises(Interrupt):
        ingest(con, dataset_dir, progress=False, on_stage=interrupt)
    assert counts(con) == before
    assert ingest(con, dataset_dir, progress=False).added > 0  # and a retry works


def test_query_interrupted_mid_insert_rolls_back(tmp_path):
    """Ctrl-C lands inside DuckDB's bulk INSERT: the ingest raises KeyboardInterrupt."""
    listing = tmp_path / "many_images_paths.txt"
    name = name_at(*SPOTS[0], 30)
    listing.write_text("".join(f"train/{i}/{name}\n" for i in range(200_000)))
    con = catalog.connect(tmp_path / "c.duckdb")
    stop = threading.Event()

    def keep_interrupting() -> None:
        while not stop.wait(0.005):
            con.interrupt()  # what DuckDB does on SIGINT; a no-op between queries

    def start_interrupting(stage: str) -> None:
        if stage == "counted":
            threading.Thread(target=keep_interrupting, daemon=True).start()

    with pytest.raises(KeyboardInterrupt):
        ingest(con, listing, progress=False, on_stage=start_interrupting)
    stop.set()
    assert counts(con) == (0, 0, 0)
    assert ingest(con, listing, progress=False).added == 200_000  # the connection still works


def test_killed_ingest_leaves_the_catalog_unchanged(dataset_dir, tmp_path):
    """A process killed mid-ingest (no rollback runs) leaves the file as it was."""
    db = tmp_path / "c.duckdb"
    con = catalog.connect(db)
    ingest(con, dataset_dir / "val" / "queries", progress=False)
    before = counts(con)
    con.close()
    script = textwrap.dedent(
        f"""
        import os, signal
        from data_catalog import catalog
        from data_catalog.ingest import ingest

        def die(stage):
            if stage == "inserted":
                os.kill(os.getpid(), signal.SIGKILL)

        con = catalog.connect({str(db)!r})
        ingest(con, {str(dataset_dir)!r}, progress=False, on_stage=die)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT_DIR, timeout=60)
    assert done.returncode == -9
    con = catalog.connect(db)
    assert counts(con) == before


def test_mixed_zones_are_refused_and_roll_back(tmp_path):
    root = tmp_path / "mixed"
    _touch(root / "train" / name_at(*SPOTS[0], 30))
    _touch(root / "train" / name_at(500_000.0, 4_175_000.0, 30, zone=UTMZone(11, "S")))
    con = catalog.connect(tmp_path / "c.duckdb")
    with pytest.raises(MixedUTMZoneError):
        ingest(con, root, progress=False)
    assert counts(con) == (0, 0, 0)


def test_a_dataset_name_is_bound_to_one_root(dataset_dir, tmp_path):
    other = tmp_path / "elsewhere" / "sfxl"
    _touch(other / "train" / name_at(*SPOTS[0], 30))
    con = catalog.connect(tmp_path / "c.duckdb")
    ingest(con, dataset_dir / "val" / "queries", progress=False)
    with pytest.raises(ValueError, match="already in the catalog"):
        ingest(con, other, progress=False)
    assert ingest(con, other, dataset="sfxl2", progress=False).added == 1


def test_a_split_sub_folder_is_ingested_as_that_part(dataset_dir, tmp_path):
    con = catalog.connect(tmp_path / "c.duckdb")
    part = ingest(con, dataset_dir / "train" / "spot2" / "2013", progress=False)
    assert (part.dataset, part.added, part.malformed) == ("sfxl", 12, 0)
    paths = [row[0] for row in con.execute("SELECT path FROM images").fetchall()]
    assert all(path.startswith("train/spot2/2013/") for path in paths)
    # The rest comes with the root; what is there already is not added twice.
    whole = ingest(con, dataset_dir, progress=False)
    assert whole.already_present == 12
    assert counts(con)[0] == TRAIN_IMAGES + sum(SUBSET_SIZES.values())


def test_a_folder_outside_any_dataset_is_refused(tmp_path):
    loose = tmp_path / "photos" / "2013"
    _touch(loose / name_at(*SPOTS[0], 30))
    con = catalog.connect(tmp_path / "c.duckdb")
    with pytest.raises(ValueError) as caught:
        ingest(con, loose, progress=False)
    assert str(caught.value) == (
        f"{loose} is neither a dataset root (a folder holding train/, val/ or test/) nor "
        "inside one of its splits; give the dataset root or one of its split folders"
    )
    assert counts(con) == (0, 0, 0)
    con.close()  # the command opens the catalog itself
    with pytest.raises(SystemExit) as exit_info:
        main([str(loose), "--db", str(tmp_path / "c.duckdb"), "--no_progress"])
    assert exit_info.value.code == 1


def test_an_empty_folder_is_refused_and_leaves_nothing(tmp_path, capsys):
    empty = tmp_path / "new" / "train"
    empty.mkdir(parents=True)
    (empty / "notes.txt").touch()
    db = tmp_path / "c.duckdb"
    with pytest.raises(SystemExit) as exit_info:
        main([str(empty), "--db", str(db), "--no_progress"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {empty} holds no image files (.bmp, .jpeg, .jpg, .png, .tif, .tiff, .webp); "
        "give a folder of SF-XL images or a *_images_paths.txt list"
    )
    assert counts(catalog.connect(db)) == (0, 0, 0)


def test_absolute_paths_in_a_list(dataset_dir, tmp_path):
    train = dataset_dir / "train"
    inside = sorted(p for p in train.rglob("*@*.jpg"))[:5]
    outside = tmp_path / "other" / "train" / name_at(*SPOTS[0], 30)
    listing = tmp_path / "copy" / "train_images_paths.txt"
    listing.parent.mkdir()
    (listing.parent / "train").symlink_to(train)
    lines = [str(listing.parent / "train" / p.relative_to(train)) for p in inside]
    listing.write_text("\n".join([*lines, str(outside)]) + "\n")
    con = catalog.connect(tmp_path / "c.duckdb")
    result = ingest(con, listing, progress=False)
    assert (result.added, result.malformed) == (5, 1)
    stored = sorted(row[0] for row in con.execute("SELECT path FROM images").fetchall())
    assert stored == sorted(f"train/{p.relative_to(train).as_posix()}" for p in inside)
    bad = catalog.malformed_names(con)
    assert bad["reason"].tolist() == [
        f"path outside {listing.parent / 'train'} (absolute, or climbing out with ../); "
        "list paths relative to train/"
    ]


def test_the_root_reads_a_split_from_its_list(dataset_dir, tmp_path):
    root = tmp_path / "listed"
    shutil.copytree(dataset_dir, root)
    first = sorted(p.relative_to(root / "train") for p in (root / "train").rglob("*@*.jpg"))[:7]
    (root / "train_images_paths.txt").write_text("".join(f"{p.as_posix()}\n" for p in first))
    con = catalog.connect(tmp_path / "c.duckdb")
    ingest(con, root, progress=False)
    train = con.execute("SELECT count(*) FROM images WHERE split = 'train'").fetchall()[0][0]
    assert train == 7
    assert counts(con)[0] == 7 + sum(SUBSET_SIZES.values())
    # A split folder reads its subsets' lists too.
    database = sorted(p.name for p in (root / "val" / "database").glob("@*@10@*.jpg"))[:2]
    (root / "val" / "database_images_paths.txt").write_text("\n".join(database) + "\n")
    con = catalog.connect(tmp_path / "val.duckdb")
    ingest(con, root / "val", progress=False)
    rows = dict(con.execute("SELECT subset, count(*) FROM images GROUP BY subset").fetchall())
    assert rows == {"database": 2, "queries": SUBSET_SIZES[("val", "queries")]}


# --- queries ---------------------------------------------------------------------------------


def test_partition_matches_core_partition(ingested):
    params = PartitionParams()
    result = catalog_partition.partition_images(ingested, "sfxl", params)
    path_of = dict(ingested.execute("SELECT image_id, path FROM images").fetchall())
    names = [parse_name(path_of[image_id]) for image_id in result.image_ids]
    direct = partition(
        [n.east for n in names], [n.north for n in names], [n.heading_deg for n in names], params
    )
    assert len(result.image_ids) == TRAIN_IMAGES
    np.testing.assert_array_equal(result.partition.image_class, direct.image_class)
    np.testing.assert_array_equal(result.partition.class_keys, direct.class_keys)
    np.testing.assert_array_equal(result.partition.group_offsets, direct.group_offsets)
    assert result.partition.num_classes == len(SPOTS) * 12  # the lonely spot's are dropped


def test_class_and_group_summaries(ingested):
    part = catalog_partition.partition_images(ingested, "sfxl").partition
    classes = catalog_partition.class_summary(part)
    assert len(classes) == part.num_classes and (classes["images"] == PANOS).all()
    assert set(classes["heading_min"]) == set(range(0, 360, 30))
    groups = catalog_partition.group_summary(part)
    assert len(groups) == PartitionParams().num_groups
    assert groups["classes"].sum() == part.num_classes
    assert groups["images"].sum() == len(SPOTS) * PANOS * 12
    by_size = catalog_partition.partition_images(
        ingested, "sfxl", PartitionParams(group_order="size")
    )
    assert catalog_partition.group_summary(by_size.partition)["classes"].is_monotonic_decreasing


def test_catalog_groups_are_numbered_as_training_numbers_them(ingested, dataset_dir):
    from training.data import load_train_set

    params = PartitionParams()
    ours = catalog_partition.partition_images(ingested, "sfxl", params).partition
    walked = load_train_set(dataset_dir / "train", params, progress=False).partition
    np.testing.assert_array_equal(ours.group_keys, walked.group_keys)
    np.testing.assert_array_equal(ours.class_keys, walked.class_keys)


def test_cell_summary_and_panoramas(ingested):
    cells = catalog_partition.cell_summary(ingested, "sfxl")
    assert len(cells) == len(SPOTS) + 1
    assert cells["images"].sum() == TRAIN_IMAGES
    assert sorted(cells["panoramas"]) == [2, PANOS, PANOS, PANOS]
    lonely = cells[cells["panoramas"] == 2].iloc[0]
    assert (lonely["classes"], lonely["kept_images"]) == (0, 0)
    assert set(cells.loc[cells["panoramas"] == PANOS, "classes"]) == {12}
    histogram = catalog_partition.panoramas_per_cell(cells)
    assert dict(zip(histogram["panoramas"], histogram["cells"], strict=True)) == {2: 1, PANOS: 3}


def test_images_per_year(ingested):
    years = catalog.images_per_year(ingested, "sfxl")
    train = years[years["split"] == "train"].set_index("year")
    assert train.loc[2013, "images"] == (len(SPOTS) + 1) * 12
    assert train.loc[2020, "images"] == len(SPOTS) * 12
    assert train.loc[2013, "panoramas"] == len(SPOTS) + 1
    assert years["images"].sum() == counts(ingested)[0]


def test_images_in_bbox(ingested):
    lat, lon = utm_to_latlon([SPOTS[1][0]], [SPOTS[1][1]], ZONE)
    box = catalog.images_in_bbox(
        ingested, lat[0] - 1e-3, lon[0] - 1e-3, lat[0] + 1e-3, lon[0] + 1e-3
    )
    assert len(box) == PANOS * 12 and set(box["split"]) == {"train"}
    assert box["path"].str.startswith("train/a@b/").all()
    assert len(catalog.images_in_bbox(ingested, 37.0, -123.0, 38.5, -122.0, split="val")) == 8
    assert len(catalog.images_in_bbox(ingested, 37.0, -123.0, 38.5, -122.0, limit=5)) == 5
    with pytest.raises(ValueError, match="empty box"):
        catalog.images_in_bbox(ingested, 38.0, -123.0, 37.0, -122.0)


def test_cells_export_as_geojson_and_parquet(ingested, tmp_path):
    path = catalog_partition.export_cells(ingested, "sfxl", tmp_path / "cells.geojson")
    document = json.loads(path.read_text())
    assert document["type"] == "FeatureCollection"
    assert len(document["features"]) == len(SPOTS) + 1
    cells = gpd.read_file(path)
    assert len(cells) == len(SPOTS) + 1 and cells.geometry.is_valid.all()
    # Each cell is a ~10 m square around its images, in lat/lon.
    lat, lon = utm_to_latlon([SPOTS[0][0]], [SPOTS[0][1]], ZONE)
    holding = cells[cells.geometry.contains(gpd.points_from_xy(lon, lat)[0])]
    assert len(holding) == 1 and holding.iloc[0]["images"] == PANOS * 12
    side = holding.to_crs("EPSG:32610").geometry.iloc[0].length / 4
    assert side == pytest.approx(10.0, abs=0.01)
    parquet = gpd.read_parquet(
        catalog_partition.export_cells(ingested, "sfxl", tmp_path / "c.parquet")
    )
    assert len(parquet) == len(SPOTS) + 1 and parquet.crs.to_epsg() == 4326
    with pytest.raises(ValueError, match="exported as"):
        catalog_partition.export_cells(ingested, "sfxl", tmp_path / "cells.csv")


def test_read_only_connection_needs_an_existing_catalog(tmp_path):
    with pytest.raises(FileNotFoundError, match="no catalog"):
        catalog.connect(tmp_path / "missing.duckdb", read_only=True)
