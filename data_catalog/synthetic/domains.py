"""The capture condition of each photo of the synthetic city (day, night, fog...), by file name.

The condition is not in an SF-XL name: it is replayed from the generator's plan (preset and
seed from the dataset's metadata.json), which is cheap (no pixel is rendered). Real SF-XL
says nothing of the kind, so every reader here answers None for a dataset that is not the
synthetic city.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .city import build_city
from .conditions import Condition
from .presets import get_preset
from .writer import image_names, job_condition, plan_dataset

METADATA = "metadata.json"


def synthetic_metadata(dataset_folder: str | os.PathLike) -> dict | None:
    """The city's metadata.json; None for any other dataset (or an unreadable file)."""
    path = Path(dataset_folder) / METADATA
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("synthetic") is not True:
        return None
    return meta


def photo_conditions(dataset_folder: str | os.PathLike, folder: str) -> dict[str, Condition] | None:
    """File name -> capture condition of every image of `folder` (e.g. "test/queries_v1").

    None when the dataset is not the synthetic city or its metadata names no known preset.
    """
    meta = synthetic_metadata(dataset_folder)
    if meta is None:
        return None
    try:
        preset = get_preset(str(meta["preset"]), image_size=int(meta["image_size"]))
        city = build_city(preset, int(meta["seed"]))
    except (KeyError, TypeError, ValueError):
        return None
    conditions = {}
    for job in plan_dataset(city, preset):
        if job.folder == folder:
            conditions.update(dict.fromkeys(image_names(city.seed, job), job_condition(city, job)))
    return conditions


def condition_label(condition: Condition) -> str:
    """ "night", or "night+grey" when the camera was grey."""
    return condition.name + ("+grey" if condition.grayscale else "")
