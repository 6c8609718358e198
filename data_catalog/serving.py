"""The database a run's retrieval index was built over: its image paths, positions and zone.

`python -m training.build_index` writes these files beside the faiss index in
RUN/index/; the app reads them to show the retrieved images and their distances. Row i of
the table is row i of the index, and the manifest's database fingerprint is taken over the
same paths, so a table that does not belong to the index is refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core import files
from core.geo import UTMZone

DATABASE_FILE = "database.parquet"
SERVING_FILE = "serving.json"


class ServingFilesError(ValueError):
    """The database files beside an index are missing or unreadable; says which and why."""


@dataclass
class ServingDatabase:
    root: Path  # the database folder the paths are relative to
    paths: list[str]  # row i of the index
    utm: np.ndarray  # [count, 2] east, north in metres
    zone: UTMZone
    resize_shorter_side: int | None  # how database images were resized; queries follow


def write_serving_database(folder: str | os.PathLike, database: ServingDatabase) -> None:
    """Write database.parquet and serving.json into `folder`, each atomically."""
    folder = Path(folder)
    table = pa.table(
        {
            "path": database.paths,
            "utm_east": database.utm[:, 0].astype(np.float64),
            "utm_north": database.utm[:, 1].astype(np.float64),
        }
    )
    files.write_whole(folder / DATABASE_FILE, lambda file: pq.write_table(table, file))
    meta = {
        "database_folder": str(Path(database.root).resolve()),
        "utm_zone_number": database.zone.number,
        "utm_zone_letter": database.zone.letter,
        "resize_shorter_side": database.resize_shorter_side,
        "count": len(database.paths),
    }
    files.write_json(folder / SERVING_FILE, meta)


def read_serving_database(folder: str | os.PathLike) -> ServingDatabase:
    """Read what write_serving_database wrote, or raise ServingFilesError saying what is wrong."""
    folder = Path(folder)
    for name in (DATABASE_FILE, SERVING_FILE):
        if not (folder / name).is_file():
            raise ServingFilesError(
                f"{folder} has no {name}; rebuild the index with python -m training.build_index"
            )
    try:
        meta = json.loads((folder / SERVING_FILE).read_text())
        table = pq.read_table(folder / DATABASE_FILE)
        zone = UTMZone(int(meta["utm_zone_number"]), str(meta["utm_zone_letter"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, pa.ArrowException) as error:
        raise ServingFilesError(
            f"{folder}: unreadable database files ({error}); rebuild the index with "
            "python -m training.build_index"
        ) from error
    utm = np.stack([table["utm_east"].to_numpy(), table["utm_north"].to_numpy()], axis=1).astype(
        np.float64
    )
    return ServingDatabase(
        root=Path(meta["database_folder"]),
        paths=table["path"].to_pylist(),
        utm=utm.reshape(-1, 2),
        zone=zone,
        resize_shorter_side=meta.get("resize_shorter_side"),
    )
