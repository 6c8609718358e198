"""The CosPlace partition: classes (paper Eq. 1) and groups (Eq. 2), vectorised over arrays.

This is the only place the two formulas are written; the catalog, training and the app call it.

class of an image: (floor(east / M), floor(north / M), floor(heading / alpha))
group of a class:  (e mod N, n mod N, h mod L)

Which group is "group 0" (training takes the first groups_num) is set by group_order:
- "reference" (default), the reference implementation's order: groups are numbered in the
  order in which their first kept class first appears in the images as given (the sorted
  paths of a walked folder, or the lines of an X_images_paths.txt file, in file order), so
  `--groups_num 8` trains on the same 8 groups as the reference on the same list. Within a
  group, classes are numbered in the same order of first appearance.
- "size": groups ranked by number of kept classes, largest first, ties broken by (u, v, w);
  within a group, classes in (e, n, h) order. Useful on small datasets, where the first
  groups of the list may be nearly empty.
Groups left without any kept class come last, in (u, v, w) order, in both cases.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

# The paper's and the reference implementation's defaults; training flags default to these.
DEFAULT_M = 10
DEFAULT_ALPHA = 30
DEFAULT_N = 5
DEFAULT_L = 2
DEFAULT_MIN_IMAGES_PER_CLASS = 10
DEFAULT_GROUPS_NUM = 8
GROUP_ORDERS = ("reference", "size")
DEFAULT_GROUP_ORDER = "reference"


@dataclass(frozen=True)
class PartitionParams:
    M: float = DEFAULT_M
    alpha: float = DEFAULT_ALPHA
    N: int = DEFAULT_N
    L: int = DEFAULT_L
    min_images_per_class: int = DEFAULT_MIN_IMAGES_PER_CLASS
    group_order: str = DEFAULT_GROUP_ORDER

    def __post_init__(self) -> None:
        if self.group_order not in GROUP_ORDERS:
            raise ValueError(
                f"group_order must be one of {', '.join(GROUP_ORDERS)}, got {self.group_order!r}"
            )
        if not self.M > 0:
            raise ValueError(f"M must be a positive number of metres, got {self.M}")
        if not 0 < self.alpha <= 360:
            raise ValueError(f"alpha must be in (0, 360] degrees, got {self.alpha}")
        if int(self.N) != self.N or self.N < 1:
            raise ValueError(f"N must be an integer >= 1, got {self.N}")
        if int(self.L) != self.L or self.L < 1:
            raise ValueError(f"L must be an integer >= 1, got {self.L}")
        if self.min_images_per_class < 1:
            raise ValueError(f"min_images_per_class must be >= 1, got {self.min_images_per_class}")
        heading_classes = 360 / self.alpha
        if heading_classes == int(heading_classes) > 1 and int(heading_classes) % self.L:
            # The last heading class wraps onto the first: with an uneven count they would
            # be adjacent yet land in one group, breaking the paper's property 4 at 360 deg.
            warnings.warn(
                f"360/alpha = {int(heading_classes)} heading classes is not a multiple of "
                f"L={self.L}: classes either side of North can share a group",
                stacklevel=3,
            )

    @property
    def num_groups(self) -> int:
        return self.N * self.N * self.L


def _cell_index(values: np.ndarray, step: float, wrap: float | None = None) -> np.ndarray:
    """floor(values / step) as int64 (after values mod wrap), with one float temporary."""
    scaled = np.mod(values, wrap) if wrap is not None else np.divide(values, 1.0)
    np.divide(scaled, step, out=scaled)
    np.floor(scaled, out=scaled)
    return scaled.astype(np.int64)


def heading_class(heading, alpha: float) -> np.ndarray:
    """Eq. 1's third index: floor((heading mod 360) / alpha)."""
    return _cell_index(np.asarray(heading, dtype=np.float64), alpha, wrap=360.0)


