"""Parsed names and their partition, kept on disk so that the second start of a run is quick.

Layout, under a cache folder (training uses WORKSPACE/cache, e.g. data/cache):

    names-<folder>-<source id>-<content key>/      one per version of a file list
        start.npy length.npy                       where each path lies in the list
        east.npy north.npy heading.npy zone_number.npy zone_letter.npy year.npy
        malformed.tsv                              path<TAB>reason of the refused names
        partition-<params key>.npz                 one per (M, alpha, N, L,
                                                   min_images_per_class, group_order)

The content key says which list of files was parsed:
- a folder read from `X_images_paths.txt`: the list file's real path, size, modification
  time (ns) and inode. Any rewrite of the list changes it; an edit that keeps the size and
  the modification time (say, a restore with `touch -r`) is not noticed: delete the
  folder above then. Reading the list to hash it would cost as much as parsing it.
- a walked folder: the hash of its sorted list of image paths, which the walk produces
  anyway; adding, removing or renaming an image changes it.
Both also hold CACHE_VERSION and the bulk parser's pattern, so a change of the parser drops
old entries. When a list changes, the entries of its older versions are deleted.

Entries are written whole by core.files (a temporary folder or file, then a rename), so a killed
process or two runs starting together never leave a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import astuple
from pathlib import Path

import numpy as np

from core import files
from core.partition import Partition, PartitionParams, partition
from data_catalog.name_pattern import FAST_NAME_PATTERN
from data_catalog.name_source import NameSource, PathList, joined_paths, walk_images
from data_catalog.name_table import NameArrays, read_names

CACHE_VERSION = 1
_ARRAYS = ("east", "north", "heading", "zone_number", "zone_letter", "year")
_PARTITION_ARRAYS = (
    "image_class",
    "image_group",
    "class_keys",
    "class_sizes",
    "class_group",
    "group_keys",
    "group_offsets",
)


def _digest(*parts: object) -> str:
    text = "\0".join(str(part) for part in (CACHE_VERSION, FAST_NAME_PATTERN, *parts))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _source_id(source: NameSource) -> str:
    """Names the source (not its content): the entries of one source share it."""
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in source.folder.name)[:40]
    return f"names-{slug}-{_digest(source.folder, source.list_file)[:8]}"


def list_file_key(list_file: Path) -> str:
    stat = list_file.stat()
    return _digest(os.path.realpath(list_file), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def walk_key(buffer: bytes) -> str:
    return _digest(hashlib.sha256(buffer).hexdigest())


def load_names(
    source: NameSource, cache_dir: Path | None, progress: bool = False
) -> tuple[NameArrays, Path | None]:
    """The parsed names of a source, from the cache when its list has not changed.

    Returns the names and their cache entry (None without a cache folder).
    """
    walked, buffer = None, None
    if source.list_file is None:
        walked = walk_images(source.folder, progress)
        buffer = joined_paths(walked[0])
    if cache_dir is None:
        return read_names(source, progress=progress, walked=walked), None
    key = list_file_key(source.list_file) if source.list_file else walk_key(buffer)
    entry = Path(cache_dir) / f"{_source_id(source)}-{key}"
    if entry.is_dir():
        return _read_entry(entry, source, buffer), entry
    names = read_names(source, progress=progress, walked=walked)
    _write_entry(entry, names)
    return names, entry


def _read_entry(entry: Path, source: NameSource, buffer: bytes | None) -> NameArrays:
    # Memory-mapped: nothing is read until used, and DataLoader workers share the pages.
    names = ("start", "length", *_ARRAYS)
    arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in names}
    file = source.list_file if buffer is None else None
    paths = PathList(arrays.pop("start"), arrays.pop("length"), file=file, buffer=buffer)
    text = (entry / "malformed.tsv").read_text(encoding="utf-8")
    malformed = [line.partition("\t")[::2] for line in text.splitlines()]  # (path, reason)
    return NameArrays(paths=paths, malformed=malformed, **arrays)


def _write_entry(entry: Path, names: NameArrays) -> None:
    def fill(work: Path) -> None:
        np.save(work / "start.npy", names.paths.start)
        np.save(work / "length.npy", names.paths.length)
        for name in _ARRAYS:
            np.save(work / f"{name}.npy", getattr(names, name))
        # A path may hold a tab but never a line break (those are refused as malformed).
        rows = "".join(f"{path}\t{reason}\n" for path, reason in names.malformed)
        (work / "malformed.tsv").write_text(rows, encoding="utf-8")
        _drop_other_versions(entry)

    files.write_folder(entry, fill)  # another process may have written the same entry first


def _drop_other_versions(entry: Path) -> None:
    """Entries of older versions of the same list: never read again."""
    prefix = entry.name.rsplit("-", 1)[0] + "-"
    for other in entry.parent.glob(prefix + "*"):
        if other != entry and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)


def params_key(params: PartitionParams) -> str:
    return _digest(*astuple(params))


def load_partition(names: NameArrays, params: PartitionParams, entry: Path | None) -> Partition:
    """The partition of the names for params, from the cache entry when computed before."""
    if entry is None:
        return partition(names.east, names.north, names.heading, params)
    file = entry / f"partition-{params_key(params)}.npz"
    if file.is_file():
        with np.load(file) as stored:
            return Partition(params=params, **{name: stored[name] for name in _PARTITION_ARRAYS})
    result = partition(names.east, names.north, names.heading, params)
    arrays = {name: getattr(result, name) for name in _PARTITION_ARRAYS}
    files.write_whole(file, lambda out: np.savez(out, **arrays))
    return result
