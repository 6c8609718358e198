"""Where SF-XL paths come from, and the paths kept as byte offsets.

The reference implementation's convention: folder X is read from `X_images_paths.txt` beside
it when that file exists -- paths relative to X, one per line, in the file's order -- and
otherwise by walking X (image files, sorted by relative path). Lines end in '\\n' or
'\\r\\n'; blank lines are skipped; a leading './' is dropped; an absolute path is made
relative to X when it lies inside X (as given, or with links resolved) and is malformed, with
that reason, when it does not; so is a path with a '..' segment, which could climb out of X.

Paths are never held as millions of Python strings: a `PathList` keeps each path's byte
offset and length in the list file (or in one bytes buffer for a walked folder) and decodes
a path when it is asked for one.
"""

from __future__ import annotations

import codecs
import mmap
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from core.errors import UserError
from data_catalog.name_pattern import sql_text

LIST_SUFFIX = "_images_paths.txt"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
LINE_BREAK_REASON = "the file name holds a line break"

# Bytes of a list file parsed per DuckDB query: big enough to keep both cores busy, small
# enough that a 41M-line list never sits in memory whole.
CHUNK_BYTES = 16 << 20


class NameSourceError(UserError, ValueError):
    """A folder or list that cannot give names; str() says which and what to give instead."""


@dataclass(frozen=True)
class NameSource:
    folder: Path  # X: the listed paths are relative to it
    list_file: Path | None  # X_images_paths.txt, or None to walk X

    def __str__(self) -> str:
        return str(self.list_file or self.folder)


def list_file_of(folder: str | os.PathLike) -> Path:
    """Where the reference looks for folder X's list: X_images_paths.txt beside X."""
    folder = Path(os.path.abspath(folder))
    return folder.with_name(folder.name + LIST_SUFFIX)


def name_source(path: str | os.PathLike) -> NameSource:
    """Folder X (read from X_images_paths.txt when that exists) or a *_images_paths.txt file."""
    path = Path(os.path.abspath(path))
    if path.is_file():
        if not path.name.endswith(LIST_SUFFIX):
            raise NameSourceError(
                f"{path} is neither a folder nor a *{LIST_SUFFIX} list of paths; "
                "give an image folder or its list"
            )
        return NameSource(path.with_name(path.name[: -len(LIST_SUFFIX)]), path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder or file")
    listing = list_file_of(path)
    return NameSource(path, listing if listing.is_file() else None)


def walk_images(
    folder: str | os.PathLike, progress: bool = False, skip: frozenset[str] = frozenset()
) -> tuple[list[str], list[tuple[str, str]]]:
    """Image files under folder, relative to it and sorted; hidden entries are skipped.

    Also returns the (path, reason) of files whose names hold a line break, which no list
    of paths can carry. `skip` names sub-folders (relative, '/'-separated) not to enter.
    """
    paths, odd = [], []
    with tqdm(desc=f"listing {folder}", unit=" files", disable=not progress) as bar:
        for directory, subdirs, files in os.walk(folder):
            relative = os.path.relpath(directory, folder)
            subdirs[:] = [
                d
                for d in subdirs
                if not d.startswith(".")
                and (d if relative == "." else f"{relative}/{d}") not in skip
            ]
            for file in files:
                if file.startswith(".") or os.path.splitext(file)[1].lower() not in (
                    IMAGE_EXTENSIONS
                ):
                    continue
                path = file if relative == "." else f"{relative}/{file}"
                if "\n" in path or "\r" in path:
                    odd.append((path, LINE_BREAK_REASON))
                else:
                    paths.append(path)
            bar.update(len(files))
    paths.sort()
    return paths, odd


def outside_reason(folder: Path) -> str:
    return (
        f"path outside {folder} (absolute, or climbing out with ../); "
        f"list paths relative to {folder.name}/"
    )


def _climbs_sql(line: str) -> str:
    """SQL: the listed path has a '..' segment (it could leave the folder), line break or not."""
    path = f"rtrim({line}, chr(13) || chr(10))"
    return (
        f"({path} = '..' OR starts_with({path}, '../') OR contains({path}, '/../') "
        f"OR ends_with({path}, '/..'))"
    )


def _inside_prefixes(folder: Path) -> list[str]:
    return list(dict.fromkeys([os.path.abspath(folder) + "/", os.path.realpath(folder) + "/"]))


def normalized_path_sql(line: str, folder: Path) -> str:
    """SQL of a listed path made relative to folder, NULL for a path outside it (absolute, or
    with a '..' segment).

    The result is always a suffix of the line, so its bytes sit at the line's end.
    """
    inside = " ".join(
        f"WHEN starts_with({line}, {sql_text(p)}) THEN substr({line}, {len(p) + 1})"
        for p in _inside_prefixes(folder)
    )
    return (
        f"CASE WHEN {_climbs_sql(line)} THEN NULL "
        f"WHEN starts_with({line}, './') THEN substr({line}, 3) {inside} "
        f"WHEN starts_with({line}, '/') THEN NULL ELSE {line} END"
    )


def cut_sql(line: str, folder: Path) -> str:
    """SQL of the bytes normalized_path_sql cuts from the front; -1 for a path outside."""
    inside = " ".join(
        f"WHEN starts_with({line}, {sql_text(p)}) THEN {len(p.encode())}"
        for p in _inside_prefixes(folder)
    )
    return (
        f"CASE WHEN {_climbs_sql(line)} THEN -1 WHEN starts_with({line}, './') THEN 2 {inside} "
        f"WHEN starts_with({line}, '/') THEN -1 ELSE 0 END"
    )


def strip_line_break(line: str) -> str:
    return line[:-2] if line.endswith("\r\n") else line[:-1] if line.endswith("\n") else line


def line_sql(raw: str) -> str:
    """SQL of a line without its break ('\\n' or '\\r\\n'), as strip_line_break does."""
    return (
        f"left({raw}, length({raw}) - CASE WHEN ends_with({raw}, chr(13) || chr(10)) THEN 2 "
        f"WHEN ends_with({raw}, chr(10)) THEN 1 ELSE 0 END)"
    )


def line_tables(
    source: NameSource,
    progress: bool = False,
    walked: tuple[list[str], list[tuple[str, str]]] | None = None,
    skip: frozenset[str] = frozenset(),
) -> tuple[Iterator[pa.Table], Path | None, bytes | None, list[tuple[str, str]]]:
    """The lines of a source as Arrow tables (raw line with its break, start, size).

    Also returns the list file or the walked buffer the starts point into, and the walked
    files whose names hold a line break (malformed before any parse).
    """
    if source.list_file is not None:
        blocks = _blocks_of_file(source.list_file, progress)
        return (lines_table(b, o) for b, o in blocks), source.list_file, None, []
    if walked is None:
        walked = walk_images(source.folder, progress, skip)
    paths, odd = walked
    buffer = joined_paths(paths)
    return (lines_table(b, o) for b, o in blocks_of_bytes(buffer)), None, buffer, odd


def _blocks_of_file(path: Path, progress: bool) -> Iterator[tuple[memoryview, int]]:
    """(block, byte offset) of whole lines of a file, CHUNK_BYTES or so at a time.

    The file is memory-mapped, so blocks are views, never copies; each block's pages are
    dropped from this process's memory once parsed (they stay in the page cache).
    """
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb") as file:
        data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    bar = tqdm(
        total=size, desc=f"reading {path.name}", unit="B", unit_scale=True, disable=not progress
    )
    with bar:
        for block, base in blocks_of_bytes(data):
            yield block, base
            bar.update(len(block))
            aligned = base - base % mmap.PAGESIZE
            data.madvise(mmap.MADV_DONTNEED, aligned, base + len(block) - aligned)
    # Not closed here: Arrow tables made from the last block may still point into it; the
    # mapping goes with the last of them.


def blocks_of_bytes(data) -> Iterator[tuple[memoryview, int]]:
    """(block, byte offset) of whole lines of a buffer, as views."""
    view = memoryview(data)
    base = 0
    while base < len(data):
        cut = data.rfind(b"\n", base, base + CHUNK_BYTES) + 1
        if cut <= base:  # a line longer than a chunk
            cut = data.find(b"\n", base) + 1 or len(data)
        yield view[base:cut], base
        base = cut


def lines_table(block: memoryview, base: int) -> pa.Table:
    """One row per non-blank line of block: the line with its break (no copy), its byte
    offset and its length without the break ('\n' or '\r\n')."""
    buffer = np.frombuffer(block, np.uint8)
    if (buffer >= 128).any():  # not plain ASCII: check it is UTF-8 before DuckDB reads it
        try:
            codecs.utf_8_decode(block, "strict", True)
        except UnicodeDecodeError as error:
            raise NameSourceError(
                f"the list is not UTF-8 text (byte {base + error.start}); save it as UTF-8"
            ) from None
    ends = np.flatnonzero(buffer == 10) + 1
    if len(buffer) and buffer[-1] != 10:
        ends = np.append(ends, len(buffer))
    offsets = np.concatenate([[0], ends]).astype(np.int32)
    sizes = np.diff(offsets)
    has_break = buffer[ends - 1] == 10
    sizes -= has_break
    sizes -= has_break & (sizes > 0) & (buffer[np.maximum(ends - 2, 0)] == 13)
    raw = pa.StringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(block))
    table = pa.table({"raw": raw, "start": offsets[:-1].astype(np.int64) + base, "size": sizes})
    return table.filter(pa.array(sizes > 0)) if not sizes.all() else table


