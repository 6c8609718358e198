"""The Map page's first view, stored by the ingest (data_catalog.map_views): the same tables as
computing them, used when the parameters match, forgotten when a dataset's images change."""

import duckdb
import pandas as pd
import pytest

from core.partition import PartitionParams
from data_catalog import map_views
from data_catalog.ingest import main as ingest_main
from tests.conftest import error_of


def ingest(city, db, *flags):
    ingest_main([str(city), "--db", str(db), "--dataset", "tiny", "--no_progress", *flags])


def assert_same(stored: map_views.PartitionTables, computed: map_views.PartitionTables):
    for name in map_views.FRAME_TABLES:
        pd.testing.assert_frame_equal(getattr(stored, name), getattr(computed, name))
    assert stored.warnings == computed.warnings


def test_ingest_stores_the_default_partition_of_every_split(tiny_city, tmp_path):
    db = tmp_path / "catalog.duckdb"
    ingest(tiny_city, db)
    with duckdb.connect(str(db), read_only=True) as con:
        for split in ("train", "test", "val"):
            stored = map_views.stored_partition(con, "tiny", split, PartitionParams())
            if split != "train":  # queries without a heading: the page says so, nothing stored
                assert stored is None
                with pytest.raises(ValueError, match="no heading"):
                    map_views.partition_tables(con, "tiny", PartitionParams(), split)
                continue
            computed = map_views.partition_tables(con, "tiny", PartitionParams(), split)
            assert stored is not None and len(computed.cells) > 0, split
            assert_same(stored, computed)
        other = PartitionParams(min_images_per_class=1)
        assert map_views.stored_partition(con, "tiny", "train", other) is None
        squares = map_views.stored_street_squares(con, "tiny")
        fresh = map_views.dataset_street_squares(con, "tiny")
        assert squares.side_m == fresh.side_m and squares.zone == fresh.zone
        for column in ("east", "north", "images"):
            assert (getattr(squares, column) == getattr(fresh, column)).all()


def test_an_ingest_that_adds_images_forgets_the_stored_views(tiny_city, tmp_path):
    db = tmp_path / "catalog.duckdb"
    ingest(tiny_city / "train", db)
    with duckdb.connect(str(db), read_only=True) as con:
        assert map_views.has_views(con, "tiny")
    ingest(tiny_city / "val", db, "--no_map_views")  # adds the val split: train's cells stay
    with duckdb.connect(str(db), read_only=True) as con:
        assert not map_views.has_views(con, "tiny")
        assert map_views.stored_partition(con, "tiny", "train", PartitionParams()) is None
    map_views.main(["--db", str(db), "--no_progress"])
    with duckdb.connect(str(db), read_only=True) as con:
        assert map_views.has_views(con, "tiny")
        stored = map_views.stored_partition(con, "tiny", "train", PartitionParams())
        assert_same(stored, map_views.partition_tables(con, "tiny", PartitionParams(), "train"))
    ingest(tiny_city / "val", db)  # nothing new: the stored views stay as they are
    with duckdb.connect(str(db), read_only=True) as con:
        assert map_views.has_views(con, "tiny")


def test_the_map_reads_stored_views_and_computes_others(tiny_city, tmp_path, monkeypatch):
    from app import street_layer
    from app.map_layers import compute_partition_view

    db = tmp_path / "catalog.duckdb"
    ingest(tiny_city, db)
    expected = compute_partition_view(db, "tiny", PartitionParams(), "train")
    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return computing(*args, **kwargs)

    computing = map_views.partition_tables
    monkeypatch.setattr(map_views, "partition_tables", counted)
    monkeypatch.setattr(map_views, "dataset_street_squares", lambda *a: pytest.fail("counted"))
    view = compute_partition_view(db, "tiny", PartitionParams(), "train")
    assert calls == []  # read back, not computed
    pd.testing.assert_frame_equal(view.cells, expected.cells)
    assert len(street_layer.catalog_street_squares(db, "tiny")) > 0
    seen = []
    compute_partition_view(
        db, "tiny", PartitionParams(min_images_per_class=1), "train", lambda f, t: seen.append(f)
    )
    assert len(calls) == 1 and seen[0] == 0.0 and seen == sorted(seen)


def test_a_catalog_without_stored_views_is_computed(tiny_city, tmp_path):
    db = tmp_path / "catalog.duckdb"
    ingest(tiny_city, db, "--no_map_views")
    with duckdb.connect(str(db), read_only=True) as con:
        assert not map_views.has_views(con, "tiny")
        assert map_views.stored_partition(con, "tiny", "train", PartitionParams()) is None
        assert map_views.stored_street_squares(con, "tiny") is None


def test_map_views_command_names_an_unknown_dataset(tiny_city, tmp_path, capsys):
    db = tmp_path / "catalog.duckdb"
    ingest(tiny_city, db, "--no_map_views")
    code, err = error_of(map_views.main, ["--db", str(db), "--dataset", "nope"], capsys)
    assert code != 0 and "No dataset 'nope'" in err and "tiny" in err
    assert err.count("\n") == 1
