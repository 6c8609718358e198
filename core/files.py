"""Files written whole: a kill at any moment leaves the old version or the new one.

Each writer fills a temporary file in the destination's folder (so the rename stays on one
file system), flushes it to disk, renames it over the destination and flushes the folder,
so that the rename itself survives a power cut.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename inside `folder` durable (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def temporary_path(path: str | os.PathLike) -> Path:
    """The temporary sibling of `path` that atomic writers fill before the rename."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp")


def write_whole(path: str | os.PathLike, fill: Callable[[BinaryIO], object]) -> Path:
    """Call fill(file) on a temporary sibling, fsync it, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as file:
            fill(file)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    fsync_folder(path.parent)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return write_whole(path, lambda file: file.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


def torch_save(obj, path: str | os.PathLike) -> Path:
    """torch.save, written whole (checkpoints, best models)."""
    return write_whole(path, lambda file: torch.save(obj, file))
