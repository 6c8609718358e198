"""Files written whole: a kill at any moment leaves the old version or the new one.

Each writer fills a temporary sibling with a unique name (so two writers of one file never
share it, and the rename stays on one file system), flushes it to disk, renames it over the
destination and flushes the folder, so that the rename itself survives a power cut. This is
the one place in the project that renames files into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import torch

# Every temporary sibling ends with this, so folder listings can leave unfinished writes out.
TEMPORARY_SUFFIX = ".tmp"


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


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def temporary_siblings(path: str | os.PathLike) -> list[Path]:
    """Temporary siblings of `path` left by writes that have not been renamed (yet)."""
    path = Path(path)
    pattern = _temporary_prefix(path) + "*" + TEMPORARY_SUFFIX
    return sorted(path.parent.glob(pattern))


def new_file_mode() -> int:
    """The mode open() gives a new file: 0o666 less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def stage(path: str | os.PathLike, fill: Callable[[BinaryIO], object]) -> Path:
    """Call fill(file) on a new uniquely named sibling of `path`, fsync it, return its path.

    `commit` renames it onto `path`; a failed fill removes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=_temporary_prefix(path), suffix=TEMPORARY_SUFFIX, dir=path.parent
    )
    os.fchmod(handle, new_file_mode())  # mkstemp's 0o600 would hide results from other users
    tmp = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            fill(file)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def commit(tmp: Path, path: str | os.PathLike) -> Path:
    """Rename a staged file onto `path`, durably."""
    path = Path(path)
    os.replace(tmp, path)
    fsync_folder(path.parent)
    return path


def write_whole(path: str | os.PathLike, fill: Callable[[BinaryIO], object]) -> Path:
    """Call fill(file) on a temporary sibling, fsync it, then rename it onto `path`."""
    tmp = stage(path, fill)
    try:
        return commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone after a rename; left over after a failed one


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return write_whole(path, lambda file: file.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


def torch_save(obj, path: str | os.PathLike) -> Path:
    """torch.save, written whole (checkpoints, best models)."""
    return write_whole(path, lambda file: torch.save(obj, file))


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether `path` is a temporary sibling (file or folder) that stage or
    new_sibling_folder made, not a finished file."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)


def new_sibling_folder(path: str | os.PathLike) -> Path:
    """A new empty folder with a unique temporary name beside `path` (.NAME.XXXX.tmp): fill
    it, then swap_folder puts it at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = tempfile.mkdtemp(
        prefix=_temporary_prefix(path), suffix=TEMPORARY_SUFFIX, dir=path.parent
    )
    return Path(name)


def swap_folder(filled: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Put the folder `filled` (from new_sibling_folder) at `path`, replacing a folder there.

    The earlier folder is renamed aside first and removed only once the new one is in
    place: until then a reader finds the whole old folder, and a failed rename leaves it.
    """
    filled, path = Path(filled), Path(path)
    aside = None
    if path.exists():
        aside = new_sibling_folder(path)
        os.rename(path, aside / path.name)  # a rename inside one file system
    try:
        os.rename(filled, path)
    except BaseException:
        if aside is not None:  # put the earlier folder back
            os.rename(aside / path.name, path)
            aside.rmdir()
        raise
    fsync_folder(path.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return path


def restore_set_aside(path: str | os.PathLike) -> bool:
    """Put back a folder that swap_folder set aside when its process was killed between its
    two renames (`path` missing, the earlier folder inside a hidden sibling). True if so."""
    path = Path(path)
    if path.exists():
        return False
    for sibling in temporary_siblings(path):
        earlier = sibling / path.name
        if earlier.is_dir():
            os.rename(earlier, path)
            shutil.rmtree(sibling, ignore_errors=True)
            fsync_folder(path.parent)
            return True
    return False


@contextlib.contextmanager
def replacing_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new sibling folder to fill; when the block ends it takes `path`'s place
    (swap_folder), so `path` never mixes old and new files. After an error in the block it
    is removed and `path` stays as it was."""
    restore_set_aside(path)
    filled = new_sibling_folder(path)
    try:
        yield filled
        swap_folder(filled, path)
    finally:
        if filled.exists():  # the block failed, or the swap did
            shutil.rmtree(filled, ignore_errors=True)


def write_folder(path: str | os.PathLike, fill: Callable[[Path], object]) -> bool:
    """Call fill(folder) on a temporary sibling folder, then rename it to `path`.

    A folder cannot be renamed over another: when `path` appears meanwhile (another process
    wrote the same content first) the new one is dropped. Returns whether this call wrote it.
    """
    path = Path(path)
    work = new_sibling_folder(path)
    try:
        fill(work)
        os.rename(work, path)
    except OSError:
        if not path.is_dir():
            raise
        return False
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fsync_folder(path.parent)
    return True
