"""AppTest of every page on a tiny workspace: maps, uploads, a corrupt upload, empty states."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from app_fixtures import (
    INDEX_FLAGS,
    catalog_write_lock,
    copy_run,
    image_bytes,
    jpeg_with_gps,
    jpeg_with_numeric_gps_reference,
    save_random_run,
    workspace_once,
)
from streamlit.testing.v1 import AppTest

from core.partition import PartitionParams
from data_catalog import catalog, catalog_partition

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")
TIMEOUT = 180


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_city):
    return workspace_once(tmp_path_factory, tiny_city)


def open_app(monkeypatch, workspace: Path, page: str | None = None, **params) -> AppTest:
    monkeypatch.setenv("COSPLACE_WORKSPACE", str(workspace))
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    for key, value in params.items():
        at.query_params[key] = str(value)
    at.run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def deck_specs(at: AppTest) -> list[dict]:
    return [json.loads(e.proto.json) for e in at.get("deck_gl_json_chart")]


def map_layer(at: AppTest, layer_id: str) -> dict:
    """A layer of the page's first map by its id (the street layer may lie under the rest)."""
    return next(layer for layer in deck_specs(at)[0]["layers"] if layer["id"] == layer_id)


# --- Map ------------------------------------------------------------------------------------


def train_partition_counts(workspace: Path, min_images: int) -> tuple[int, int, int]:
    """(images, cells, kept classes) of the tiny city's train split, from the catalog."""
    params = PartitionParams(min_images_per_class=min_images)
    with catalog.connect(workspace / "catalog.duckdb", read_only=True) as con:
        part = catalog_partition.partition_images(con, "tiny", params, "train").partition
        cells = catalog_partition.cell_summary(con, "tiny", params, "train")
    return len(part.image_class), len(cells), part.num_classes


def test_map_draws_cells_and_heading_wedges(monkeypatch, workspace):
    images, cells, classes = train_partition_counts(workspace, min_images=1)
    at = open_app(monkeypatch, workspace, min_images=1)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == f"{images:,}" and metrics["Cells"] == f"{cells:,}"
    assert metrics["Classes kept"] == f"{classes:,}"
    spec = deck_specs(at)[0]
    layers = {layer["id"]: layer for layer in spec["layers"]}
    assert len(layers["cells"]["data"]) == cells
    assert len(layers["headings"]["data"]) == classes
    assert "images" in layers["cells"]["data"][0]["tip"]
    assert spec["mapStyle"].startswith("https://basemaps.cartocdn.com")  # token-free Carto
    assert at.query_params["min_images"] == "1"


def test_map_default_min_images_says_how_to_see_classes(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace)
    assert "lower min_images_per_class" in texts(at.info)


def test_map_group_shows_fig4_separation(monkeypatch, workspace):
    from app.group_separation import group_separation
    from app.map_layers import compute_partition_view
    from core.partition import PartitionParams

    view = compute_partition_view(
        workspace / "catalog.duckdb", "tiny", PartitionParams(min_images_per_class=1)
    )
    spread = [g for g in view.groups["group"] if group_separation(view, g).cells > 1]
    assert spread, "no group of the tiny city spans two cells"
    at = open_app(monkeypatch, workspace, min_images=1)
    at.selectbox(key="group").set_value(int(spread[0])).run()
    assert "paper Fig. 4" in texts(at.subheader)
    separation = {m.label: (m.value, m.delta) for m in at.metric}
    value, delta = separation["Closest two cells of the group"]
    assert delta == ">= M(N-1) = 40 m"
    assert float(value.split()[0]) >= 40
    assert len(at.get("plotly_chart")) == 1
    assert at.query_params["group"] == str(spread[0])
    wedges = map_layer(at, "headings")["data"]
    assert {w["tip"].split("group rank ")[1].split(",")[0] for w in wedges} == {str(spread[0])}


def test_map_cell_from_link_shows_thumbnails_by_heading_and_year(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, min_images=1)
    cell = map_layer(at, "cells")["data"][0]
    link = f"{cell['cell_e']}_{cell['cell_n']}"
    at = open_app(monkeypatch, workspace, min_images=1, cell=link)
    assert f"Cell ({cell['cell_e']}, {cell['cell_n']})" in texts(at.subheader)
    headings = [m.value for m in at.markdown if m.value.startswith("**Heading")]
    years = [m.value for m in at.markdown if m.value.startswith("**20")]
    assert headings and years
    assert len(at.get("image")) >= len(headings) + len(years)


