"""Tiny workspaces for the app tests: the tiny synthetic city, its catalog, random-weight runs.

A randomly initialised ResNet-18 with 16-D descriptors, saved as a state_dict, is a valid
run: the app and training.build_index only need its weights to be a CosPlace network.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from PIL import Image

from core.model import CosPlaceNet

TINY_DIM = 16
INDEX_FLAGS = ["--resize_test_imgs", "--image_size", "32", "--infer_batch_size", "32"]


def save_random_run(run_dir: Path, seed: int = 0, dim: int = TINY_DIM) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(CosPlaceNet("ResNet18", dim).state_dict(), run_dir / "best_model.pth")
    return run_dir


def build_workspace(tiny_city: Path, root: Path) -> Path:
    """root/ with catalog.duckdb of the tiny city and runs/tiny (model + flat index)."""
    from data_catalog.ingest import main as ingest_main
    from training.build_index import main as build_index_main

    root.mkdir(parents=True, exist_ok=True)
    ingest_main([str(tiny_city), "--db", str(root / "catalog.duckdb"), "--no_progress"])
    run = save_random_run(root / "runs" / "tiny", seed=0)
    database = tiny_city / "test" / "database"
    build_index_main(["--run_dir", str(run), "--database_folder", str(database), *INDEX_FLAGS])
    return root


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def image_bytes(fmt: str, size=(64, 48), colour=(120, 160, 200), exif=None, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    image = Image.new(mode, size, colour)
    if exif is not None:
        image.save(buffer, format=fmt, exif=exif)
    else:
        image.save(buffer, format=fmt)
    return buffer.getvalue()


def jpeg_with_gps(lat: float, lon: float) -> bytes:
    """A JPEG whose EXIF GPS block says (lat, lon), as a phone writes it (deg, min, sec)."""

    def dms(value: float) -> tuple[float, float, float]:
        value = abs(value)
        degrees = int(value)
        minutes = int((value - degrees) * 60)
        seconds = (value - degrees - minutes / 60) * 3600
        return float(degrees), float(minutes), round(seconds, 4)

    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W", 4: dms(lon)})
    return image_bytes("JPEG", exif=exif)


def jpeg_with_numeric_gps_reference(reference: int = 78) -> bytes:
    """A JPEG whose EXIF GPS latitude reference is the number 78 (a SHORT), not the text 'N'.

    Pillow writes a reference given as a number as text, so the EXIF block is built by hand:
    a little-endian TIFF header, IFD0 pointing at the GPS IFD, and the GPS IFD with its two
    rationals (37 46' 30" N, 122 26' 3" W) after it.
    """
    gps_ifd = 26  # header 8 + IFD0 (2 + 12 + 4)
    data = gps_ifd + 2 + 4 * 12 + 4
    tiff = b"II*\x00" + struct.pack("<I", 8)
    tiff += struct.pack("<H", 1) + struct.pack("<HHII", 0x8825, 4, 1, gps_ifd) + bytes(4)
    tiff += struct.pack("<H", 4)
    tiff += struct.pack("<HHIHH", 1, 3, 1, reference, 0)  # GPSLatitudeRef as SHORT
    tiff += struct.pack("<HHII", 2, 5, 3, data)
    tiff += struct.pack("<HHI2s2x", 3, 2, 2, b"W\x00")
    tiff += struct.pack("<HHII", 4, 5, 3, data + 24)
    tiff += bytes(4)
    tiff += struct.pack("<6I", 37, 1, 46, 1, 1, 2) + struct.pack("<6I", 122, 1, 26, 1, 3, 1)
    return image_bytes("JPEG", exif=b"Exif\x00\x00" + tiff)


def workspace_once(tmp_path_factory, tiny_city: Path) -> Path:
    """The tiny app workspace, built on first use in this test session and then reused."""
    root = tmp_path_factory.getbasetemp() / "app_workspace"
    done = root / ".built"
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        build_workspace(tiny_city, root)
        done.touch()
    return root


EVALUATED_QUERIES = "queries_v1"


def evaluate_run(tiny_city: Path, workspace: Path, name: str, model: Path, dim: int) -> Path:
    """training.eval of `model` on the tiny city's queries_v1 into workspace/runs/name (its
    predictions saved), with the model copied beside it so that Retrieve can use it."""
    from training import eval as evaluation

    evaluation.main(
        [
            "--test_set_folder", str(tiny_city / "test"), "--resume_model", str(model),
            "--backbone", "ResNet18", "--fc_output_dim", str(dim),
            "--queries_folder", EVALUATED_QUERIES, "--device", "cpu", "--num_workers", "0",
            "--resize_test_imgs", "--image_size", "64", "--infer_batch_size", "32",
            "--workspace", str(workspace), "--save_dir", name,
        ]
    )  # fmt: skip
    shutil.copy(model, workspace / "runs" / name / "best_model.pth")
    return workspace / "runs" / name / f"eval_test_{EVALUATED_QUERIES}"


def evaluated_workspace_once(tmp_path_factory, tiny_city: Path, trained_model: Path) -> Path:
    """A workspace for the Failures page, built once per test session: the tiny city's
    catalog, runs/trained (the tiny trained run's model, 32-D, evaluated, with an index) and
    runs/random (random weights, 16-D, evaluated)."""
    from data_catalog.ingest import main as ingest_main
    from training.build_index import main as build_index_main

    root = tmp_path_factory.getbasetemp() / "failures_workspace"
    done = root / ".built"
    if done.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    ingest_main([str(tiny_city), "--db", str(root / "catalog.duckdb"), "--no_progress"])
    evaluate_run(tiny_city, root, "trained", trained_model, 32)
    database = str(tiny_city / "test" / "database")
    build_index_main(["--run_dir", str(root / "runs" / "trained"), "--database_folder", database,
                      *INDEX_FLAGS])  # fmt: skip
    random_model = save_random_run(root / "models" / "random", seed=3) / "best_model.pth"
    evaluate_run(tiny_city, root, "random", random_model, 16)
    done.touch()
    return root


@contextmanager
def catalog_write_lock(path: Path) -> Iterator[None]:
    """Another process holds a writing connection to the catalog at `path` meanwhile, as an
    ingest or a training run recording its results does (DuckDB then refuses every other
    process, readers included)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
            "sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
