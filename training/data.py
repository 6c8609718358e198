"""Datasets read from an SF-XL folder: CosPlace groups for training, database/queries for tests.

Labels come from the file names (data_catalog.names) and classes from core.partition, so a
folder works with or without a catalog. Malformed names are counted and reported, never fatal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from torch.utils.data import Dataset

from core.descriptors import IMAGENET_MEAN, IMAGENET_STD
from core.images import load_image
from core.partition import Partition, PartitionParams, partition
from data_catalog.names import MalformedNameError, SFXLName, parse_name

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
log = logging.getLogger(__name__)


def list_images(folder: str | Path) -> list[str]:
    """Sorted image paths under `folder`, relative to it (sub-folders included)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def parse_folder(folder: str | Path) -> tuple[list[str], list[SFXLName], list[MalformedNameError]]:
    """Relative paths and parsed names of the well-named images, and the malformed ones."""
    paths, names, malformed = [], [], []
    for path in list_images(folder):
        try:
            names.append(parse_name(path))
            paths.append(path)
        except MalformedNameError as error:
            malformed.append(error)
    if malformed:
        log.warning(
            "%s: skipped %d malformed file names, e.g. %s", folder, len(malformed), malformed[0]
        )
    return paths, names, malformed


def utm_of(names: list[SFXLName]) -> np.ndarray:
    return np.array([[n.east, n.north] for n in names], dtype=np.float64).reshape(-1, 2)


@dataclass
class TrainSet:
    root: Path
    paths: list[str]
    partition: Partition

    def classes_of_group(self, group: int) -> list[np.ndarray]:
        """Image indices of each class of `group`, in class-label order."""
        labels = self.partition.label_in_group()
        members = self.partition.images_of_group(group)
        order = members[np.argsort(labels[members], kind="stable")]
        counts = np.bincount(labels[members], minlength=len(self.partition.classes_of_group(group)))
        return np.split(order, np.cumsum(counts)[:-1])


def load_train_set(folder: str | Path, params: PartitionParams) -> TrainSet:
    paths, names, _ = parse_folder(folder)
    if not paths:
        raise ValueError(f"{folder} holds no SF-XL-named images to train on")
    missing_heading = [p for p, n in zip(paths, names, strict=True) if n.heading_deg is None]
    if missing_heading:
        raise ValueError(
            f"{folder}: {len(missing_heading)} images have no heading, e.g. "
            f"{missing_heading[0]}; training needs headings for the classes"
        )
    utm = utm_of(names)
    headings = np.array([n.heading_deg for n in names], dtype=np.float64)
    return TrainSet(Path(folder), paths, partition(utm[:, 0], utm[:, 1], headings, params))


def train_transform(
    image_size: int,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    random_resized_crop: float,
) -> T.Compose:
    """The reference's augmentation: colour jitter, then a random resized crop."""
    return T.Compose(
        [
            T.ColorJitter(brightness, contrast, saturation, hue),
            T.RandomResizedCrop(
                [image_size, image_size], scale=[1 - random_resized_crop, 1], antialias=True
            ),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class GroupDataset(Dataset):
    """Item i is one random image of class i of a group, with label i (a batch = classes)."""

    def __init__(self, train_set: TrainSet, group: int, transform) -> None:
        self.root = train_set.root
        self.paths = train_set.paths
        self.classes = train_set.classes_of_group(group)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, class_index: int) -> tuple[torch.Tensor, int]:
        members = self.classes[class_index]
        # torch's RNG: seeded per epoch and per DataLoader worker, so runs repeat exactly.
        chosen = members[int(torch.randint(len(members), ()).item())]
        image = load_image(self.root / self.paths[chosen])
        return self.transform(image), class_index


@dataclass
class TestSet:
    """A database and its queries, as in the reference's test datasets."""

    root: Path
    database_paths: list[str]  # relative to root
    queries_paths: list[str]
    database_utm: np.ndarray
    queries_utm: np.ndarray

    @property
    def name(self) -> str:
        return self.root.name


def load_test_set(folder: str | Path, queries_folder: str = "queries") -> TestSet:
    folder = Path(folder)
    for sub in ("database", queries_folder):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(f"{folder / sub} is missing: expected SF-XL test layout")
    db_paths, db_names, _ = parse_folder(folder / "database")
    q_paths, q_names, _ = parse_folder(folder / queries_folder)
    if not db_paths or not q_paths:
        raise ValueError(f"{folder}: empty database or {queries_folder}")
    return TestSet(
        folder,
        [f"database/{p}" for p in db_paths],
        [f"{queries_folder}/{p}" for p in q_paths],
        utm_of(db_names),
        utm_of(q_names),
    )
