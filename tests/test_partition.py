"""The paper's four properties of CosPlace groups (Sec. 4.1), on random data."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.partition import PartitionParams, class_keys, partition

# Uneven heading wraps warn (see PartitionParams); the properties are checked regardless.
pytestmark = pytest.mark.filterwarnings("ignore:360/alpha")

params_strategy = st.builds(
    PartitionParams,
    M=st.sampled_from([1, 5, 10, 20, 7.5]),
    alpha=st.sampled_from([30, 45, 60, 90, 120, 360]),
    N=st.integers(1, 6),
    L=st.integers(1, 3),
    min_images_per_class=st.just(1),
)


@st.composite
def images(draw):
    count = draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    span = draw(st.sampled_from([30.0, 200.0, 2000.0]))
    rng = np.random.default_rng(seed)
    east = 550_000 + rng.uniform(-span, span, count)
    north = 4_180_000 + rng.uniform(-span, span, count)
    heading = rng.uniform(0, 360, count)
    return east, north, heading


@settings(max_examples=60, deadline=None)
@given(images(), params_strategy)
def test_each_class_belongs_to_exactly_one_group(data, params):
    part = partition(*data, params=params)
    for cls in np.unique(part.image_class):
        assert len(np.unique(part.image_group[part.image_class == cls])) == 1
    # and the group's contiguous class range holds the class
    for cls, group in enumerate(part.class_group):
        assert part.group_offsets[group] <= cls < part.group_offsets[group + 1]


@settings(max_examples=60, deadline=None)
@given(images(), params_strategy)
def test_same_group_different_class_are_far_apart(data, params):
    east, north, heading = data
    part = partition(*data, params=params)
    same_group = part.image_group[:, None] == part.image_group[None, :]
    different_class = part.image_class[:, None] != part.image_class[None, :]
    pairs = same_group & different_class
    spatial = np.maximum(
        np.abs(east[:, None] - east[None, :]), np.abs(north[:, None] - north[None, :])
    )
    angular = np.abs(heading[:, None] - heading[None, :])
    tolerance = 1e-6
    far = (spatial >= params.M * (params.N - 1) - tolerance) | (
        angular >= params.alpha * (params.L - 1) - tolerance
    )
    assert np.all(far[pairs])


@settings(max_examples=30, deadline=None)
@given(images(), params_strategy)
def test_number_of_groups_is_n_n_l(data, params):
    part = partition(*data, params=params)
    assert part.num_groups == params.N * params.N * params.L
    assert len({tuple(k) for k in part.group_keys}) == part.num_groups
    assert part.group_offsets[-1] == part.num_classes


@settings(max_examples=60, deadline=None)
@given(images(), params_strategy)
def test_no_adjacent_classes_in_one_group(data, params):
    part = partition(*data, params=params)
    keys = part.class_keys
    heading_classes = int(round(360 / params.alpha))
    delta = np.abs(keys[:, None, :] - keys[None, :, :])
    # Heading classes wrap around North only when 360/alpha of them fill the circle.
    delta[..., 2] = np.minimum(delta[..., 2], heading_classes - delta[..., 2])
    adjacent = np.all(delta <= 1, axis=-1) & ~np.eye(len(keys), dtype=bool)
    same_group = part.class_group[:, None] == part.class_group[None, :]
    divisible = heading_classes % params.L == 0
    if params.N > 1 and params.L > 1 and divisible:
        assert not np.any(adjacent & same_group)


def test_min_images_per_class_drops_small_classes():
    east = np.array([5.0] * 10 + [25.0] * 3)
    north = np.zeros(13)
    heading = np.zeros(13)
    part = partition(east, north, heading, PartitionParams(min_images_per_class=10))
    assert part.num_classes == 1
    assert np.all(part.image_class[:10] == 0)
    assert np.all(part.image_class[10:] == -1) and np.all(part.image_group[10:] == -1)


def test_all_classes_dropped_gives_an_empty_partition():
    part = partition([1.0, 50.0], [1.0, 1.0], [0.0, 0.0], PartitionParams(min_images_per_class=2))
    assert part.num_classes == 0 and part.num_groups == 50
    assert part.image_class.tolist() == [-1, -1] and part.image_group.tolist() == [-1, -1]


def test_eq1_and_eq2_on_a_worked_example():
    # east 543037.38 -> cell 54303, north 4180974.80 -> 418097, heading 134 -> 4 (alpha=30)
    keys = class_keys([543037.38], [4180974.80], [134], M=10, alpha=30)
    assert keys.tolist() == [[54303, 418097, 4]]
    part = partition([543037.38], [4180974.80], [134], PartitionParams(min_images_per_class=1))
    # group (54303 mod 5, 418097 mod 5, 4 mod 2) = (3, 2, 0)
    assert part.group_keys[part.class_group[0]].tolist() == [3, 2, 0]


def test_size_order_ranks_groups_by_size_then_key_and_is_deterministic():
    rng = np.random.default_rng(1)
    east, north = rng.uniform(0, 300, 2000), rng.uniform(0, 300, 2000)
    heading = rng.uniform(0, 360, 2000)
    params = PartitionParams(min_images_per_class=2, group_order="size")
    first = partition(east, north, heading, params)
    again = partition(east, north, heading, params)
    sizes = np.diff(first.group_offsets)
    assert np.all(sizes[:-1] >= sizes[1:])
    np.testing.assert_array_equal(first.image_class, again.image_class)
    np.testing.assert_array_equal(first.group_keys, again.group_keys)
    for group in range(first.num_groups):
        members = first.images_of_group(group)
        assert np.all(np.isin(first.image_class[members], first.classes_of_group(group)))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"M": 0}, "M must"), ({"N": 0}, "N must"), ({"L": 1.5}, "L must"), ({"alpha": 400}, "alpha")],
)
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PartitionParams(**kwargs)


def test_uneven_heading_wrap_warns():
    with pytest.warns(UserWarning, match="not a multiple of L"):
        PartitionParams(alpha=30, L=5)


def test_missing_heading_is_an_error():
    with pytest.raises(ValueError, match="heading"):
        partition([1.0], [1.0], [np.nan])


def test_reference_group_order_on_a_hand_worked_list():
    """M=10, alpha=90, N=2, L=2, min 2 images: 8 groups (u, v, w) = (e%2, n%2, h%2).

    image  east north heading -> class (e, n, h) -> group (u, v, w)
      0     25    5     10        (2, 0, 0)          (0, 0, 0)   kept (images 0, 5)
      1     15    5     10        (1, 0, 0)          (1, 0, 0)   dropped (1 image)
      2      5   15    100        (0, 1, 1)          (0, 1, 1)   kept (images 2, 3)
      3      5   15    120        (0, 1, 1)
      4     35   25    190        (3, 2, 2)          (1, 0, 0)   kept (images 4, 6)
      5     25    5     20        (2, 0, 0)
      6     35   25    200        (3, 2, 2)
      7      5    5     10        (0, 0, 0)          (0, 0, 0)   kept (images 7, 8)
      8      5    5     10        (0, 0, 0)
    Groups by first appearance of a kept class: (0,0,0) at image 0, (0,1,1) at 2, (1,0,0)
    at 4 (its class at image 1 was dropped, so image 1 does not count), then the five empty
    groups in (u, v, w) order. Classes in a group by first appearance: (2,0,0) then (0,0,0).
    By size, (0,0,0) with 2 classes would come first instead.
    """
    east = [25, 15, 5, 5, 35, 25, 35, 5, 5]
    north = [5, 5, 15, 15, 25, 5, 25, 5, 5]
    heading = [10, 10, 100, 120, 190, 20, 200, 10, 10]
    params = PartitionParams(M=10, alpha=90, N=2, L=2, min_images_per_class=2)
    part = partition(east, north, heading, params)
    expected_groups = [(0, 0, 0), (0, 1, 1), (1, 0, 0)]
    expected_groups += [(0, 0, 1), (0, 1, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)]
    assert [tuple(g) for g in part.group_keys.tolist()] == expected_groups
    assert part.class_keys.tolist() == [[2, 0, 0], [0, 0, 0], [0, 1, 1], [3, 2, 2]]
    assert part.group_offsets.tolist() == [0, 2, 3, 4, 4, 4, 4, 4, 4]
    assert part.image_class.tolist() == [0, -1, 2, 2, 3, 0, 3, 1, 1]
    assert part.image_group.tolist() == [0, -1, 1, 1, 2, 0, 2, 0, 0]
    assert [m.tolist() for m in part.class_members(0)] == [[0, 5], [7, 8]]
    by_size = partition(
        east, north, heading, PartitionParams(**{**vars(params), "group_order": "size"})
    )
    assert by_size.group_keys[0].tolist() == [0, 0, 0]
    assert by_size.class_keys[:2].tolist() == [[0, 0, 0], [2, 0, 0]]


@settings(max_examples=40, deadline=None)
@given(images(), params_strategy)
def test_reference_order_follows_first_appearance(data, params):
    part = partition(*data, params=params)
    kept = np.flatnonzero(part.image_class >= 0)
    # The group of each kept image, in input order: its distinct values in order of first
    # appearance are 0, 1, 2, ... (the groups' numbers), and likewise classes within a group.
    groups = part.image_group[kept]
    _, first = np.unique(groups, return_index=True)
    assert groups[np.sort(first)].tolist() == list(range(len(first)))
    classes = part.image_class[kept]
    for group in range(part.num_groups):
        in_group = classes[groups == group]
        _, first = np.unique(in_group, return_index=True)
        assert np.all(np.diff(in_group[np.sort(first)]) > 0)


def test_group_order_is_checked():
    with pytest.raises(ValueError, match="group_order must be one of reference, size"):
        PartitionParams(group_order="biggest")
