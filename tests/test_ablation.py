"""Ablation grids: paper Table 5's rows, results per point, skipping recorded points."""

import csv
import json
import os

import pytest
from conftest import tiny_training_flags

from data_catalog.names import make_name
from training import ablation, claims
from training.config import parse_arguments


def tiny_flags(city, workspace):
    return tiny_training_flags(workspace, "--dataset_folder", str(city))


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_a_two_point_grid_records_each_point_and_skips_it_next_time(
    tiny_city, tmp_path, monkeypatch, capsys
):
    flags = ["--grid", "pooling", "--points", "gem", "avg", *tiny_flags(tiny_city, tmp_path)]
    ablation.main(flags)
    rows = read_csv(tmp_path / "runs" / "ablation_pooling.csv")
    assert [(r["point"], r["pooling"]) for r in rows] == [("gem", "gem"), ("avg", "avg")]
    for row in rows:
        assert float(row["val_r1"]) >= 0 and float(row["test_r20"]) >= 0
        assert float(row["images_per_s"]) > 0 and float(row["seconds"]) > 0
        assert (tmp_path / "runs" / f"ablation_pooling_{row['point']}" / "best_model.pth").is_file()
    assert "test_r1" in capsys.readouterr().out  # the closing table

    def must_not_train(args):
        raise AssertionError(f"{args.save_dir} was recorded and should be skipped")

    monkeypatch.setattr(ablation.training, "train", must_not_train)
    ablation.main(flags)
    assert read_csv(tmp_path / "runs" / "ablation_pooling.csv") == rows

    def fake_train(args):
        return {"best_val_recall1": 99.0, "history": [{"images_per_s": 1.0, "seconds": 1.0}]}

    monkeypatch.setattr(ablation.training, "train", fake_train)
    ablation.main([*flags, "--points", "avg", "--rerun"])
    again = read_csv(tmp_path / "runs" / "ablation_pooling.csv")
    assert [r["point"] for r in again] == ["gem", "avg"]
    assert again[0] == rows[0] and float(again[1]["val_r1"]) == 99.0
    recorded = json.loads((tmp_path / "runs" / "ablation_pooling.json").read_text())
    assert recorded[1]["args"]["pooling"] == "avg"  # every flag of the point is kept


def test_table5_mirrors_the_paper_rows_and_caps_groups_num():
    points = ablation.grid_points("table5", parse_arguments([]))
    assert [(p.flags["M"], p.flags["alpha"], p.flags["N"], p.flags["L"]) for p in points] == [
        (10, 360, 1, 1),
        (10, 360, 5, 1),
        (10, 30, 5, 1),
        (10, 30, 1, 2),
        (10, 30, 5, 2),
    ]
    assert [p.flags["groups_num"] for p in points] == [1, 8, 8, 2, 8]  # at most N*N*L
    assert [p.paper_val_r1 for p in points] == [85.8, 88.5, 88.2, 77.1, 90.9]
    assert (
        ablation.grid_points("table5", parse_arguments(["--groups_num", "1"]))[-1].flags[
            "groups_num"
        ]
        == 1
    )


def test_point_overrides_win_over_the_command_line(tiny_city, tmp_path):
    base = [*tiny_flags(tiny_city, tmp_path), "--N", "3", "--save_dir", "ignored"]
    point = ablation.grid_points("table5", parse_arguments(base))[0]
    args = ablation.point_args(base, "table5", point, 0.5)
    assert (args.N, args.L, args.alpha, args.groups_num) == (1, 1, 360, 1)
    assert args.save_dir == "ablation_table5_M10_alpha360_N1_L1"
    assert args.train_set_folder.startswith(str(tmp_path / "subsets"))
    assert args.train_images == 120  # half of the tiny city's 240 train images


def test_train_subset_is_deterministic_nested_and_made_of_links(tmp_path):
    source = tmp_path / "train"
    for year in ("2011", "2019"):
        (source / year).mkdir(parents=True)
        for i in range(50):
            (source / year / f"img{i:02d}.jpg").write_bytes(b"x")
    half = ablation.subset_folder(source, 0.5, 0, tmp_path / "ws")
    quarter = ablation.subset_folder(source, 0.25, 0, tmp_path / "ws")
    listed = {
        name: set((folder / "subset.txt").read_text().split())
        for name, folder in (("half", half), ("quarter", quarter))
    }
    assert (len(listed["half"]), len(listed["quarter"])) == (50, 25)
    assert listed["quarter"] <= listed["half"]
    for relative in listed["half"]:
        link = half / relative
        assert link.is_symlink() and os.path.samefile(link, source / relative)
    assert ablation.subset_folder(source, 0.5, 0, tmp_path / "ws") == half  # reused
    other_seed = ablation.subset_folder(source, 0.5, 1, tmp_path / "ws")
    assert set((other_seed / "subset.txt").read_text().split()) != listed["half"]


def test_claims_val_subset_keeps_whole_panoramas_and_every_fourth_query(tmp_path):
    val = tmp_path / "city" / "val"
    (val / "database").mkdir(parents=True)
    (val / "queries").mkdir()
    for pano in range(7):  # 7 panoramas of 3 crops: every 3rd panorama kept, whole
        for heading in (0, 120, 240):
            name = make_name(549_000 + 10 * pano, 4_180_000, 10, "S", 37.7, -122.4,
                             pano_id=f"pano{pano}", heading=heading)  # fmt: skip
            (val / "database" / name).write_bytes(b"x")
    for query in range(9):
        (val / "queries" / f"q{query}.jpg").write_bytes(b"x")
    folder = claims.small_val_folder(val, tmp_path / "ws")
    links = sorted(p.relative_to(folder) for p in folder.rglob("*.jpg"))
    panoramas = {p.name.split("@")[7] for p in links if p.parts[0] == "database"}
    assert panoramas == {"pano0", "pano3", "pano6"}
    assert len(links) == 9 + 3  # three whole panoramas, queries 0, 4 and 8
    assert all(os.path.samefile(folder / link, val / link) for link in links)
    assert claims.small_val_folder(val, tmp_path / "ws") == folder  # reused as it is
    (val / "queries" / "q9.jpg").write_bytes(b"x")
    (val / "queries" / "q0.jpg").unlink()  # another listing: rebuilt, no stale link left
    claims.small_val_folder(val, tmp_path / "ws")
    queries = sorted(p.name for p in (folder / "queries").iterdir())
    assert queries == ["q1.jpg", "q5.jpg", "q9.jpg"]


def test_unknown_point_is_named(tiny_city, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ablation.main(["--grid", "dimension", "--points", "dim7", *tiny_flags(tiny_city, tmp_path)])
    assert exit_info.value.code == 2
    assert "no points ['dim7'] in grid dimension; choose from" in capsys.readouterr().err
