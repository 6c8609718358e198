"""Indexes built from descriptor shards on disk, for databases larger than memory.

Extraction writes a database's descriptors as numbered shards (shard_00000.npy, ...,
float16 or float32, row i of the database = row i of the shards read in name order). The
streaming build never holds them all: it trains the index on a sample of rows (the same
rows core.index.build_index trains on, so both builds give the same index), then adds the
shards one at a time with a progress bar. Every `checkpoint_rows` rows it writes the
partial index and a progress record (which shards are in, with what parameters) into a
work folder, each file written whole, so an interrupted build resumes from its last
checkpoint and ends with the same index as an uninterrupted one.

A search can re-rank an approximate index's candidates with exact distances read back from
the shards (memory-mapped: only the candidates' rows are read), which recovers most of
what product quantisation loses at a few kilobytes per query.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import time
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from core import files
from core.errors import UserError
from core.index import empty_index, set_search_params, training_rows

SHARD_PATTERN = "shard_*.npy"
SHARD_DTYPES = (np.float16, np.float32)
PROGRESS_FILE = "progress.json"
# What extract_shards wrote the shards from (model and database fingerprints, shard size).
SHARDS_RECORD = "shards.json"
# Rows converted to float32 and added at a time: 256 MiB of 512-D float32.
ADD_ROWS = 131_072

log = logging.getLogger(__name__)


def shard_name(number: int) -> str:
    return f"shard_{number:05d}.npy"


def write_shards(folder: str | os.PathLike, chunks) -> list[Path]:
    """Write each array of `chunks` as the next shard in `folder`, each file whole."""
    folder = Path(folder)
    written = []
    for number, chunk in enumerate(chunks):
        path = folder / shard_name(number)
        files.write_whole(path, lambda file, chunk=chunk: np.save(file, chunk))
        written.append(path)
    return written


def extract_shards(
    model,
    image_paths: list,
    folder: str | os.PathLike,
    identity: dict,
    shard_rows: int = 100_000,
    resize_shorter_side: int | None = None,
    **extract_options,
) -> None:
    """Extract the descriptors of `image_paths` into float16 shards of `shard_rows` rows in
    `folder`, skipping the shards already there: an interrupted extraction resumes.

    `identity` (the model's and the database's fingerprints) is written first to
    SHARDS_RECORD and checked on a resume, so shards of another model or database are never
    mixed in. Float16 halves the disk (41.2M x 512-D: 42 GB) at a relative error of 1e-3.
    """
    from core.descriptors import extract_from_paths  # torchvision, only when extracting

    folder = Path(folder)
    record = {**identity, "count": len(image_paths), "shard_rows": shard_rows}
    record_path = folder / SHARDS_RECORD
    if record_path.is_file():
        try:
            saved = json.loads(record_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            saved = None
        if saved != record:
            raise UserError(
                f"{folder} holds descriptor shards of another model, database or shard size; "
                "give an empty folder, or remove it to extract again"
            )
    elif any(folder.glob(SHARD_PATTERN)):
        return  # shards written elsewhere: used as they are (the caller checks the count)
    else:
        files.write_json(record_path, record)
    starts = range(0, len(image_paths), shard_rows)
    for number, start in enumerate(tqdm(starts, desc="descriptor shards", unit="shard")):
        path = folder / shard_name(number)
        rows = min(shard_rows, len(image_paths) - start)
        if path.is_file() and np.load(path, mmap_mode="r").shape[0] == rows:
            continue
        chunk = extract_from_paths(
            model,
            image_paths[start : start + rows],
            resize_shorter_side=resize_shorter_side,
            progress=False,
            **extract_options,
        )
        chunk = chunk.astype(np.float16)
        files.write_whole(path, lambda file, chunk=chunk: np.save(file, chunk))


def _map_npy(path: Path) -> tuple[mmap.mmap | None, np.ndarray]:
    """A .npy file's array over a read-only memory map (None and an empty array when the
    file holds no rows: an empty file cannot be mapped)."""
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(file)
        if fortran:
            raise ValueError("a Fortran-ordered array")
        offset = file.tell()
        count = int(np.prod(shape))
        if count == 0:
            return None, np.empty(shape, dtype)
        mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    array = np.frombuffer(mapping, dtype=dtype, count=count, offset=offset).reshape(shape)
    return mapping, array


def _advise(mapping: mmap.mmap | None, advice: str) -> None:
    if mapping is not None and hasattr(mmap, advice):  # madvise: Linux and macOS
        mapping.madvise(getattr(mmap, advice))


class DescriptorShards:
    """A database's descriptors as shard files, opened memory-mapped (nothing is read
    until rows are asked for)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        paths = sorted(self.folder.glob(SHARD_PATTERN)) if self.folder.is_dir() else []
        if not paths:
            raise UserError(
                f"{self.folder} holds no descriptor shards ({SHARD_PATTERN}): give the folder "
                "extraction wrote them to"
            )
        self.arrays, self.maps = [], []
        for path in paths:
            try:
                mapping, array = _map_npy(path)
            except (OSError, ValueError) as error:
                raise UserError(
                    f"{path} is not a readable .npy shard ({error}); extract it again"
                ) from None
            if array.ndim != 2 or array.dtype not in SHARD_DTYPES:
                raise UserError(
                    f"{path} holds a {array.dtype} array of shape {array.shape}, not rows of "
                    "float16 or float32 descriptors; extract it again"
                )
            self.maps.append(mapping)
            self.arrays.append(array)
        dims = {array.shape[1] for array in self.arrays}
        if len(dims) > 1:
            raise UserError(
                f"the shards in {self.folder} have descriptors of {sorted(dims)} dimensions: "
                "they come from different models; extract them again with one"
            )
        self.paths = paths
        self.dim = dims.pop()
        self.sizes = np.array([len(array) for array in self.arrays], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.count = int(self.offsets[-1])

    def identity(self) -> list[dict]:
        """What a resumed build checks it is adding the same shards (name, rows, bytes)."""
        return [
            {"name": path.name, "rows": int(size), "bytes": path.stat().st_size}
            for path, size in zip(self.paths, self.sizes, strict=True)
        ]

    def shard_chunks(self, number: int, rows: int = ADD_ROWS) -> Iterator[np.ndarray]:
        """Shard `number` as float32 chunks of at most `rows` rows."""
        array = self.arrays[number]
        _advise(self.maps[number], "MADV_SEQUENTIAL")  # read ahead: the whole shard is read
        for start in range(0, len(array), rows):
            yield np.ascontiguousarray(array[start : start + rows], dtype=np.float32)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The descriptors of database rows `ids` (any order, repeats allowed) as float32."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(ids) and (ids.min() < 0 or ids.max() >= self.count):
            raise IndexError(f"row ids must lie in [0, {self.count})")
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        shard_of = np.searchsorted(self.offsets, ids, side="right") - 1
        for number in np.unique(shard_of):
            where = np.flatnonzero(shard_of == number)
            local = ids[where] - self.offsets[number]
            order = np.argsort(local, kind="stable")  # sorted reads walk the file forwards
            # Few scattered rows: reading ahead around each would pull whole shards into memory.
            _advise(self.maps[number], "MADV_RANDOM")
            out[where[order]] = self.arrays[number][local[order]]
        return out


def _write_partial(work: Path, index: faiss.Index, done: int, record: dict) -> None:
    """Checkpoint: the partial index under a new name, then the progress record naming it,
    then drop the previous partial file (a kill at any point leaves a consistent pair)."""
    name = f"partial_{done:05d}.faiss"
    files.write_whole(
        work / name, lambda file: faiss.write_index(index, faiss.PyCallbackIOWriter(file.write))
    )
    previous = record.get("partial")
    files.write_json(work / PROGRESS_FILE, {**record, "shards_done": done, "partial": name})
    record.update(shards_done=done, partial=name)
    if previous and previous != name:
        (work / previous).unlink(missing_ok=True)
    log.info("checkpoint: %d shards, %d descriptors in %s", done, index.ntotal, work / name)


def _resume(work: Path, record: dict) -> tuple[faiss.Index, int] | None:
    """The partial index and shards done of an interrupted build with the same inputs."""
    progress_path = work / PROGRESS_FILE
    if not progress_path.is_file():
        return None
    try:
        saved = json.loads(progress_path.read_text())
        partial = work / saved["partial"]
        done = int(saved["shards_done"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise UserError(
            f"{progress_path} is not a build's progress record; remove {work} to start the "
            "build again"
        ) from None
    if {key: saved.get(key) for key in record} != record:
        raise UserError(
            f"{work} holds an interrupted build of other shards or parameters; remove it to "
            "start this build, or run the interrupted one's command again to finish it"
        )
    index = faiss.read_index(str(partial))
    record.update(shards_done=done, partial=saved["partial"])
    return index, done


def build_index_from_shards(
    shards: DescriptorShards,
    work_folder: str | os.PathLike,
    index_type: str,
    train_size: int = 200_000,
    seed: int = 0,
    checkpoint_rows: int = 2_000_000,
    progress: bool = True,
    timings: dict | None = None,
    **index_params,
) -> tuple[faiss.Index, dict]:
    """The index core.index.build_index would build over the shards' rows, built a shard at
    a time (resuming from `work_folder` when an earlier build with the same inputs stopped).

    The caller saves the result and then removes `work_folder` (finish_build). `timings`,
    when given, receives the seconds spent training (train_s) and adding (add_s)."""
    timings = {} if timings is None else timings
    start = time.perf_counter()
    work = Path(work_folder)
    index, params = empty_index(index_type, shards.dim, shards.count, **index_params)
    record = {
        "index_type": index_type,
        "params": params,
        "train_size": train_size,
        "seed": seed,
        "shards": shards.identity(),
    }
    resumed = _resume(work, record)
    if resumed:
        index, done = resumed
        log.info("resuming %s: %d of %d shards already added", work, done, len(shards.paths))
    else:
        done = 0
        if not index.is_trained:
            rows = training_rows(shards.count, train_size, seed)
            log.info("training a %s index on %d sampled descriptors", index_type, len(rows))
            index.train(shards.rows(rows))
        _write_partial(work, index, done, record)  # training is not repeated on a resume
    timings["train_s"] = time.perf_counter() - start
    start = time.perf_counter()
    since_checkpoint = 0
    with tqdm(
        total=shards.count,
        initial=int(shards.offsets[done]),
        desc=f"adding to {index_type}",
        unit="desc",
        unit_scale=True,
        disable=not progress,
    ) as bar:
        for number in range(done, len(shards.paths)):
            for chunk in shards.shard_chunks(number):
                index.add(chunk)
                bar.update(len(chunk))
            since_checkpoint += int(shards.sizes[number])
            last = number == len(shards.paths) - 1
            if since_checkpoint >= checkpoint_rows and not last:
                _write_partial(work, index, number + 1, record)
                since_checkpoint = 0
    timings["add_s"] = time.perf_counter() - start
    set_search_params(index, params)
    return index, params


def finish_build(work_folder: str | os.PathLike) -> None:
    """Remove a streaming build's work folder once its index is saved."""
    work = Path(work_folder)
    if not work.is_dir():
        return
    for path in work.iterdir():
        if path.name == PROGRESS_FILE or path.name.startswith("partial_"):
            path.unlink()
    for path in files.temporary_siblings(work / PROGRESS_FILE):
        path.unlink(missing_ok=True)
    if not any(work.iterdir()):
        work.rmdir()


def search_reranked(
    index: faiss.Index,
    shards: DescriptorShards,
    queries: np.ndarray,
    k: int,
    candidates: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of the index's `candidates` nearest, re-ordered by exact L2 distances to the
    shards' descriptors (rows without a candidate are -1 with an infinite distance)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    _, found = index.search(queries, max(candidates, k))
    distances = np.full((len(queries), k), np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    for row, (query, candidate_ids) in enumerate(zip(queries, found, strict=True)):
        candidate_ids = candidate_ids[candidate_ids >= 0]
        exact = ((shards.rows(candidate_ids) - query) ** 2).sum(axis=1)
        order = np.argsort(exact, kind="stable")[:k]
        distances[row, : len(order)] = exact[order]
        ids[row, : len(order)] = candidate_ids[order]
    return distances, ids
