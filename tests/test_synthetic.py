"""The synthetic city: SF-XL layout and names, determinism, and images that make sense."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.partition import class_keys
from data_catalog.names import parse_name
from data_catalog.synthetic import SUBSETS, build_city, get_preset, plan_dataset, write_dataset
from data_catalog.synthetic.__main__ import SAME_ON_EVERY_CPU, main
from data_catalog.synthetic.conditions import capture_condition
from data_catalog.synthetic.render import cut_crops, panorama_view, render
from data_catalog.synthetic.scene import rng_for, to_utm

SIZE = 128


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "tiny"
    write_dataset(out, get_preset("tiny"), seed=0, progress=False)
    return out


def images(root: Path, subset: str) -> list[Path]:
    return sorted((root / subset).rglob("*.jpg"))


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_has_all_six_subsets(tiny):
    for subset in SUBSETS:
        assert images(tiny, subset), subset
    # Train crops live in per-year sub-folders, like a nested SF-XL train folder.
    assert all(p.parent.parent == tiny / "train" for p in images(tiny, "train"))


def test_names_parse_and_lie_in_san_francisco(tiny):
    for subset in SUBSETS:
        for path in images(tiny, subset):
            name = parse_name(path)
            assert (name.zone_number, name.utm_zone_letter) == (10, "S")
            assert 548_000 < name.east < 553_000 and 4_178_000 < name.north < 4_184_000
            assert 37.70 < name.latitude < 37.84 and -122.52 < name.longitude < -122.35
            assert name.note == "synthetic" and len(name.timestamp) == 6
            assert name.pano_id


def test_only_photos_lack_heading(tiny):
    for subset in SUBSETS:
        headings = [parse_name(p).heading for p in images(tiny, subset)]
        if subset.endswith("queries_v1"):  # the test photos and their val counterparts
            assert all(h == "" for h in headings)
        else:
            assert all(h != "" and 0 <= float(h) < 360 for h in headings)


def test_train_panoramas_have_12_headings_30_degrees_apart(tiny):
    by_pano = defaultdict(list)
    for path in images(tiny, "train"):
        name = parse_name(path)
        by_pano[name.pano_id].append((float(name.heading), name.utm_east, name.utm_north))
    assert len(by_pano) >= 10
    for crops in by_pano.values():
        assert len(crops) == 12
        assert len({(e, n) for _, e, n in crops}) == 1  # one camera position per panorama
        headings = np.sort([h for h, _, _ in crops])
        assert np.allclose(np.diff(np.concatenate([headings, [headings[0] + 360]])), 30)


def test_images_decode_at_expected_sizes(tiny):
    for subset in SUBSETS:
        sizes = set()
        for path in images(tiny, subset):
            with Image.open(path) as image:
                image.load()
                assert image.format == "JPEG" and image.mode == "RGB"
                sizes.add(image.size)
        if subset.endswith("queries_v1"):  # the test photos and their val counterparts
            assert len(sizes) >= 3  # several aspect ratios
            assert all(min(s) == round(SIZE * 0.94) for s in sizes)
        else:
            assert sizes == {(SIZE, SIZE)}


def test_metadata_and_readme_say_synthetic(tiny):
    meta = json.loads((tiny / "metadata.json").read_text())
    assert meta["synthetic"] is True
    assert meta["preset"] == "tiny" and meta["seed"] == 0
    assert "synthetic" in meta["description"].lower()
    assert "SYNTHETIC" in (tiny / "README.txt").read_text()
    for subset in SUBSETS:
        assert meta["subsets"][subset]["images"] == len(images(tiny, subset))


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tiny, tmp_path):
    # Two worker processes: the bytes must not depend on which process renders what.
    write_dataset(tmp_path / "again", get_preset("tiny"), seed=0, workers=2, progress=False)
    assert digests(tmp_path / "again") == digests(tiny)
    write_dataset(tmp_path / "other", get_preset("tiny"), seed=1, progress=False)
    other = digests(tmp_path / "other")
    assert set(other.values()).isdisjoint(v for k, v in digests(tiny).items() if k.endswith("jpg"))


def test_the_command_renders_with_baseline_simd_whatever_the_cpu(tmp_path):
    """`python -m data_catalog.synthetic` restarts itself under SAME_ON_EVERY_CPU: its city
    equals one rendered by a process told so explicitly, and differs from one rendered
    with every SIMD variant of this CPU (which differ in the last bit of sin, exp...)."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "NPY_DISABLE_CPU_FEATURES"}
    render = "from data_catalog.synthetic.__main__ import main; main(sys.argv[1:])"

    def city(name: str, command: list[str], extra_env: dict) -> dict[str, str]:
        argv = ["--preset", "tiny", "--seed", "0", "--out", str(tmp_path / name), "--no_progress"]
        done = subprocess.run(
            [sys.executable, *command, *argv], cwd=root, env={**env, **extra_env},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return digests(tmp_path / name)

    by_command = city("command", ["-m", "data_catalog.synthetic"], {})
    assert by_command == city("told", ["-c", f"import sys; {render}"], SAME_ON_EVERY_CPU)
    assert by_command != city("native", ["-c", f"import sys; {render}"], {})


def test_train_is_geographically_apart_from_val_and_test(tiny):
    def points(subset):
        return np.asarray([(parse_name(p).east, parse_name(p).north) for p in images(tiny, subset)])

    train = points("train")
    for subset in SUBSETS[1:]:
        other = points(subset)
        gaps = np.hypot(*(train[:, None, :] - other[None, :, :]).transpose(2, 0, 1))
        assert gaps.min() > 50, subset


def test_queries_have_database_positives(tiny):
    """Every query lies within 25 m of a database image of its split, so recall is defined."""
    for database, queries in (
        ("val/database", "val/queries"),
        ("val/database", "val/queries_v1"),
        ("test/database", "test/queries_v1"),
        ("test/database", "test/queries_v2"),
    ):
        db = np.asarray([(parse_name(p).east, parse_name(p).north) for p in images(tiny, database)])
        for path in images(tiny, queries):
            name = parse_name(path)
            assert np.hypot(db[:, 0] - name.east, db[:, 1] - name.north).min() < 25


def _panorama_crops(city, x, y, yaw=17.0):
    rng = rng_for(0, "test")
    cond = capture_condition(rng_for(0, "cond"), 6)
    pano = render(city, city.scene(2013), panorama_view(x, y, yaw, SIZE), cond, 2013, rng)
    return [
        np.asarray(
            Image.fromarray((c * 255).clip(0, 255).astype(np.uint8))
            .convert("L")
            .resize((16, 16), Image.BILINEAR),
            dtype=np.float64,
        )
        for c in cut_crops(pano, SIZE)
    ]


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


def test_neighbouring_viewpoints_look_alike_and_distant_ones_do_not():
    city = build_city(get_preset("tiny"), seed=0)
    near_scores, far_scores = [], []
    train = [t for t in city.tracks if t.district == "train"]
    test = [t for t in city.tracks if t.district == "test"]
    for track, other in zip(train, test, strict=True):
        x, y = track.point(track.length / 2, 1.5)
        nx, ny = track.point(track.length / 2 + 3.0, 1.5)
        fx, fy = other.point(other.length / 2, 1.5)
        assert np.hypot(fx - x, fy - y) > 200
        here, near, there = (_panorama_crops(city, *p) for p in ((x, y), (nx, ny), (fx, fy)))
        near_scores += [_correlation(a, b) for a, b in zip(here, near, strict=True)]
        far_scores += [_correlation(a, b) for a, b in zip(here, there, strict=True)]
    near_scores, far_scores = np.asarray(near_scores), np.asarray(far_scores)
    assert near_scores.mean() > far_scores.mean() + 0.2
    assert (near_scores > far_scores).mean() > 0.8


def test_demo_plan_fills_cosplace_classes():
    """Demo train crops: ~20k, and every 10 m x 30 deg class keeps >= 10 images."""
    preset = get_preset("demo")
    jobs = plan_dataset(build_city(preset, seed=0), preset)
    rows = [
        (*to_utm(j.x, j.y), (j.yaw + 30 * k) % 360)
        for j in jobs
        if j.folder.startswith("train")
        for k in j.crops
    ]
    assert 15_000 <= len(rows) <= 25_000
    east, north, heading = np.asarray(rows, dtype=np.float64).T
    _, sizes = np.unique(class_keys(east, north, heading, 10, 30), axis=0, return_counts=True)
    assert sizes.min() >= 10


def test_cli_dry_run_says_synthetic(capsys, tmp_path):
    assert main(["--preset", "tiny", "--dry_run", "--out", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "test/queries_v1" in out
    assert not (tmp_path / "x").exists()
