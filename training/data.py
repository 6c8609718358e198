"""Datasets read from an SF-XL folder: CosPlace groups for training, database/queries for tests.

A folder X is read as the reference reads it: from `X_images_paths.txt` beside X when that
file exists (paths relative to X, in file order), else by walking X (sorted paths). Names
become arrays through the one bulk parser (data_catalog.name_table), the same one the
catalog ingest uses, so a folder works with or without a catalog and every reader reports
the same malformed names. Malformed names are counted and reported, never fatal; names of
more than one UTM zone are refused.

`load_train_set(folder, params, cache_dir)` keeps the parsed names and the partition in
cache_dir (training passes WORKSPACE/cache), so a second start skips both.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from torch.utils.data import Dataset

from core.descriptors import IMAGENET_MEAN, IMAGENET_STD
from core.geo import UTMZone, single_zone
from core.images import ImageError, load_image
from core.partition import Partition, PartitionParams
from data_catalog.name_cache import load_names, load_partition
from data_catalog.name_source import NameSource, NameSourceError, PathList, name_source, walk_images
from data_catalog.name_table import NameArrays, read_names
from training.augment import RandomWeather

log = logging.getLogger(__name__)


def dataset_source(folder: str | Path) -> NameSource:
    """Folder X, or its X_images_paths.txt; the folder must exist (it holds the images)."""
    source = name_source(folder)
    if not source.folder.is_dir():
        raise FileNotFoundError(
            f"{source.folder} is not a folder: {source.list_file} lists paths relative to it"
        )
    return source


def _check_names(source: NameSource, names: NameArrays) -> None:
    """The reference's sanity check (the first listed image must exist under the folder),
    then a warning for the malformed names left out."""
    if source.list_file is not None and len(names):
        first = names.paths[0]
        if not (source.folder / first).exists():
            raise FileNotFoundError(
                f"{first}, the first path in {source.list_file}, is not in {source.folder}; "
                f"the list must hold paths relative to {source.folder.name}/"
            )
    if names.malformed:
        path, reason = names.malformed[0]
        count = len(names.malformed)
        log.warning("%s: skipped %d malformed names, e.g. %s: %s", source, count, path, reason)


def list_images(folder: str | Path) -> list[str]:
    """Sorted image paths under `folder`, relative to it (sub-folders included)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return walk_images(folder)[0]


def read_folder(folder: str | Path, extra: tuple[str, ...] = ()) -> NameArrays:
    """The names of a folder (or its list) as arrays, malformed ones reported and left out.

    `extra` asks for more fields, e.g. ("pano_id",), as arrays in names.extra.
    """
    source = dataset_source(folder)
    names = read_names(source, extra=extra)
    _check_names(source, names)
    return names


@dataclass
class TrainSet:
    """The images of a train folder and their CosPlace classes and groups.

    Image i is paths[i]; partition.image_class[i] its class. Partition.class_members(group)
    gives the images of each class of a group (the only door to them).
    """

    root: Path
    paths: PathList
    partition: Partition
    zone: UTMZone
    malformed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    cache_entry: Path | None = None  # where the names and partition are cached, if anywhere


