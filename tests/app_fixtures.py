"""Tiny workspaces for the app tests: the tiny synthetic city, its catalog, random-weight runs.

A randomly initialised ResNet-18 with 16-D descriptors, saved as a state_dict, is a valid
run: the app and training.build_index only need its weights to be a CosPlace network.
"""

from __future__ import annotations

import io
import shutil
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


def image_bytes(fmt: str, size=(64, 48), colour=(120, 160, 200), exif=None) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", size, colour)
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