def _class_columns(east, north, heading, M: float, alpha: float) -> list[np.ndarray]:
    """Eq. 1: the e, n and h indices of each image, one int64 column each."""
    heading = np.asarray(heading, dtype=np.float64)
    if np.isnan(heading).any():
        raise ValueError("heading has missing values; every training image needs a heading")
    return [
        _cell_index(np.asarray(east, dtype=np.float64), M),
        _cell_index(np.asarray(north, dtype=np.float64), M),
        heading_class(heading, alpha),
    ]


def class_keys(east, north, heading, M: float, alpha: float) -> np.ndarray:
    """Eq. 1: integer (e, n, h) cell-and-heading indices, one row per image."""
    return np.stack(_class_columns(east, north, heading, M, alpha), axis=1).reshape(-1, 3)


def group_keys(keys: np.ndarray, N: int, L: int) -> np.ndarray:
    """Eq. 2: (u, v, w) = (e mod N, n mod N, h mod L) for each row of class keys."""
    return np.mod(keys, np.array([N, N, L], dtype=np.int64))


def _class_codes(east, north, heading, M: float, alpha: float):
    """Eq. 1 as one int64 per image, equal for equal classes, ordered like (e, n, h) rows.

    Returns (codes, keys_of) where keys_of(codes) gives the (e, n, h) rows back. Built one
    column at a time, so 41M images never hold an [n, 3] array beside its copies.
    """
    columns = _class_columns(east, north, heading, M, alpha)
    if len(columns[0]) == 0:
        return np.zeros(0, dtype=np.int64), lambda codes: np.zeros((0, 3), dtype=np.int64)
    low = np.array([c.min() for c in columns])
    spans = np.array([c.max() for c in columns]) - low + 1
    if float(np.prod(spans.astype(np.float64))) >= 2**62:
        # Spans too wide to pack (a continent at M=1 m): number the distinct rows instead.
        keys = np.stack(columns, axis=1)
        unique_keys, inverse = np.unique(keys, axis=0, return_inverse=True)
        return inverse.reshape(-1).astype(np.int64), lambda codes: unique_keys[codes]
    codes = columns.pop(0)
    codes -= low[0]
    for column, base, span in zip(columns, low[1:], spans[1:], strict=True):
        codes *= span
        column -= base
        codes += column
    del columns

    def keys_of(packed: np.ndarray) -> np.ndarray:
        keys = np.empty((len(packed), 3), dtype=np.int64)
        rest = np.asarray(packed, dtype=np.int64)
        rest, keys[:, 2] = np.divmod(rest, spans[2])
        keys[:, 0], keys[:, 1] = np.divmod(rest, spans[1])
        return keys + low

    return codes, keys_of


@dataclass
class Partition:
    """Classes and groups of a set of images.

    Classes are numbered group by group, so the classes of group g are the contiguous ids
    group_offsets[g] : group_offsets[g + 1]. Groups are numbered as params.group_order says
    (see the module docstring). Images of dropped classes (fewer than min_images_per_class
    images) have class and group -1.
    """

    params: PartitionParams
    image_class: np.ndarray  # [num_images] global class id, -1 if dropped
    image_group: np.ndarray  # [num_images] group rank, -1 if dropped
    class_keys: np.ndarray  # [num_classes, 3] (e, n, h) indices of Eq. 1
    class_sizes: np.ndarray  # [num_classes] images per class
    class_group: np.ndarray  # [num_classes] group rank
    group_keys: np.ndarray  # [num_groups, 3] (u, v, w) of Eq. 2, in rank order
    group_offsets: np.ndarray  # [num_groups + 1]

    @property
    def num_classes(self) -> int:
        return len(self.class_keys)

    @property
    def num_groups(self) -> int:
        return len(self.group_keys)

    def classes_of_group(self, group: int) -> np.ndarray:
        return np.arange(self.group_offsets[group], self.group_offsets[group + 1])

    def images_of_group(self, group: int) -> np.ndarray:
        return np.flatnonzero(self.image_group == group)

    def class_members(self, group: int) -> list[np.ndarray]:
        """Image indices of each class of `group`, in class-label order (label i -> item i)."""
        members = self.images_of_group(group)
        labels = self.image_class[members] - self.group_offsets[group]
        order = members[np.argsort(labels, kind="stable")]
        counts = np.bincount(labels, minlength=len(self.classes_of_group(group)))
        return np.split(order, np.cumsum(counts)[:-1])


