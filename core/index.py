"""faiss indexes over descriptors, saved with a manifest that says what they index.

"flat" is the reference's exhaustive L2 search. The others trade exactness for memory or
speed on databases of millions: fp16 storage, inverted lists (IVF) with full or
product-quantised vectors, and an HNSW graph. A manifest (model, dimension, count, type,
sha256 of the index file) goes beside every saved index so that an index built with
another model or another database, or an index file replaced by another, is refused
instead of returning confident nonsense.

The pair is written so that a kill at any moment leaves the old pair or the new one: both
files are written to temporary siblings and flushed, then the index is renamed into place,
then the manifest. A kill between the two renames leaves the new index beside the old
manifest and the new manifest's complete temporary file; load_index recognises the new
index by its checksum in that pending manifest and uses the pair.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np
import torch
from torch import nn

from core import files
from core.errors import UserError

INDEX_FILE = "index.faiss"
MANIFEST_FILE = "index_manifest.json"
INDEX_TYPES = ("flat", "flat_fp16", "ivf_flat", "ivf_pq", "hnsw", "ivf_hnsw_pq")
# The faiss class each index type reads back as (faiss.read_index downcasts).
FAISS_CLASSES = {
    "IndexFlatL2": "flat",
    "IndexScalarQuantizer": "flat_fp16",
    "IndexIVFFlat": "ivf_flat",
    "IndexIVFPQ": "ivf_pq",
    "IndexHNSWFlat": "hnsw",
}
# An IVF-PQ whose coarse quantizer is an HNSW graph reads back as an IndexIVFPQ too.
IVF_HNSW_QUANTIZER = "IndexHNSWFlat"
_HASH_CHUNK = 16 << 20


class IndexMismatchError(UserError, ValueError):
    """An index that does not belong to the model or database it is used with."""


@dataclass
class IndexManifest:
    index_type: str
    dim: int
    count: int
    model: dict = field(default_factory=dict)  # backbone, fc_output_dim, fingerprint
    database_fingerprint: str = ""
    params: dict = field(default_factory=dict)  # nlist, nprobe, pq_m, hnsw_m, ef_search
    faiss_version: str = faiss.__version__
    index_sha256: str = ""  # of index.faiss; save_index fills it in


def index_type_of(index: faiss.Index) -> str | None:
    """Which of INDEX_TYPES a faiss index is (None for another kind or a non-L2 metric)."""
    if index.metric_type != faiss.METRIC_L2:
        return None
    index_type = FAISS_CLASSES.get(type(index).__name__)
    if index_type == "ivf_pq":
        quantizer = faiss.downcast_index(faiss.extract_index_ivf(index).quantizer)
        if type(quantizer).__name__ == IVF_HNSW_QUANTIZER:
            return "ivf_hnsw_pq"
    return index_type


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_fingerprint(model: nn.Module) -> str:
    """sha256 of a network's weights: two models with equal fingerprints give equal descriptors."""
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_identity(model: nn.Module) -> dict:
    return {
        "backbone": getattr(model, "backbone_name", type(model).__name__),
        "fc_output_dim": getattr(model, "fc_output_dim", None),
        "fingerprint": model_fingerprint(model),
    }


