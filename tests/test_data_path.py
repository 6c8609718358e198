"""The one path from SF-XL names to classes and groups: list files, the cache, group order,
zones, and malformed names reported alike by every reader."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from core.errors import UserError
from core.geo import MixedUTMZoneError, UTMZone, utm_to_latlon
from core.partition import PartitionParams
from data_catalog import catalog, name_cache
from data_catalog.ingest import ingest
from data_catalog.names import make_name
from training import config
from training.data import GroupDataset, load_test_set, load_train_set, read_folder

ZONE = UTMZone(10, "S")
PARAMS = PartitionParams(min_images_per_class=2)
# Three spots, 3 panoramas each, 12 crops a panorama: 12 classes of 3 images per spot.
SPOTS = [(543_105.0, 4_175_105.0), (543_155.0, 4_175_105.0), (543_105.0, 4_175_185.0)]


def name_at(east, north, heading=None, pano="p", zone=ZONE) -> str:
    lat, lon = utm_to_latlon([east], [north], zone)
    return make_name(
        east, north, zone.number, zone.letter, float(lat[0]), float(lon[0]), pano_id=pano,
        heading=heading, timestamp="201906",
    )  # fmt: skip


def city_paths() -> list[str]:
    """Relative paths of the train images, in sorted order (as a walk lists them)."""
    paths = [
        f"spot{s}/{name_at(e + p, n, 15 + 30 * c, f'pano{s}x{p}')}"
        for s, (e, n) in enumerate(SPOTS)
        for p in range(3)
        for c in range(12)
    ]
    return sorted(paths)


def touch_all(folder: Path, paths) -> None:
    for path in paths:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).touch()


@pytest.fixture
def train_folder(tmp_path) -> Path:
    folder = tmp_path / "sfxl" / "train"
    touch_all(folder, city_paths())
    return folder


def write_list(folder: Path, lines: list[str], end: str = "\n") -> Path:
    listing = folder.with_name(folder.name + "_images_paths.txt")
    listing.write_text("".join(line + end for line in lines))
    return listing


# --- list files ------------------------------------------------------------------------------


def test_a_list_beside_the_folder_is_read_instead_of_walking(train_folder):
    listed = city_paths()[::-1][:60]  # not sorted, and not every file
    write_list(train_folder, listed)
    train = load_train_set(train_folder, PARAMS, progress=False)
    assert list(train.paths) == listed  # file order, not sorted order
    assert len(train.partition.image_class) == 60
    # The list itself may be given too, and gives the same set.
    again = load_train_set(train_folder.with_name("train_images_paths.txt"), PARAMS, progress=False)
    assert list(again.paths) == listed


def test_list_lines_crlf_blank_dot_and_absolute_paths(train_folder, tmp_path):
    paths = city_paths()
    inside = str(train_folder / paths[2])
    outside = str(tmp_path / "elsewhere" / paths[3])
    lines = [paths[0], "", f"./{paths[1]}", inside, outside, "  ", *paths[4:]]
    write_list(train_folder, lines, end="\r\n")
    names = read_folder(train_folder)
    assert list(names.paths)[:3] == paths[:3]  # './' dropped, absolute made relative
    assert len(names) == len(paths) - 1
    reasons = dict(names.malformed)
    assert reasons[outside] == (
        f"path outside {train_folder} (absolute, or climbing out with ../); "
        "list paths relative to train/"
    )
    assert "found 0" in reasons["  "]


def test_list_lines_that_climb_out_of_the_folder_are_malformed(train_folder):
    paths = city_paths()
    climbing = [f"../val/{paths[1]}", f"./../{paths[2]}", f"2015/../../{paths[3]}"]
    write_list(train_folder, [paths[0], *climbing, *paths[4:]])
    names = read_folder(train_folder)
    assert len(names) == len(paths) - 3
    assert not any(".." in p for p in names.paths)
    reasons = dict(names.malformed)
    for line in climbing:
        assert reasons[line] == (
            f"path outside {train_folder} (absolute, or climbing out with ../); "
            "list paths relative to train/"
        )


def test_first_listed_path_must_exist(train_folder):
    write_list(train_folder, [f"sub/{p}" for p in city_paths()])
    with pytest.raises(FileNotFoundError) as caught:
        load_train_set(train_folder, PARAMS, progress=False)
    assert str(caught.value) == (
        f"sub/{city_paths()[0]}, the first path in {train_folder}_images_paths.txt, is not "
        f"in {train_folder}; the list must hold paths relative to train/"
    )


def test_test_set_subsets_are_read_from_their_lists(tmp_path):
    root = tmp_path / "test"
    database = [f"d/{name_at(546_000.0 + 5 * i, 4_178_000.0, 90, f'd{i}')}" for i in range(6)]
    queries = [name_at(546_001.0, 4_178_000.0, None, "q")]
    touch_all(root / "database", database)
    touch_all(root / "queries_v1", queries)
    write_list(root / "database", database[::-1][:4])
    test_set = load_test_set(root, "queries_v1")
    assert test_set.database_paths == [f"database/{p}" for p in database[::-1][:4]]
    assert test_set.queries_paths == [f"queries_v1/{queries[0]}"]
    assert test_set.database_utm[0].tolist() == [546_025.0, 4_178_000.0]
    assert test_set.zone == UTMZone(10, "S")


# --- group order -----------------------------------------------------------------------------


def test_groups_follow_the_list_order_by_default(train_folder):
    paths = city_paths()
    last_spot_first = [p for p in paths if p.startswith("spot2")] + [
        p for p in paths if not p.startswith("spot2")
    ]
    write_list(train_folder, last_spot_first)
    listed = load_train_set(train_folder, PARAMS, progress=False)
    # Group 0 is the group of the first listed image's class (all classes are kept here).
    first = listed.partition.image_group[0]
    assert first == 0 and listed.partition.image_class[0] == 0
    train_folder.with_name("train_images_paths.txt").unlink()
    walked = load_train_set(train_folder, PARAMS, progress=False)
    assert walked.paths[0] == paths[0] and walked.partition.image_group[0] == 0
    # The two orders differ: spot 2 lies in other groups than spot 0.
    assert listed.partition.group_keys[0].tolist() != walked.partition.group_keys[0].tolist()
    by_size = load_train_set(
        train_folder, PartitionParams(min_images_per_class=2, group_order="size"), progress=False
    )
    sizes = np.diff(by_size.partition.group_offsets)
    assert np.all(sizes[:-1] >= sizes[1:])


def test_group_order_flag_reaches_the_partition():
    args = config.build_parser().parse_args(["--group_order", "size"])
    assert config.partition_params(args).group_order == "size"
    default = config.build_parser().parse_args([])
    assert config.partition_params(default).group_order == "reference"


def test_group_dataset_items_are_the_classes_of_its_group(train_folder):
    train = load_train_set(train_folder, PARAMS, progress=False)
    dataset = GroupDataset(train, 0, None)
    members = train.partition.class_members(0)
    assert len(dataset) == len(members) == len(train.partition.classes_of_group(0))
    labels = train.partition.image_class - train.partition.group_offsets[0]
    for label, images in enumerate(dataset.classes):
        assert set(labels[images].tolist()) == {label}
        assert len(images) == 3


def test_paths_pickle_for_dataloader_workers(train_folder, tmp_path):
    write_list(train_folder, city_paths())
    for cache in (None, tmp_path / "cache"):
        paths = load_train_set(train_folder, PARAMS, cache_dir=cache, progress=False).paths
        again = pickle.loads(pickle.dumps(paths))
        assert list(again) == list(paths) == city_paths()


# --- the cache -------------------------------------------------------------------------------


def _forbid_parsing(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("parsed again although the cache holds the result")

    monkeypatch.setattr(name_cache, "read_names", fail)
    monkeypatch.setattr(name_cache, "partition", fail)


def test_second_start_reuses_the_cache(train_folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    write_list(train_folder, city_paths())
    first = load_train_set(train_folder, PARAMS, cache_dir=cache, progress=False)
    entries = [p.name for p in cache.iterdir()]
    assert len(entries) == 1 and entries[0].startswith("names-train-")
    with monkeypatch.context() as patch:
        _forbid_parsing(patch)
        second = load_train_set(train_folder, PARAMS, cache_dir=cache, progress=False)
    assert list(second.paths) == list(first.paths)
    for name in ("image_class", "image_group", "class_keys", "group_keys", "group_offsets"):
        np.testing.assert_array_equal(
            getattr(second.partition, name), getattr(first.partition, name)
        )
    # Other partition parameters reuse the parsed names and add a partition file.
    with monkeypatch.context() as patch:
        patch.setattr(name_cache, "read_names", None)  # a call would fail
        other = load_train_set(
            train_folder, PartitionParams(alpha=60, min_images_per_class=2), cache_dir=cache,
            progress=False,
        )  # fmt: skip
    assert (other.partition.num_classes, first.partition.num_classes) == (18, 36)
    assert len(list((cache / entries[0]).glob("partition-*.npz"))) == 2


def test_a_changed_list_invalidates_the_cache(train_folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    listing = write_list(train_folder, city_paths())
    load_train_set(train_folder, PARAMS, cache_dir=cache, progress=False)
    old_entry = next(cache.iterdir())
    write_list(train_folder, city_paths()[:-12])  # one panorama fewer
    calls = []
    real = name_cache.read_names
    monkeypatch.setattr(name_cache, "read_names", lambda *a, **k: calls.append(1) or real(*a, **k))
    changed = load_train_set(listing, PARAMS, cache_dir=cache, progress=False)
    assert calls == [1] and len(changed.paths) == len(city_paths()) - 12
    assert not old_entry.exists() and len(list(cache.iterdir())) == 1


def test_a_changed_folder_invalidates_the_cache(train_folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    before = load_train_set(train_folder, PARAMS, cache_dir=cache, progress=False)
    with monkeypatch.context() as patch:
        _forbid_parsing(patch)
        load_train_set(train_folder, PARAMS, cache_dir=cache, progress=False)
    extra = f"spot9/{name_at(544_000.0, 4_176_000.0, 15, 'new')}"
    touch_all(train_folder, [extra])
    after = load_train_set(train_folder, PARAMS, cache_dir=cache, progress=False)
    assert len(after.paths) == len(before.paths) + 1 and extra in list(after.paths)
    assert after.partition.image_class[list(after.paths).index(extra)] == -1  # a lone image


# --- zones and bad folders -------------------------------------------------------------------


def test_mixed_zones_are_refused_in_training_and_evaluation(tmp_path):
    root = tmp_path / "mixed"
    far = name_at(500_000.0, 4_175_000.0, 15, "far", zone=UTMZone(11, "S"))
    touch_all(root / "train", [*city_paths(), f"x/{far}"])
    with pytest.raises(MixedUTMZoneError) as caught:
        load_train_set(root / "train", PARAMS, progress=False)
    assert str(caught.value) == (
        f"{root / 'train'} mixes UTM zones 10S, 11S: eastings of different zones are not "
        "comparable, so give a folder or list of one zone only"
    )
    assert isinstance(caught.value, UserError)  # the command lines print it, no traceback
    touch_all(root / "test" / "database", [name_at(546_000.0, 4_178_000.0, 90)])
    touch_all(root / "test" / "queries", [far])
    with pytest.raises(MixedUTMZoneError, match=r"\(database and queries\) mixes UTM zones"):
        load_test_set(root / "test")


def test_folders_without_usable_names_say_why(tmp_path):
    empty = tmp_path / "empty" / "train"
    empty.mkdir(parents=True)
    with pytest.raises(UserError, match="holds no SF-XL-named images to train on"):
        load_train_set(empty, PARAMS, progress=False)
    no_heading = tmp_path / "flickr" / "train"
    touch_all(no_heading, [name_at(546_000.0, 4_178_000.0, None, f"q{i}") for i in range(3)])
    with pytest.raises(ValueError, match="3 images have no heading"):
        load_train_set(no_heading, PARAMS, progress=False)


# --- malformed names: the same for every reader ----------------------------------------------

BAD = [
    "spot0/not_a_name.jpg",
    "spot0/@0543037.38@4180974.80@10@S.jpg",
    f"spot1/{name_at(543_105.0, 4_175_105.0, 15).replace('@15@', '@nan@')}",
    f"spot1/{name_at(543_105.0, 4_175_105.0, 15).replace('@15@', '@-inf@')}",
    f"spot1/{name_at(543_105.0, 4_175_105.0, 15).replace('@10@', '@61@')}",
    f"spot1/{name_at(543_105.0, 4_175_105.0, 15).replace('.jpg', 'jpg')}.jpg",
    f"spot1/{name_at(543_105.0, 4_175_105.0, 15)[1:]}",
]


def test_malformed_names_are_reported_alike_by_walk_list_and_ingest(tmp_path):
    root = tmp_path / "sfxl"
    train = root / "train"
    touch_all(train, [*city_paths(), *BAD])
    walked = read_folder(train)
    assert len(walked.malformed) == len(BAD)
    write_list(train, sorted([*city_paths(), *BAD]))
    listed = read_folder(train)
    con = catalog.connect(tmp_path / "c.duckdb")
    ingest(con, train, progress=False)
    ingested = catalog.malformed_names(con, "sfxl")
    pairs = zip(ingested.path, ingested.reason, strict=True)
    from_ingest = {(path.removeprefix("train/"), reason) for path, reason in pairs}
    assert set(walked.malformed) == set(listed.malformed) == from_ingest
    reasons = dict(walked.malformed)
    assert reasons[BAD[2]] == "heading is not finite: 'nan'"
    assert reasons[BAD[3]] == "heading is not finite: '-inf'"
    assert reasons[BAD[5]].startswith("extension must start with '.'")
    assert reasons[BAD[6]] == "expected 15 '@'-separated fields, found 14"
    assert len(walked) == len(listed) == len(city_paths())