def partition(east, north, heading, params: PartitionParams | None = None) -> Partition:
    """Split images into CosPlace classes and groups (paper Sec. 4.1)."""
    params = params or PartitionParams()
    east = np.asarray(east, dtype=np.float64)
    if not (len(east) == len(north) == len(heading)):
        raise ValueError("east, north and heading must have the same length")
    codes, keys_of = _class_codes(east, north, heading, params.M, params.alpha)
    unique_codes, first_index, image_to_raw, raw_sizes = np.unique(
        codes, return_index=True, return_inverse=True, return_counts=True
    )
    del codes
    raw_keys = keys_of(unique_codes)
    kept_raw = raw_sizes >= params.min_images_per_class

    # Every (u, v, w) is a group, even one left empty by the filter: there are N*N*L of them.
    all_groups = np.stack(
        np.meshgrid(np.arange(params.N), np.arange(params.N), np.arange(params.L), indexing="ij"),
        axis=-1,
    ).reshape(-1, 3)
    raw_groups = group_keys(raw_keys, params.N, params.L)
    raw_group_flat = (raw_groups[:, 0] * params.N + raw_groups[:, 1]) * params.L + raw_groups[:, 2]
    classes_per_group = np.bincount(raw_group_flat[kept_raw], minlength=params.num_groups)
    kept_ids = np.flatnonzero(kept_raw)
    if params.group_order == "size":
        # Largest group first; stable sort keeps (u, v, w) order among ties.
        rank_to_flat = np.argsort(-classes_per_group, kind="stable")
    else:
        # Reference order: kept classes by first appearance, groups by their first class.
        kept_ids = kept_ids[np.argsort(first_index[kept_ids], kind="stable")]
        first_seen = np.full(params.num_groups, len(east), dtype=np.int64)
        seen_groups, position = np.unique(raw_group_flat[kept_ids], return_index=True)
        first_seen[seen_groups] = first_index[kept_ids[position]]
        # Empty groups keep len(east): last, and in (u, v, w) order by the stable sort.
        rank_to_flat = np.argsort(first_seen, kind="stable")
    flat_to_rank = np.empty_like(rank_to_flat)
    flat_to_rank[rank_to_flat] = np.arange(params.num_groups)

    kept_rank = flat_to_rank[raw_group_flat[kept_ids]]
    # Classes by group rank, then in kept_ids order: (e, n, h) for "size", first appearance
    # for "reference".
    order = kept_ids[np.argsort(kept_rank, kind="stable")]
    raw_to_class = np.full(len(unique_codes), -1, dtype=np.int64)
    raw_to_class[order] = np.arange(len(order))

    class_group = flat_to_rank[raw_group_flat[order]]
    image_class = raw_to_class[image_to_raw.reshape(-1)]
    image_group = np.full_like(image_class, -1)
    kept = image_class >= 0
    image_group[kept] = class_group[image_class[kept]]
    offsets = np.concatenate([[0], np.cumsum(classes_per_group[rank_to_flat])]).astype(np.int64)
    return Partition(
        params=params,
        image_class=image_class,
        image_group=image_group,
        class_keys=raw_keys[order],
        class_sizes=raw_sizes[order].astype(np.int64),
        class_group=class_group.astype(np.int64),
        group_keys=all_groups[rank_to_flat],
        group_offsets=offsets,
    )
