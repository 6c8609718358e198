"""Sizes of the synthetic city and of each subset; the one place to tune them.

Image counts follow from the street length of each district (see `plan.plan_dataset`,
or run the CLI with `--dry_run` to print them without rendering):
train crops ~= train street metres / train_spacing_m * len(train_years) * 12.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Preset:
    name: str
    image_size: int = 128
    # City layout, west to east: a fringe block, then the districts in this order with
    # `gap_blocks` empty-of-cameras blocks between them, then a fringe block. Every district
    # spans `blocks_north` blocks from south to north (plus a fringe block on each side).
    train_blocks: int = 3
    val_blocks: int = 2
    test_blocks: int = 2
    gap_blocks: int = 1
    blocks_north: int = 2
    # Distances between street centrelines; multiples of 10 m keep every street at the
    # centre of a row of 10 m CosPlace cells, so a lane change never moves a camera across
    # a cell border.
    block_sizes_m: tuple[int, ...] = (70, 80, 90, 100)
    # Train: every street of the train district, once per year, a panorama every spacing.
    train_years: tuple[int, ...] = (2009, 2015, 2019)
    train_spacing_m: float = 2.5
    # Val: database panoramas (12 crops) from one year, queries (one crop) from another.
    val_database_year: int = 2014
    val_queries_year: int = 2018
    val_queries: int = 400
    # Val photos of other domains, like test/queries_v1 but in the val district: tuning for
    # queries_v1 (augmentation, schedule) looks at these and never at the test queries.
    val_photos: int = 400
    # Test: the database from 2013, like SF-XL.
    test_database_year: int = 2013
    database_spacing_m: float = 10.0
    queries_v1: int = 400  # other domains, photos without heading
    queries_v2: int = 300  # another year, mild changes, heading kept
    queries_v2_year: int = 2020


PRESETS: dict[str, Preset] = {
    # A few hundred images, built in seconds, for tests.
    "tiny": Preset(
        name="tiny",
        train_blocks=1,
        val_blocks=1,
        test_blocks=1,
        blocks_north=1,
        block_sizes_m=(60, 70),
        train_years=(2011, 2019),
        train_spacing_m=30.0,
        database_spacing_m=40.0,
        val_queries=12,
        val_photos=12,
        queries_v1=20,
        queries_v2=12,
    ),
    # ~20k train crops: three years of panoramas every 2.5 m give every 10 m x 30 deg class
    # 12 images, above the default min_images_per_class=10.
    "demo": Preset(name="demo"),
}


def get_preset(name: str, **overrides) -> Preset:
    """A named preset with some fields replaced (None values are ignored)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    unknown = set(overrides) - {f.name for f in fields(Preset)}
    if unknown:
        raise ValueError(f"unknown preset fields: {sorted(unknown)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