def test_map_warns_when_heading_bins_do_not_split_into_L(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace)
    at.sidebar.number_input(key="L").set_value(5).run()
    assert "not a multiple of L=5" in texts(at.warning)


def test_map_url_parameters_reopen_the_view(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, M=20, alpha=60, N=3, L=2, min_images=2)
    assert at.sidebar.number_input(key="M").value == 20
    assert at.sidebar.number_input(key="N").value == 3
    assert {m.label: m.value for m in at.metric}["Groups with classes"].endswith("of 18")


# --- Dataset --------------------------------------------------------------------------------


def test_dataset_page_charts_and_coverage(monkeypatch, workspace, tiny_city):
    at = open_app(monkeypatch, workspace, page="dataset")
    metrics = {m.label: m.value for m in at.metric}
    written = json.loads((tiny_city / "metadata.json").read_text())["subsets"]
    assert metrics["Images"] == f"{sum(s['images'] for s in written.values()):,}"
    assert metrics["Malformed names"] == "0"
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [c["layout"]["title"]["text"] for c in charts]
    assert set(titles) == {
        "Images per split and subset",
        "Panoramas per year",
        "Panoramas per 10 m cell (log scale)",
    }
    per_cell = charts[titles.index("Panoramas per 10 m cell (log scale)")]
    assert per_cell["layout"]["yaxis"]["type"] == "log"
    coverage = deck_specs(at)[0]["layers"][0]
    assert coverage["id"] == "coverage" and coverage["data"]
    assert "valid SF-XL name" in texts(at.success)


def test_dataset_page_lists_malformed_names_with_reasons(monkeypatch, tmp_path, tiny_city):
    from data_catalog.ingest import main as ingest_main

    folder = tmp_path / "odd" / "test" / "database"
    folder.mkdir(parents=True)
    for image in sorted((tiny_city / "test" / "database").iterdir())[:3]:
        shutil.copy(image, folder / image.name)
    (folder / "holiday_photo.jpg").write_bytes(image_bytes("JPEG"))
    ingest_main([str(tmp_path / "odd"), "--db", str(tmp_path / "catalog.duckdb"), "--no_progress"])
    at = open_app(monkeypatch, tmp_path, page="dataset")
    assert {m.label: m.value for m in at.metric}["Malformed names"] == "1"
    table = at.dataframe[0].value
    assert table["path"].str.contains("holiday_photo.jpg").any()
    assert table["reason"].str.len().min() > 0


# --- Retrieve -------------------------------------------------------------------------------


def test_retrieve_uploads_png_and_webp_and_survives_a_corrupt_file(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, page="retrieve")
    assert "Upload one or more photos" in texts(at.caption)
    at.file_uploader(key="uploads").set_value(
        [
            ("street.png", image_bytes("PNG"), "image/png"),
            ("broken.jpg", b"\xff\xd8 this is not a jpeg", "image/jpeg"),
            ("street.webp", image_bytes("WEBP"), "image/webp"),
        ]
    ).run()
    assert not at.exception
    errors = texts(at.error)
    assert "broken.jpg" in errors and "skipped" in errors
    assert texts(at.markdown).count("**Run tiny**") == 2  # both good uploads retrieved
    assert len(at.dataframe) == 2 and len(at.dataframe[0].value) == 5
    assert "Position unknown" in texts(at.caption)


