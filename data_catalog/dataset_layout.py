"""Where a folder or list sits in an SF-XL dataset: its root and its prefix in it.

A dataset root holds train/, val/<subset>/ and test/<subset>/ (subsets: database, queries,
queries_v1, queries_v2...). A split, a subset or a sub-folder of a split (train/2013) is
placed in its root, so that paths are stored relative to the root whichever folder is
ingested; a folder outside any such layout is refused with a sentence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from data_catalog.catalog import SPLITS
from data_catalog.name_source import NameSourceError, list_file_of, name_source

SUBSET_FOLDERS = ("database", "queries", "queries_v1", "queries_v2")


@dataclass(frozen=True)
class Source:
    dataset_root: Path  # the folder holding train/, val/, test/
    prefix: str  # the listed folder relative to dataset_root ('' or e.g. 'val/database/')
    folder: Path  # the folder whose files are listed
    list_file: Path | None  # a *_images_paths.txt file listing them, or None to walk
    # For a walked dataset root: its parts that have their own list, read from it instead.
    listed_parts: tuple[Source, ...] = ()


def _is_subset_folder(name: str) -> bool:
    return name in SUBSET_FOLDERS or name.startswith(("queries", "database"))


def _split_prefix(folder: Path) -> str | None:
    """'train/', 'val/' or 'val/database/' when folder is a split or a subset folder."""
    if folder.name in SPLITS:
        return f"{folder.name}/"
    if folder.parent.name in ("val", "test") and _is_subset_folder(folder.name):
        return f"{folder.parent.name}/{folder.name}/"
    return None


def _is_dataset_root(folder: Path) -> bool:
    return any((folder / split).is_dir() for split in SPLITS)


def _place(folder: Path, listed: bool) -> tuple[Path, str]:
    """(dataset root, prefix of folder in it); a folder outside any layout is refused."""
    prefix = _split_prefix(folder)
    if prefix is not None:
        return folder.parents[prefix.count("/") - 1], prefix
    if _is_dataset_root(folder) or (listed and not folder.is_dir()):
        return folder, ""  # a root, or a list of root-relative paths (no folder needed)
    for ancestor in folder.parents:  # a sub-folder of a split: train/2013
        prefix = _split_prefix(ancestor)
        if prefix is not None:
            root = ancestor.parents[prefix.count("/") - 1]
            return root, folder.relative_to(root).as_posix() + "/"
        if _is_dataset_root(ancestor):
            break
    raise NameSourceError(
        f"{folder} is neither a dataset root (a folder holding train/, val/ or test/) nor "
        "inside one of its splits; give the dataset root or one of its split folders"
    )


def _listed_parts(root: Path, prefix: str) -> tuple[Source, ...]:
    """The parts (train, val/<subset>, test/<subset>) under root/prefix that have a list."""
    parts = [root / "train"] if prefix == "" else []
    for split in ("val", "test"):
        if prefix in ("", f"{split}/") and (root / split).is_dir():
            parts += sorted(p for p in (root / split).iterdir() if _is_subset_folder(p.name))
    return tuple(
        Source(root, _split_prefix(part), part, list_file_of(part))
        for part in parts
        if list_file_of(part).is_file()
    )


def resolve_source(source: str | os.PathLike) -> Source:
    """Find the dataset root and the prefix of a folder or *_images_paths.txt file.

    A folder X with X_images_paths.txt beside it is read from that list, as training does.
    """
    found = name_source(source)
    root, prefix = _place(found.folder, found.list_file is not None)
    parts = ()
    if found.list_file is None and prefix in ("", "val/", "test/"):
        parts = _listed_parts(root, prefix)
    return Source(root, prefix, found.folder, found.list_file, parts)
