"""The embedded synthetic city: a procedural San Francisco-like grid written in SF-XL layout.

It exists so that the whole pipeline (ingest, partition, training, evaluation, the app) can
run end to end without downloading SF-XL. The data is synthetic and says so: the metadata,
the README written next to the images and the note field of every file name.

    python -m data_catalog.synthetic --preset tiny --seed 0 --out data/synthetic_tiny

scene (local coordinates, seeded randomness, boxes) -> city (street grid and camera tracks,
with buildings and props: trees, parked cars) -> plan (the renders a preset asks for) ->
render (column ray caster; facade and conditions: light, weather, camera) -> writer (JPEGs
with SF-XL names, metadata.json, README.txt).
"""

from .city import build_city
from .plan import SUBSETS, plan_dataset
from .presets import get_preset
from .writer import write_dataset

__all__ = ["SUBSETS", "build_city", "get_preset", "plan_dataset", "write_dataset"]