def test_retrieve_gps_upload_is_marked_and_mapped(monkeypatch, workspace, tiny_city):
    from app.street_layer import BASE_CAPTION
    from data_catalog.names import parse_name

    target = parse_name(sorted((tiny_city / "test" / "database").iterdir())[0].name)
    at = open_app(monkeypatch, workspace, page="retrieve", base="always")
    upload = ("phone.jpg", jpeg_with_gps(target.latitude, target.longitude), "image/jpeg")
    at.file_uploader(key="uploads").set_value(upload).run()
    assert "Position from EXIF GPS." in texts(at.caption)
    metric = {m.label: m for m in at.metric}["Top-1 position error"]
    assert metric.value.endswith(" m") and "within 25 m" in metric.delta
    table = at.dataframe[0].value
    assert {"distance_m", "correct", "similarity"} <= set(table.columns)
    assert table["similarity"].is_monotonic_decreasing
    # The tiny city's own images as faint streets under the dots (issue 18, section 5).
    layers = [layer["id"] for layer in deck_specs(at)[0]["layers"]]
    assert layers == ["streets", "results", "prediction", "query"]
    assert map_layer(at, "streets")["data"] and BASE_CAPTION in texts(at.caption)
    at.sidebar.selectbox(key="base").set_value("never").run()
    assert [layer["id"] for layer in deck_specs(at)[0]["layers"]][0] == "results"
    assert BASE_CAPTION not in texts(at.caption) and at.query_params["base"] == "never"


def test_retrieve_answers_each_hostile_file_of_a_batch_on_its_own(monkeypatch, workspace):
    """Each of these once stopped the whole page (AttributeError, utm's OutOfRangeError, a
    JPEG encoder error); now each file has its own answer and the batch goes on."""
    polar = "@0549697.84@4180105.34@11@X@085.00000@-122.43573@pano@@@@@@201610@x@.jpg"
    at = open_app(monkeypatch, workspace, page="retrieve")
    at.file_uploader(key="uploads").set_value(
        [
            ("gps.jpg", jpeg_with_numeric_gps_reference(), "image/jpeg"),
            (polar, image_bytes("JPEG", colour=(10, 20, 30)), "image/jpeg"),
            ("line.png", image_bytes("PNG", (70_000, 8), 90, mode="L"), "image/png"),
            ("broken.jpg", b"\xff\xd8 this is not a jpeg", "image/jpeg"),
            ("street.png", image_bytes("PNG", colour=(1, 2, 3)), "image/png"),
            ("street.png", image_bytes("PNG", colour=(3, 2, 1)), "image/png"),  # same name
        ]
    ).run()
    assert not at.exception, [e.value for e in at.exception]
    assert texts(at.markdown).count("**Run tiny**") == 5
    captions = texts(at.caption)
    assert "malformed EXIF GPS block (the latitude reference is 78, not N or S)" in captions
    assert "latitude 85 lies outside UTM's range" in captions
    assert "70,000 x 8 cropped to 32 x 8 (centre, at most 4:1)" in captions
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("broken.jpg:")


def test_retrieve_answers_at_most_16_files_and_says_the_rest_were_not_read(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, page="retrieve")
    photos = [
        (f"p{i}.png", image_bytes("PNG", (40, 30), (i, 7, 9)), "image/png") for i in range(18)
    ]
    at.file_uploader(key="uploads").set_value(photos).run()
    assert not at.exception
    assert texts(at.markdown).count("**Run tiny**") == 16
    assert "18 photos uploaded: the first 16 are answered, the other 2 were not read" in texts(
        at.warning
    )


def test_moving_the_k_slider_does_not_embed_the_upload_again(monkeypatch, workspace):
    from app import retrieval

    calls = []
    original = retrieval.query_descriptor

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(retrieval, "query_descriptor", counting)
    at = open_app(monkeypatch, workspace, page="retrieve")
    upload = ("once.png", image_bytes("PNG", (48, 40), (201, 17, 99)), "image/png")
    at.file_uploader(key="uploads").set_value(upload).run()
    assert len(at.dataframe[0].value) == 5 and len(calls) == 1
    at.slider(key="k").set_value(3).run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 3  # the rerun answered with the new k
    assert len(calls) == 1  # ... from the cached descriptor


