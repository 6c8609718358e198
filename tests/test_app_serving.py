"""Serving and the app's plain logic: build_index, the manifest check, map geometry, retrieval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from app_fixtures import INDEX_FLAGS, copy_run, jpeg_with_gps, save_random_run, workspace_once

from app.group_separation import group_separation
from app.map_layers import (
    MAX_SHAPES,
    MapSelection,
    PartitionView,
    aggregation_factor,
    build_map_layers,
    deck_payload_bytes,
    square_rings,
    wedge_rings,
)
from app.retrieval import ServingError, decode_query, load_run_serving, retrieve
from core.geo import UTMZone, latlon_to_utm
from core.partition import PartitionParams, partition
from data_catalog import catalog_partition
from training.build_index import EXACT_LIMIT, choose_index_type
from training.build_index import main as build_index_main

ZONE = UTMZone(10, "S")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_city):
    return workspace_once(tmp_path_factory, tiny_city)


# --- training.build_index -------------------------------------------------------------------


def test_build_index_writes_manifest_and_database_table(workspace, tiny_city):
    index_dir = workspace / "runs" / "tiny" / "index"
    manifest = json.loads((index_dir / "index_manifest.json").read_text())
    assert manifest["index_type"] == "flat" and manifest["count"] == 96 and manifest["dim"] == 16
    serving = load_run_serving(workspace / "runs" / "tiny")
    assert serving.database.root == (tiny_city / "test" / "database").resolve()
    assert len(serving.database.paths) == 96 and serving.database.utm.shape == (96, 2)
    assert serving.database.resize_shorter_side == 32
    assert serving.database.zone == ZONE


def test_build_index_hnsw_is_served(workspace, tmp_path, tiny_city):
    run = copy_run(workspace / "runs" / "tiny", tmp_path / "hnsw")
    database = str(tiny_city / "test" / "database")
    argv = ["--run_dir", str(run), "--database_folder", database, "--index_type", "hnsw"]
    build_index_main([*argv, *INDEX_FLAGS, "--overwrite"])
    serving = load_run_serving(run)
    assert serving.manifest.index_type == "hnsw" and serving.index.ntotal == 96


def test_build_index_keeps_an_existing_index_unless_overwrite(
    workspace, tmp_path, tiny_city, capsys
):
    run = copy_run(workspace / "runs" / "tiny", tmp_path / "kept")
    before = (run / "index" / "index_manifest.json").read_bytes()
    argv = ["--run_dir", str(run), "--database_folder", str(tiny_city / "test" / "database")]
    with pytest.raises(SystemExit) as stop:
        build_index_main([*argv, "--index_type", "hnsw", *INDEX_FLAGS])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "already holds an index" in err and "--overwrite" in err
    assert (run / "index" / "index_manifest.json").read_bytes() == before


@pytest.mark.parametrize("flag", ["--pq_m", "--infer_batch_size", "--nprobe", "--image_size"])
def test_build_index_flag_values_that_cannot_work_are_one_sentence(tmp_path, flag, capsys):
    with pytest.raises(SystemExit) as stop:
        build_index_main(
            ["--run_dir", str(tmp_path), "--database_folder", str(tmp_path), flag, "0"]
        )
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"{flag} 0 is too small: give a value of at least 1" in err
    assert "Traceback" not in err


def test_build_index_from_descriptor_shards_is_served(workspace, tmp_path, tiny_city, capsys):
    from core.index_stream import write_shards

    source = load_run_serving(workspace / "runs" / "tiny")
    descriptors = source.index.reconstruct_n(0, source.index.ntotal)  # the flat index's rows
    run = copy_run(workspace / "runs" / "tiny", tmp_path / "sharded")
    write_shards(tmp_path / "shards", [descriptors[:40], descriptors[40:]])
    database = str(tiny_city / "test" / "database")
    argv = ["--run_dir", str(run), "--database_folder", database, "--overwrite"]
    build_index_main([*argv, "--descriptors", str(tmp_path / "shards"), "--index_type", "flat"])
    serving = load_run_serving(run)
    assert serving.manifest.count == 96 and serving.manifest.index_type == "flat"
    np.testing.assert_array_equal(serving.index.reconstruct_n(0, 96), descriptors)
    assert not (run / "index_build").exists()  # the work folder goes once the index is saved
    write_shards(tmp_path / "short", [descriptors[:40]])
    with pytest.raises(SystemExit):
        build_index_main([*argv, "--descriptors", str(tmp_path / "short")])
    err = capsys.readouterr().err
    assert "holds 40 descriptors but" in err and "96 images" in err and "Traceback" not in err


def test_build_index_extracts_missing_shards_then_indexes_them(
    workspace, tmp_path, tiny_city, capsys
):
    source = load_run_serving(workspace / "runs" / "tiny")
    descriptors = source.index.reconstruct_n(0, source.index.ntotal)
    run = copy_run(workspace / "runs" / "tiny", tmp_path / "extracted")
    shards = tmp_path / "shards"
    database = str(tiny_city / "test" / "database")
    argv = ["--run_dir", str(run), "--database_folder", database, *INDEX_FLAGS, "--overwrite"]
    argv += ["--descriptors", str(shards), "--shard_rows", "40", "--index_type", "flat"]
    build_index_main(argv)
    assert sorted(p.name for p in shards.glob("shard_*.npy")) == [
        "shard_00000.npy",
        "shard_00001.npy",
        "shard_00002.npy",
    ]
    serving = load_run_serving(run)
    # The same descriptors as the in-memory extraction, stored in float16.
    np.testing.assert_allclose(serving.index.reconstruct_n(0, 96), descriptors, atol=2e-3)
    # A shard lost (an interrupted extraction) is extracted again; the others are kept.
    kept = (shards / "shard_00000.npy").stat().st_mtime_ns
    (shards / "shard_00002.npy").unlink()
    build_index_main(argv)
    assert (shards / "shard_00002.npy").is_file()
    assert (shards / "shard_00000.npy").stat().st_mtime_ns == kept
    # Shards of another model are refused, not mixed in.
    save_random_run(run, seed=3)
    with pytest.raises(SystemExit):
        build_index_main(argv)
    err = capsys.readouterr().err
    assert "holds descriptor shards of another model" in err and "Traceback" not in err


def test_auto_index_is_exact_below_a_million():
    assert choose_index_type("auto", EXACT_LIMIT - 1) == "flat"
    assert choose_index_type("auto", EXACT_LIMIT) == "ivf_pq"
    # The graph quantizer is by flag only: measured, it did not win a build (README).
    assert choose_index_type("auto", 41_200_000) == "ivf_pq"
    assert choose_index_type("ivf_hnsw_pq", 10) == "ivf_hnsw_pq"
    assert choose_index_type("hnsw", 10) == "hnsw"


def test_build_index_user_mistakes_are_one_sentence(tmp_path, tiny_city, capsys):
    def error_of(argv: list[str]) -> str:
        with pytest.raises(SystemExit) as exit_info:
            build_index_main(argv)
        assert exit_info.value.code == 1
        return capsys.readouterr().err

    err = error_of(["--run_dir", str(tmp_path), "--database_folder", str(tmp_path)])
    assert "best_model.pth not found: train the run first" in err
    run = save_random_run(tmp_path / "run")
    err = error_of(["--run_dir", str(run), "--database_folder", str(tmp_path / "nowhere")])
    assert "is not a folder" in err
    (tmp_path / "empty").mkdir()
    err = error_of(["--run_dir", str(run), "--database_folder", str(tmp_path / "empty")])
    assert "holds no SF-XL named images" in err


def test_serving_refuses_index_of_other_model_and_names_the_fix(workspace, tmp_path):
    run = copy_run(workspace / "runs" / "tiny", tmp_path / "swapped")
    save_random_run(run, seed=7)
    with pytest.raises(ServingError, match="model weights") as error:
        load_run_serving(run)
    assert "python -m training.build_index --run_dir" in str(error.value)


def test_serving_refuses_database_table_of_other_images(workspace, tmp_path):
    import pyarrow.parquet as pq

    run = copy_run(workspace / "runs" / "tiny", tmp_path / "edited")
    table = pq.read_table(run / "index" / "database.parquet")
    pq.write_table(table.slice(0, 95), run / "index" / "database.parquet")  # one row gone
    with pytest.raises(ServingError, match="database"):
        load_run_serving(run)


def test_run_without_index_names_the_command(tmp_path):
    run = save_random_run(tmp_path / "fresh")
    with pytest.raises(ServingError, match="no retrieval index yet; build it with python -m"):
        load_run_serving(run)


# --- retrieval ------------------------------------------------------------------------------


def test_gps_query_gets_distances_and_top1_error(workspace, tiny_city):
    from data_catalog.names import parse_name

    serving = load_run_serving(workspace / "runs" / "tiny")
    target = parse_name(sorted((tiny_city / "test" / "database").iterdir())[0].name)
    query = decode_query(jpeg_with_gps(target.latitude, target.longitude), "phone.jpg", ZONE)
    assert query.position_source == "EXIF GPS"
    assert np.hypot(query.position[0] - target.east, query.position[1] - target.north) < 1.0
    outcome = retrieve(serving, query, k=7, threshold_m=25.0)
    results = outcome.results
    assert list(results["rank"]) == list(range(1, 8))
    assert results["similarity"].is_monotonic_decreasing
    assert (results["similarity"] <= 1.0 + 1e-5).all()
    expected = np.hypot(results["east"] - target.east, results["north"] - target.north)
    np.testing.assert_allclose(results["distance_m"], expected, atol=1.0)
    assert (results["correct"] == (results["distance_m"] <= 25.0)).all()
    assert outcome.top1_error_m == pytest.approx(results["distance_m"].iloc[0])
    assert outcome.predicted == (results["east"].iloc[0], results["north"].iloc[0])


def test_query_without_position_has_no_marks(workspace):
    from app_fixtures import image_bytes

    serving = load_run_serving(workspace / "runs" / "tiny")
    query = decode_query(image_bytes("PNG"), "street.png", ZONE)
    assert query.position is None
    outcome = retrieve(serving, query, k=3)
    assert "correct" not in outcome.results and outcome.top1_error_m is None


def test_retrieval_deck_draws_a_base_layer_first():
    from PIL import Image

    from app.retrieval import Query, Retrieval, retrieval_deck
    from app.street_layer import base_layer
    from data_catalog.map_views import street_squares

    east, north = np.array([549_700.0, 549_720.0]), np.array([4_180_100.0, 4_180_130.0])
    results = pd.DataFrame(
        {"rank": [1, 2], "similarity": [0.9, 0.8], "east": east, "north": north,
         "distance_m": [3.0, 30.0], "correct": [True, False]}
    )  # fmt: skip
    query = Query("q.jpg", Image.new("RGB", (8, 8)), (549_701.0, 4_180_101.0), "EXIF GPS")
    outcome = Retrieval(results, (east[0], north[0]), 3.0, 0.01)
    plain = retrieval_deck(query, outcome, ZONE)
    assert [layer.id for layer in plain.layers] == ["results", "prediction", "query"]
    base = base_layer(street_squares(east, north, ZONE))
    deck = retrieval_deck(query, outcome, ZONE, base)
    assert [layer.id for layer in deck.layers] == ["streets", "results", "prediction", "query"]
    assert deck.layers[0] is base


def test_corrupt_upload_names_the_file(workspace):
    from core.images import ImageError

    with pytest.raises(ImageError, match="broken.webp"):
        decode_query(b"RIFF0000WEBPnot really", "broken.webp", ZONE)


# --- map geometry and server-side aggregation -----------------------------------------------


def test_cells_are_true_utm_squares():
    rings = square_rings(np.array([549070.0]), np.array([4180080.0]), 10.0, ZONE)
    lat, lon = rings[0, :, 1], rings[0, :, 0]
    east, north, _ = latlon_to_utm(lat, lon, force_zone=ZONE)
    sides = np.hypot(np.diff(east), np.diff(north))
    np.testing.assert_allclose(sides, 10.0, atol=0.05)  # 6-decimal rounding: ~0.1 m
    assert tuple(rings[0, 0]) == tuple(rings[0, -1])


def test_wedge_points_along_its_heading():
    classes = pd.DataFrame({"cell_e": [54907], "cell_n": [418008], "heading_class": [3]})
    ring = wedge_rings(classes, PartitionParams(), ZONE)[0]  # 90-120 deg: east, south-east
    east, north, _ = latlon_to_utm(ring[:, 1], ring[:, 0], force_zone=ZONE)
    centre = np.array([549075.0, 4180085.0])
    arc = np.stack([east[1:-1], north[1:-1]], axis=1) - centre
    bearings = np.degrees(np.arctan2(arc[:, 0], arc[:, 1])) % 360
    np.testing.assert_allclose(bearings[[0, -1]], [90, 120], atol=1.0)


def synthetic_view(cells_side: int, params: PartitionParams) -> PartitionView:
    """A square city of cells_side^2 cells, 12 headings each, without a catalog."""
    e, n, h = np.meshgrid(
        np.arange(cells_side), np.arange(cells_side), np.arange(12), indexing="ij"
    )
    east = 500_000 + e.ravel() * params.M + 5
    north = 4_180_000 + n.ravel() * params.M + 5
    heading = h.ravel() * 30 + 15
    copies = params.min_images_per_class
    east, north, heading = (np.repeat(x, copies) for x in (east, north, heading))
    part = partition(east, north, heading, params)
    keys = np.unique(np.stack([e.ravel(), n.ravel()], 1), axis=0) + [50_000, 418_000]
    cells = pd.DataFrame(
        {
            "cell_e": keys[:, 0], "cell_n": keys[:, 1],
            "images": 12 * params.min_images_per_class, "panoramas": 1, "classes": 12,
            "kept_images": 12 * params.min_images_per_class,
        }
    )  # fmt: skip
    cells["east_min"] = cells["cell_e"] * params.M
    cells["north_min"] = cells["cell_n"] * params.M
    return PartitionView(
        "synthetic", "train", Path("."), params, ZONE,
        cells, catalog_partition.class_summary(part), catalog_partition.group_summary(part),
    )  # fmt: skip


def test_big_partition_is_aggregated_on_the_server():
    params = PartitionParams(min_images_per_class=1)
    view = synthetic_view(150, params)  # 22,500 cells, 270,000 classes
    assert len(view.cells) > MAX_SHAPES
    layers = build_map_layers(view, MapSelection())
    assert layers.factor == aggregation_factor(view.cells) == 2
    assert layers.cells_drawn <= MAX_SHAPES and layers.wedges_drawn == 0
    assert "click a block" in layers.notes[0]
    block = json.loads(layers.deck.to_json())["layers"][0]["data"][0]
    focused = build_map_layers(
        view, MapSelection(focus=(block["cell_e"], block["cell_n"], block["level"]))
    )
    assert focused.factor == 1 and focused.cells_drawn == 4 and focused.wedges_drawn == 48
    assert deck_payload_bytes(layers.deck) < 20_000_000


def test_group_separation_meets_the_paper_bound():
    params = PartitionParams(min_images_per_class=1)
    view = synthetic_view(12, params)
    for group in range(params.num_groups):
        separation = group_separation(view, group)
        assert separation.min_gap_m == pytest.approx(params.M * (params.N - 1))
        assert separation.min_centre_m == pytest.approx(params.M * params.N)
        assert separation.min_heading_deg == pytest.approx(params.alpha * (params.L - 1))


def test_eval_build_index_hook_serves_the_run(workspace, tmp_path, tiny_city):
    from training.eval import main as eval_main

    run = copy_run(workspace / "runs" / "tiny", tmp_path / "runs" / "evaluated")
    built_by_command = json.loads((run / "index" / "index_manifest.json").read_text())
    for name in ("index.faiss", "index_manifest.json", "database.parquet", "serving.json"):
        (run / "index" / name).unlink()
    eval_main(
        [
            "--test_set_folder", str(tiny_city / "test"), "--resume_model",
            str(run / "best_model.pth"), "--backbone", "ResNet18", "--fc_output_dim", "16",
            "--resize_test_imgs", "--image_size", "32", "--device", "cpu", "--num_workers", "0",
            "--workspace", str(tmp_path), "--save_dir", "evaluated", "--build_index",
        ]
    )  # fmt: skip
    serving = load_run_serving(run)
    assert serving.manifest.database_fingerprint == built_by_command["database_fingerprint"]
    assert serving.manifest.model == built_by_command["model"]
    assert serving.database.resize_shorter_side == 32 and serving.index.ntotal == 96