class PathList(Sequence[str]):
    """Paths kept as (byte offset, length) into a list file or a bytes buffer.

    Indexing decodes one path; pickling sends the offsets and the file name (or the buffer),
    so DataLoader workers reopen the file rather than copy millions of strings.
    """

    def __init__(
        self,
        start: np.ndarray,
        length: np.ndarray,
        file: Path | None = None,
        buffer: bytes | None = None,
    ) -> None:
        if (file is None) == (buffer is None):
            raise ValueError("a PathList reads either a file or a buffer")
        self.start, self.length = start, length
        self.file, self._data = file, buffer

    def _bytes(self):
        if self._data is None:
            with open(self.file, "rb") as handle:
                self._data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        return self._data

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        start = int(self.start[index])
        return self._bytes()[start : start + int(self.length[index])].decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        step = 1 << 20  # paths decoded a million at a time: a bounded copy of the text
        for low in range(0, len(self), step):
            yield from self._decode(low, min(low + step, len(self)))

    def _decode(self, low: int, high: int) -> list[str]:
        """Paths low..high-1, from one decode of the bytes they span (plain ASCII text)."""
        start = np.asarray(self.start[low:high], dtype=np.int64)
        end = start + self.length[low:high]
        first, last = int(start.min()), int(end.max())
        try:
            text = self._bytes()[first:last].decode("ascii")
        except UnicodeDecodeError:  # byte offsets are not character offsets: one by one
            return [self[i] for i in range(low, high)]
        pairs = zip((start - first).tolist(), (end - first).tolist(), strict=True)
        return [text[begin:stop] for begin, stop in pairs]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.file is not None:
            state["_data"] = None  # an mmap does not pickle; the worker maps the file again
        return state


def joined_paths(paths: Sequence[str]) -> bytes:
    """The paths as the lines of one UTF-8 buffer (what a list file would hold)."""
    return ("\n".join(paths) + "\n").encode("utf-8") if paths else b""