def load_train_set(
    folder: str | Path,
    params: PartitionParams,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> TrainSet:
    """Names of a train folder (or of its X_images_paths.txt) to classes and groups.

    With cache_dir, the parsed names and the partition are kept there and reused while the
    list of files is unchanged (see data_catalog.name_cache for what counts as a change).
    """
    source = dataset_source(folder)
    names, entry = load_names(source, Path(cache_dir) if cache_dir else None, progress)
    _check_names(source, names)
    if len(names) == 0:
        raise NameSourceError(f"{source} holds no SF-XL-named images to train on; check the folder")
    missing = np.isnan(names.heading)
    if missing.any():
        raise NameSourceError(
            f"{source}: {int(missing.sum())} images have no heading, e.g. "
            f"{names.paths[int(np.argmax(missing))]}; training needs headings for the classes"
        )
    zone = single_zone(names.zones(), source)
    part = load_partition(names, params, entry)
    return TrainSet(source.folder, names.paths, part, zone, names.malformed, entry)


def train_transform(
    image_size: int,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    random_resized_crop: float,
    grayscale: float = 0.0,
    blur: float = 0.0,
    weather: float = 0.0,
) -> T.Compose:
    """The reference's augmentation (a random resized crop and colour jitter), and optionally
    grey images, soft (Gaussian blur) images and simulated haze or low light (training.augment),
    each with its own probability.

    The crop comes first, the reverse of the reference's order: jitter is per pixel (contrast
    uses the mean grey level), so the result is alike, and jittering the smaller crop is
    faster when image_size is below the photos' size (1.2x at 128 -> 96 px).
    """
    steps = [
        T.RandomResizedCrop(
            [image_size, image_size], scale=[1 - random_resized_crop, 1], antialias=True
        ),
        T.ColorJitter(brightness, contrast, saturation, hue),
    ]
    if grayscale:
        steps.append(T.RandomGrayscale(grayscale))
    steps.append(T.ToTensor())
    if blur:
        steps.append(T.RandomApply([T.GaussianBlur(5, sigma=(0.4, 1.5))], p=blur))
    if weather:
        steps.append(RandomWeather(weather))
    return T.Compose([*steps, T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class GroupDataset(Dataset):
    """Item i is one random image of class i of a group, with label i (a batch = classes)."""

    def __init__(self, train_set: TrainSet, group: int, transform) -> None:
        self.root = train_set.root
        self.paths = train_set.paths
        self.classes = train_set.partition.class_members(group)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, class_index: int) -> tuple[torch.Tensor, int, str]:
        """(image, label, skipped): skipped lists the unreadable images drawn before it.

        A corrupt file must not end a run hours in: another image of the same class is
        drawn instead. The skipped ones travel with the item ("path<TAB>reason" lines)
        because DataLoader workers are other processes: the main process logs and counts
        them (training.train).
        """
        members = self.classes[class_index]
        skipped: list[str] = []
        # torch's RNG (in _draws): seeded per epoch and per DataLoader worker, so runs repeat.
        for chosen in _draws(members):
            try:
                image = load_image(self.root / self.paths[chosen])
            except ImageError as error:
                skipped.append(f"{self.paths[chosen]}\t{error}")
                continue
            return self.transform(image), class_index, "\n".join(skipped)
        raise ImageError(
            f"every image of class {class_index} is unreadable ({len(members)} files, e.g. "
            f"{self.paths[members[0]]}); remove or replace them, then --resume_train"
        )


def _draws(members: np.ndarray):
    """One random member, then (only if it was unreadable) the others in a random order.

    The usual case takes one number from torch's RNG, as a single draw would.
    """
    first = int(torch.randint(len(members), ()).item())
    yield members[first]
    rest = np.delete(members, first)
    yield from rest[torch.randperm(len(rest)).numpy()]


@dataclass
class TestSet:
    """A database and its queries, as in the reference's test datasets."""

    root: Path
    database_paths: list[str]  # relative to root
    queries_paths: list[str]
    database_utm: np.ndarray
    queries_utm: np.ndarray
    zone: UTMZone | None = None
    malformed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def name(self) -> str:
        return self.root.name


def _subset(folder: Path, sub: str) -> NameArrays:
    target = folder / sub
    if not target.is_dir():
        raise FileNotFoundError(f"{target} is missing: expected SF-XL test layout")
    return read_folder(target)


def load_test_set(folder: str | Path, queries_folder: str = "queries") -> TestSet:
    """database/ and queries_folder/ of folder, each read from its list when it has one."""
    folder = Path(folder)
    database = _subset(folder, "database")
    queries = _subset(folder, queries_folder)
    if len(database) == 0 or len(queries) == 0:
        raise NameSourceError(
            f"{folder}: no SF-XL-named images in database/ or {queries_folder}/; check the folder"
        )
    zone = single_zone(
        sorted(set(database.zones()) | set(queries.zones())),
        f"{folder} (database and {queries_folder})",
    )
    malformed = [(f"database/{p}", r) for p, r in database.malformed]
    malformed += [(f"{queries_folder}/{p}", r) for p, r in queries.malformed]
    return TestSet(
        folder,
        [f"database/{p}" for p in database.paths],
        [f"{queries_folder}/{p}" for p in queries.paths],
        np.stack([database.east, database.north], axis=1),
        np.stack([queries.east, queries.north], axis=1),
        zone,
        malformed,
    )