def paths_fingerprint(paths: Iterable[str]) -> str:
    """sha256 of the database's image paths in index order (row i = path i)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.fspath(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _as_float32(descriptors: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(descriptors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"descriptors must be a 2-D array, got shape {array.shape}")
    return array


# A flat coarse quantizer compares every added descriptor with every list's centroid (n x
# nlist x dim to fill the index): 8,192 lists took 33 min to fill with 41.2M descriptors on
# the 2-core machine (benchmarks.index_scale, README), where 4 sqrt(n) = 25,675 lists would
# take about three times as long, past the hour a city-scale build is allowed.
MAX_DEFAULT_NLIST = 8192
# Lists searched per query: at 1M place-clustered descriptors 64 of 4,096 lists found 0.66
# of the exact top-10 for 3.8 ms of one core (16 lists: 0.52 for 1.3 ms).
DEFAULT_NPROBE = 64


def default_nlist(count: int) -> int:
    """About 4 sqrt(n) inverted lists, at most MAX_DEFAULT_NLIST, but never fewer than 39
    training points per list."""
    return max(1, min(int(4 * math.sqrt(count)), MAX_DEFAULT_NLIST, count // 39))


def empty_index(
    index_type: str,
    dim: int,
    count: int,
    nlist: int | None = None,
    nprobe: int = DEFAULT_NPROBE,
    pq_m: int = 64,
    hnsw_m: int = 32,
    ef_search: int = 128,
) -> tuple[faiss.Index, dict]:
    """An index of `index_type` for `count` descriptors of `dim` dimensions, not yet trained
    or filled, and the parameters it is built with (they go into the manifest)."""
    params: dict = {}
    if index_type == "flat":
        index = faiss.IndexFlatL2(dim)
    elif index_type == "flat_fp16":
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2)
    elif index_type in ("ivf_flat", "ivf_pq", "ivf_hnsw_pq"):
        nlist = nlist or default_nlist(count)
        if index_type == "ivf_hnsw_pq":
            # Many lists make each list short; a graph finds the nearest of them in about
            # log(nlist) steps where a flat quantizer compares the query with every centroid.
            quantizer = faiss.IndexHNSWFlat(dim, hnsw_m)
            params.update(hnsw_m=hnsw_m, quantizer_ef_search=ef_search)
        else:
            quantizer = faiss.IndexFlatL2(dim)
        if index_type == "ivf_flat":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_L2)
        else:
            if dim % pq_m:
                raise ValueError(f"pq_m={pq_m} must divide the descriptor dimension {dim}")
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, 8)
            params["pq_m"] = pq_m
        if index_type == "ivf_hnsw_pq":
            # k-means runs on a flat copy of the centroids, which are then added to the graph
            # (k-means over a graph would rebuild it on every iteration).
            index.quantizer_trains_alone = 2
        params.update(nlist=nlist, nprobe=min(nprobe, nlist))
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m)
        params.update(hnsw_m=hnsw_m, ef_search=ef_search)
    else:
        raise ValueError(f"unknown index type {index_type!r}; choose one of {INDEX_TYPES}")
    return index, params


def training_rows(count: int, train_size: int, seed: int) -> np.ndarray:
    """The rows (sorted) an index is trained on: the same for the in-memory and the
    streaming build (core.index_stream), so both give the same index."""
    return np.sort(np.random.default_rng(seed).permutation(count)[:train_size])


def build_index(
    descriptors: np.ndarray,
    index_type: str = "flat",
    train_size: int = 200_000,
    seed: int = 0,
    **index_params,
) -> tuple[faiss.Index, dict]:
    """An index over `descriptors` (L2 metric) and the parameters it was built with
    (index_params: those of empty_index)."""
    xb = _as_float32(descriptors)
    count, dim = xb.shape
    index, params = empty_index(index_type, dim, count, **index_params)
    if not index.is_trained:
        index.train(xb[training_rows(count, train_size, seed)])
    index.add(xb)
    set_search_params(index, params)
    return index, params


def set_search_params(index: faiss.Index, params: dict) -> None:
    """Apply search-time knobs (nprobe for IVF, efSearch for HNSW) recorded in a manifest."""
    space = faiss.ParameterSpace()
    if "nprobe" in params:
        space.set_index_parameter(index, "nprobe", int(params["nprobe"]))
    if "ef_search" in params:
        space.set_index_parameter(index, "efSearch", int(params["ef_search"]))
    if "quantizer_ef_search" in params:
        space.set_index_parameter(index, "quantizer_efSearch", int(params["quantizer_ef_search"]))


def search(index: faiss.Index, queries: np.ndarray, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(distances, predictions) of the k nearest database rows for each query."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k={k!r}: the number of neighbours to return must be an integer >= 1")
    if index.ntotal == 0:
        raise ValueError("the index is empty: add database descriptors before searching")
    xq = _as_float32(queries)
    if xq.shape[1] != index.d:
        raise IndexMismatchError(
            f"queries have {xq.shape[1]}-D descriptors but the index holds {index.d}-D ones"
        )
    return index.search(xq, min(k, index.ntotal))


def bytes_per_descriptor(index: faiss.Index) -> float:
    """Serialised index size divided by the number of descriptors it holds."""
    return faiss.serialize_index(index).nbytes / max(index.ntotal, 1)


def save_index(index: faiss.Index, folder: str | os.PathLike, manifest: IndexManifest) -> Path:
    """Write index.faiss and index_manifest.json into `folder`, as a pair (module docstring).

    The manifest saved records the index file's sha256 (`manifest` itself is not changed).
    """
    if (manifest.dim, manifest.count) != (index.d, index.ntotal):
        raise ValueError(
            f"manifest says {manifest.count} x {manifest.dim}-D, index holds "
            f"{index.ntotal} x {index.d}-D"
        )
    if index_type_of(index) != manifest.index_type:
        raise ValueError(
            f"manifest says {manifest.index_type!r}, the index is a {type(index).__name__}"
        )
    folder = Path(folder)
    index_path, manifest_path = folder / INDEX_FILE, folder / MANIFEST_FILE
    index_tmp = files.stage(
        index_path, lambda file: faiss.write_index(index, faiss.PyCallbackIOWriter(file.write))
    )
    record = {**asdict(manifest), "index_sha256": file_sha256(index_tmp)}
    text = json.dumps(record, indent=2).encode("utf-8")
    manifest_tmp = files.stage(manifest_path, lambda file: file.write(text))
    files.commit(index_tmp, index_path)
    # A kill here leaves the new index and its complete manifest_tmp: load_index uses them.
    files.commit(manifest_tmp, manifest_path)
    return folder


# Manifest fields and the JSON types they must have; a hand edit gets a sentence, not a crash.
_MANIFEST_FIELDS = {
    "index_type": (str, "one of " + ", ".join(INDEX_TYPES)),
    "dim": (int, "a whole number of descriptor dimensions"),
    "count": (int, "a whole number of database descriptors"),
    "model": (dict, "an object with backbone, fc_output_dim and fingerprint"),
    "database_fingerprint": (str, "a sha256 hex string"),
    "params": (dict, "an object of search parameters (nprobe, ef_search...)"),
    "faiss_version": (str, "a version string"),
    "index_sha256": (str, "a sha256 hex string"),
}


def read_manifest(path: Path) -> IndexManifest:
    """Parse and type-check a manifest; IndexMismatchError with a sentence if it is wrong."""
    redo = "rebuild the index or restore the manifest"
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise IndexMismatchError(
            f"{path} is not a valid manifest (not JSON: {error}); {redo}"
        ) from error
    if not isinstance(data, dict):
        raise IndexMismatchError(f"{path} is not a valid manifest (not a JSON object); {redo}")
    unknown = sorted(set(data) - set(_MANIFEST_FIELDS))
    missing = [name for name in ("index_type", "dim", "count") if name not in data]
    if unknown or missing:
        raise IndexMismatchError(
            f"{path} is not a valid manifest (unknown fields {unknown}, missing {missing}); {redo}"
        )
    for name, (kind, meaning) in _MANIFEST_FIELDS.items():
        value = data.get(name)
        wrong_kind = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
        if name in data and wrong_kind:
            raise IndexMismatchError(
                f"{path} is not a valid manifest: {name!r} should be {meaning}, not {value!r}; "
                f"{redo}"
            )
    if data["index_type"] not in INDEX_TYPES:
        raise IndexMismatchError(
            f"{path} is not a valid manifest: 'index_type' should be one of "
            f"{', '.join(INDEX_TYPES)}, not {data['index_type']!r}; {redo}"
        )
    return IndexManifest(**data)


def _manifest_for(folder: Path, index_sha256: str) -> IndexManifest:
    """The manifest that belongs to the index file with this checksum, or a refusal."""
    manifest_path = folder / MANIFEST_FILE
    manifest = read_manifest(manifest_path)
    if not manifest.index_sha256 or manifest.index_sha256 == index_sha256:
        return manifest
    for pending in files.temporary_siblings(manifest_path):  # a save cut off between renames
        try:
            candidate = read_manifest(pending)
        except IndexMismatchError:
            continue
        if candidate.index_sha256 == index_sha256:
            return candidate
    raise IndexMismatchError(
        f"{folder / INDEX_FILE} is not the index its manifest describes (sha256 differs): the "
        "file was replaced or damaged; rebuild the index or restore the original file"
    )


def _check(what: str, found, expected, hint: str) -> None:
    if expected is not None and found != expected:
        raise IndexMismatchError(
            f"index was built for {what} {found!r}, but {expected!r} is in use; {hint}"
        )


def load_index(
    folder: str | os.PathLike,
    model: nn.Module | None = None,
    database_fingerprint: str | None = None,
    count: int | None = None,
) -> tuple[faiss.Index, IndexManifest]:
    """Read an index and its manifest, refusing one that does not match the model/database."""
    folder = Path(folder)
    if not (folder / MANIFEST_FILE).is_file() or not (folder / INDEX_FILE).is_file():
        raise IndexMismatchError(f"{folder} has no {INDEX_FILE} with its {MANIFEST_FILE}")
    manifest = _manifest_for(folder, file_sha256(folder / INDEX_FILE))
    try:
        index = faiss.read_index(str(folder / INDEX_FILE))
    except RuntimeError as error:
        raise IndexMismatchError(
            f"{folder / INDEX_FILE} is not a faiss index; rebuild the index"
        ) from error
    if index_type_of(index) != manifest.index_type:
        raise IndexMismatchError(
            f"{folder / INDEX_FILE} is a {type(index).__name__} but its manifest says "
            f"{manifest.index_type!r}; the files do not belong together: rebuild the index"
        )
    if (index.d, index.ntotal) != (manifest.dim, manifest.count):
        raise IndexMismatchError(
            f"{folder / INDEX_FILE} holds {index.ntotal} x {index.d}-D but its manifest says "
            f"{manifest.count} x {manifest.dim}-D; the files do not belong together"
        )
    rebuild = "rebuild the index"
    if model is not None:
        identity = model_identity(model)
        _check("descriptor dimension", manifest.dim, identity["fc_output_dim"], rebuild)
        _check(
            "model weights",
            manifest.model.get("fingerprint"),
            identity["fingerprint"],
            f"{rebuild} with this model (built with {manifest.model.get('backbone')})",
        )
    _check("database", manifest.database_fingerprint, database_fingerprint, rebuild)
    _check("database size", manifest.count, count, rebuild)
    set_search_params(index, manifest.params)
    return index, manifest