def test_retrieve_test_query_compares_two_runs(monkeypatch, workspace, tmp_path, tiny_city):
    from training.build_index import main as build_index_main

    copy_run(workspace / "runs" / "tiny", tmp_path / "runs" / "tiny")
    other = save_random_run(tmp_path / "runs" / "other", seed=1)
    database = str(tiny_city / "test" / "database")
    build_index_main(["--run_dir", str(other), "--database_folder", database, *INDEX_FLAGS])
    at = open_app(  # no catalog here: the maps draw without streets, with no error
        monkeypatch, tmp_path, page="retrieve", run="tiny", run2="other",
        source="Test-set query", base="always",
    )  # fmt: skip
    query = at.selectbox(key="query").value
    assert query.startswith("queries_v1/")
    runs = [m.value for m in at.markdown if m.value.startswith("**Run")]
    assert [r.split()[1] for r in runs] == ["tiny**", "other**"]
    assert "Position from SF-XL file name." in texts(at.caption)
    assert len({m.value for m in at.metric if m.label == "Top-1 position error"}) >= 1
    assert at.query_params["run2"] == "other" and at.query_params["query"] == query
    assert len(deck_specs(at)) == 2 and all(
        layer["id"] != "streets" for spec in deck_specs(at) for layer in spec["layers"]
    )


def test_retrieve_empty_state_without_runs(monkeypatch, tmp_path):
    at = open_app(monkeypatch, tmp_path, page="retrieve")
    assert "python -m training.train" in texts(at.info)


def test_retrieve_run_without_index_names_the_command(monkeypatch, tmp_path):
    save_random_run(tmp_path / "runs" / "fresh")
    at = open_app(monkeypatch, tmp_path, page="retrieve")
    assert "python -m training.build_index" in texts(at.warning)


def test_retrieve_refuses_an_index_of_another_model(monkeypatch, workspace, tmp_path):
    run = copy_run(workspace / "runs" / "tiny", tmp_path / "runs" / "swapped")
    save_random_run(run, seed=1)  # new weights, old index
    at = open_app(monkeypatch, tmp_path, page="retrieve")
    warning = texts(at.warning)
    assert "does not match its model" in warning and "model weights" in warning
    assert "python -m training.build_index" in warning


# --- empty and busy catalog -----------------------------------------------------------------


@pytest.mark.parametrize("page", [None, "dataset"])
def test_catalog_pages_without_catalog_name_the_ingest(monkeypatch, tmp_path, page):
    at = open_app(monkeypatch, tmp_path, page=page)
    assert "python -m data_catalog.ingest" in texts(at.info)


def test_busy_catalog_shows_a_sentence(monkeypatch, workspace, tmp_path):
    import app.catalog_reader

    shutil.copy(workspace / "catalog.duckdb", tmp_path / "catalog.duckdb")
    with catalog_write_lock(tmp_path / "catalog.duckdb"):
        monkeypatch.setattr(app.catalog_reader, "APP_LOCK_WAIT_S", 0.3)
        at = open_app(monkeypatch, tmp_path)
        assert "locked by another process" in texts(at.info)


def test_no_pages_folder_beside_the_entry():
    # Streamlit runs an app with a pages/ folder beside its entry as an old-style multipage
    # app, bypassing st.navigation in app/main.py; the page files belong in app/views/.
    app_folder = Path(MAIN).parent
    assert not (app_folder / "pages").exists(), "move app/pages/*.py to app/views/"
    assert {p.name for p in (app_folder / "views").glob("*.py")} >= {
        "map.py",
        "retrieve.py",
        "dataset.py",
        "results.py",
    }


# --- hostile links --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "page, params, key, expected",
    [
        (None, {"cell": "5"}, None, None),
        (None, {"focus": "1_2"}, None, None),
        (None, {"M": "inf", "N": "-3", "alpha": "nan"}, "M", 10.0),
        ("retrieve", {"k": "50", "threshold": "-4"}, "k", 5),
        ("retrieve", {"base": "sideways"}, "base", "auto"),
    ],
)
def test_a_link_with_values_out_of_range_opens_the_default_view(
    monkeypatch, workspace, page, params, key, expected
):
    monkeypatch.setenv("COSPLACE_WORKSPACE", str(workspace))
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    if key:
        assert at.session_state[key] == expected


def test_the_served_app_never_shows_error_details_to_a_visitor():
    from streamlit.config import ShowErrorDetailsConfigOptions

    procfile = (Path(MAIN).parents[1] / "Procfile").read_text()
    assert "--server.address=0.0.0.0" in procfile
    assert "--client.showErrorDetails=none" in procfile
    assert ShowErrorDetailsConfigOptions.NONE.value == "none"  # a value Streamlit accepts
