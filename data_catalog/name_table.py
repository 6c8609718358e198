"""SF-XL paths to label arrays: the one bulk parser, for ingest, training, evaluation and the app.

Where the paths come from (the reference implementation's convention): folder X is read from
`X_images_paths.txt` beside it when that file exists -- paths relative to X, one per line, in
the file's order -- and otherwise by walking X (image files, sorted by relative path). Lines end
in '\\n' or '\\r\\n'; blank lines are skipped; a leading './' is dropped; an absolute path is made
relative to X when it lies inside X (as given, or with links resolved) and is malformed, with
that reason, when it does not.

How names are parsed: DuckDB (in memory, no catalog file) matches each path against
FAST_NAME_PATTERN, which accepts only names that `names.parse_name` accepts too (plain decimal
numbers, ranges checked), and casts the `@`-separated fields of those. The rare paths it
refuses (exponents, odd digits, nan/inf, malformed names) go through `parse_name` itself,
which keeps them or gives the reason they are malformed. The ingest uses the same pattern,
casts and judge, so every reader agrees with `parse_name` by construction.

Paths are never held as millions of Python strings: a `PathList` keeps each path's byte
offset and length in the list file (or in one bytes buffer for a walked folder) and decodes
a path when it is asked for one.
"""

from __future__ import annotations

import codecs
import mmap
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from tqdm import tqdm

from core.errors import UserError
from data_catalog.names import (
    FIELD_NAMES,
    NUMERIC_FIELDS,
    OPTIONAL_NUMERIC_FIELDS,
    ZONE_LETTERS,
    MalformedNameError,
    SFXLName,
    parse_name,
)

LIST_SUFFIX = "_images_paths.txt"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
LINE_BREAK_REASON = "the file name holds a line break"
# Bytes of a list file parsed per DuckDB query: big enough to keep both cores busy, small
# enough that a 41M-line list never sits in memory whole.
CHUNK_BYTES = 16 << 20


class NameSourceError(UserError, ValueError):
    """A folder or list that cannot give names; str() says which and what to give instead."""


# --- the pattern: a conservative one per field -----------------------------------------------
# Each accepts a subset of what names._check_fields accepts for that field, so a name matching
# the whole pattern is valid for parse_name too. Anything else is decided by parse_name.

_NUMBER = r"[+-]?[0-9]+(?:\.[0-9]+)?"
_SPECIAL_PATTERNS = {
    "lat": r"[+-]?0*(?:[1-8]?[0-9](?:\.[0-9]+)?|90(?:\.0+)?)",  # |lat| <= 90
    "lon": r"[+-]?0*(?:(?:1[0-7][0-9]|[1-9]?[0-9])(?:\.[0-9]+)?|180(?:\.0+)?)",  # |lon| <= 180
    "utm_zone_number": r"0?(?:[1-9]|[1-5][0-9]|60)",
    "utm_zone_letter": f"[{ZONE_LETTERS}]",
    "timestamp": r"(?:[0-9]{4}(?:0[1-9]|1[0-2])(?:[0-9]{2}(?:_[0-9]{6})?)?)?",
    "extension": r"\.[^@/]*",
}
_FREE_TEXT_FIELDS = ("pano_id", "tile_num", "note")  # parse_name checks nothing but '@'


def _field_pattern(name: str) -> str:
    if name in _SPECIAL_PATTERNS:
        return _SPECIAL_PATTERNS[name]
    if name in NUMERIC_FIELDS:
        return _NUMBER
    if name in OPTIONAL_NUMERIC_FIELDS:
        return f"(?:{_NUMBER})?"
    if name in _FREE_TEXT_FIELDS:
        return "[^@/]*"
    # A field added to names.py must get a pattern here, or the bulk parser could accept
    # names that parse_name rejects.
    raise KeyError(f"no bulk-parser pattern for name field {name!r}")


# Matched against a whole relative path: the base name follows the last '/' (folders may hold '@').
FAST_NAME_PATTERN = (
    "^(?:.*/)?" + "".join(f"@(?:{_field_pattern(name)})" for name in FIELD_NAMES) + "$"
)


def sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def field_kind(name: str) -> str:
    """The SQL type of a name field: DOUBLE for numbers, INTEGER for the zone, else VARCHAR."""
    if name in NUMERIC_FIELDS or name in OPTIONAL_NUMERIC_FIELDS:
        return "DOUBLE"
    return "INTEGER" if name == "utm_zone_number" else "VARCHAR"


def field_sql(name: str, parts: str = "parts") -> str:
    """SQL casting one field of a string_split(path, '@') list to its type ('' -> NULL)."""
    # Counted from the end: folders in the path may hold '@'.
    text = f"{parts}[{FIELD_NAMES.index(name) - len(FIELD_NAMES)}]"
    kind = field_kind(name)
    if kind == "VARCHAR":
        return text
    if name in OPTIONAL_NUMERIC_FIELDS:
        return f"CAST(NULLIF({text}, '') AS {kind})"
    return f"CAST({text} AS {kind})"


def year_sql(parts: str = "parts") -> str:
    """Same as SFXLName.year: the first 4 characters of the timestamp, NULL when empty."""
    stamp = f"{parts}[{FIELD_NAMES.index('timestamp') - len(FIELD_NAMES)}]"
    return f"CAST(NULLIF({stamp}[1:4], '') AS SMALLINT)"


def month_sql(parts: str = "parts") -> str:
    stamp = f"{parts}[{FIELD_NAMES.index('timestamp') - len(FIELD_NAMES)}]"
    return f"CAST(NULLIF({stamp}[5:6], '') AS TINYINT)"


def typed_row(name: SFXLName) -> dict:
    """The typed field values of a name parsed by parse_name (the slow, rare way)."""
    row: dict = {}
    for key in FIELD_NAMES:
        text = getattr(name, key)
        kind = field_kind(key)
        if kind == "VARCHAR":
            row[key] = text
        elif kind == "INTEGER":
            row[key] = int(text)
        else:
            row[key] = float(text) if text else None
    row["year"], row["month"] = name.year, name.month
    return row


def judge(path: str) -> dict | str:
    """parse_name's verdict on a path the pattern refused: its typed row, or the reason."""
    try:
        return typed_row(parse_name(path))
    except MalformedNameError as error:
        return error.reason
    except ValueError as error:  # e.g. a zone number of non-ASCII digits int() refuses
        return f"unreadable field: {error}"


# --- where the paths come from ---------------------------------------------------------------


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
    return f"absolute path outside {folder}; list paths relative to {folder.name}/"


def _inside_prefixes(folder: Path) -> list[str]:
    return list(dict.fromkeys([os.path.abspath(folder) + "/", os.path.realpath(folder) + "/"]))


def normalized_path_sql(line: str, folder: Path) -> str:
    """SQL of a listed path made relative to folder, NULL for an absolute path outside it.

    The result is always a suffix of the line, so its bytes sit at the line's end.
    """
    inside = " ".join(
        f"WHEN starts_with({line}, {sql_text(p)}) THEN substr({line}, {len(p) + 1})"
        for p in _inside_prefixes(folder)
    )
    return (
        f"CASE WHEN starts_with({line}, './') THEN substr({line}, 3) {inside} "
        f"WHEN starts_with({line}, '/') THEN NULL ELSE {line} END"
    )


def _cut_sql(line: str, folder: Path) -> str:
    """SQL of the bytes normalized_path_sql cuts from the front; -1 for a path outside."""
    inside = " ".join(
        f"WHEN starts_with({line}, {sql_text(p)}) THEN {len(p.encode())}"
        for p in _inside_prefixes(folder)
    )
    return (
        f"CASE WHEN starts_with({line}, './') THEN 2 {inside} "
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
        return (_lines_table(b, o) for b, o in blocks), source.list_file, None, []
    if walked is None:
        walked = walk_images(source.folder, progress, skip)
    paths, odd = walked
    buffer = joined_paths(paths)
    return (_lines_table(b, o) for b, o in _blocks_of_bytes(buffer)), None, buffer, odd


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
        for block, base in _blocks_of_bytes(data):
            yield block, base
            bar.update(len(block))
            aligned = base - base % mmap.PAGESIZE
            data.madvise(mmap.MADV_DONTNEED, aligned, base + len(block) - aligned)
    # Not closed here: Arrow tables made from the last block may still point into it; the
    # mapping goes with the last of them.


def _blocks_of_bytes(data) -> Iterator[tuple[memoryview, int]]:
    """(block, byte offset) of whole lines of a buffer, as views."""
    view = memoryview(data)
    base = 0
    while base < len(data):
        cut = data.rfind(b"\n", base, base + CHUNK_BYTES) + 1
        if cut <= base:  # a line longer than a chunk
            cut = data.find(b"\n", base) + 1 or len(data)
        yield view[base:cut], base
        base = cut


def _lines_table(block: memoryview, base: int) -> pa.Table:
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


# --- the paths, as offsets -------------------------------------------------------------------


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

    def take(self, indices: np.ndarray) -> PathList:
        """The paths at indices, sharing the file or buffer."""
        if self.file is not None:
            return PathList(self.start[indices], self.length[indices], file=self.file)
        return PathList(self.start[indices], self.length[indices], buffer=self._data)


# --- the parse -------------------------------------------------------------------------------

# Per valid name: numbers as below; heading NaN and year -1 when the name leaves them empty.
_ARRAY_FIELDS = {
    "east": ("utm_east", np.float64),
    "north": ("utm_north", np.float64),
    "heading": ("heading", np.float64),
    "zone_number": ("utm_zone_number", np.int16),
}


_NUMERIC_COLUMNS = (*_ARRAY_FIELDS, "zone_letter", "year")


@dataclass
class NameArrays:
    """The valid names of a source as arrays (in list or sorted-walk order), and the others."""

    paths: PathList
    east: np.ndarray  # float64 UTM metres
    north: np.ndarray
    heading: np.ndarray  # float64 degrees, NaN where the name has none
    zone_number: np.ndarray  # int16
    zone_letter: np.ndarray  # uint8 code of the letter
    year: np.ndarray  # int16, -1 where the name has no timestamp
    malformed: list[tuple[str, str]]  # (path as listed, reason)
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # other fields, on request

    def __len__(self) -> int:
        return len(self.east)

    def zones(self) -> list[tuple[int, str]]:
        """The distinct UTM zones, as (number, letter) pairs."""
        return distinct_zones(self.zone_number, self.zone_letter)


def distinct_zones(zone_number: np.ndarray, zone_letter: np.ndarray) -> list[tuple[int, str]]:
    """(number, letter) pairs found in zone arrays; a count, not a sort (41M names in 0.1 s)."""
    codes = np.bincount(np.asarray(zone_number, np.int64) * 256 + zone_letter, minlength=1)
    return [(int(code) // 256, chr(int(code) % 256)) for code in np.flatnonzero(codes)]


def _extra_sql(name: str) -> str:
    """A field asked for in `extra` (a name field, or "month"), typed, without a line break."""
    if name == "month":
        return month_sql()
    if name == FIELD_NAMES[-1]:  # the extension ends the line, so it holds its break
        return f"rtrim({field_sql(name)}, chr(13) || chr(10))"
    return field_sql(name)


def _chunk_sql(folder: Path, extra: Sequence[str]) -> str:
    # The pattern and the fields read the line with its break: the break can only end up in
    # the extension, which the arrays do not use, and the pattern lets it through there.
    pattern = sql_text(FAST_NAME_PATTERN[:-1] + r"\r?\n?$")
    columns = {
        "east": f"coalesce(CASE WHEN fast THEN {field_sql('utm_east')} END, 'NaN'::DOUBLE)",
        "north": f"coalesce(CASE WHEN fast THEN {field_sql('utm_north')} END, 'NaN'::DOUBLE)",
        "heading": f"coalesce(CASE WHEN fast THEN {field_sql('heading')} END, 'NaN'::DOUBLE)",
        "zone_number": f"coalesce(CASE WHEN fast THEN {field_sql('utm_zone_number')} END, 0)"
        "::SMALLINT",
        "zone_letter": f"coalesce(CASE WHEN fast THEN ascii({field_sql('utm_zone_letter')}) END, 0)"
        "::UTINYINT",
        "year": f"coalesce(CASE WHEN fast THEN {year_sql()} END, -1)::SMALLINT",
        **{f"extra_{name}": f"CASE WHEN fast THEN {_extra_sql(name)} END" for name in extra},
    }
    return f"""
        SELECT start, size, cut, fast,
               CASE WHEN NOT fast THEN raw END AS odd_line,
               CASE WHEN NOT fast THEN {normalized_path_sql("raw", folder)} END AS odd_path,
               {", ".join(f"{sql} AS {name}" for name, sql in columns.items())}
        FROM (SELECT *, cut >= 0 AND regexp_full_match(raw, {pattern}) AS fast,
                     string_split(raw, '@') AS parts
              FROM (SELECT *, {_cut_sql("raw", folder)} AS cut FROM chunk))"""


def _parse_lines(
    tables: Iterable[pa.Table], folder: Path, extra: Sequence[str]
) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """Columns of the valid names (start, length, east, ...) and the malformed (path, reason)."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    sql = _chunk_sql(folder, extra)
    columns: dict[str, list[np.ndarray]] = {}
    malformed: list[tuple[str, str]] = []
    reason_outside = outside_reason(folder)
    for lines in tables:
        table = con.from_arrow(lines).query("chunk", sql).to_arrow_table()
        keep = table["fast"].to_numpy()
        odd = np.flatnonzero(~keep)
        # Writable copies only when parse_name's rows must be filled in.
        convert = np.array if len(odd) else np.asarray
        arrays = {name: convert(table[name].to_numpy()) for name in _NUMERIC_COLUMNS}
        cut = table["cut"].to_numpy()
        arrays["start"] = table["start"].to_numpy() + cut
        arrays["length"] = table["size"].to_numpy() - cut
        for name in extra:
            arrays[f"extra_{name}"] = np.asarray(table[f"extra_{name}"].to_pylist(), dtype=object)
        if len(odd):
            keep = keep.copy()
            odd_lines = table["odd_line"].take(odd).to_pylist()
            odd_paths = table["odd_path"].take(odd).to_pylist()
            for row, line, path in zip(odd.tolist(), odd_lines, odd_paths, strict=True):
                if path is None:
                    malformed.append((strip_line_break(line), reason_outside))
                    continue
                path = strip_line_break(path)
                verdict = judge(path)
                if isinstance(verdict, str):
                    malformed.append((path, verdict))
                    continue
                keep[row] = True
                _fill_slow_row(arrays, row, verdict, extra)
        for name, values in arrays.items():
            columns.setdefault(name, []).append(values[keep])
        del table
    con.close()
    return _concatenate(columns, extra), malformed


def _fill_slow_row(arrays: dict, row: int, verdict: dict, extra: Sequence[str]) -> None:
    for array_name, (name, _) in _ARRAY_FIELDS.items():
        value = verdict[name]
        arrays[array_name][row] = np.nan if value is None else value
    arrays["zone_letter"][row] = ord(verdict["utm_zone_letter"])
    arrays["year"][row] = -1 if verdict["year"] is None else verdict["year"]
    for name in extra:
        arrays[f"extra_{name}"][row] = verdict[name]


def _concatenate(columns: dict[str, list[np.ndarray]], extra: Sequence[str]) -> dict:
    """One array per column, freeing each column's chunks as it goes (bounds the peak)."""
    dtypes = {
        "start": np.int64,
        "length": np.int32,
        **{name: dtype for name, (_, dtype) in _ARRAY_FIELDS.items()},
        "zone_letter": np.uint8,
        "year": np.int16,
        **{f"extra_{name}": object for name in extra},
    }
    out = {}
    for name, dtype in dtypes.items():
        chunks = columns.pop(name, [])
        out[name] = (
            np.concatenate(chunks).astype(dtype, copy=False) if chunks else np.zeros(0, dtype)
        )
        del chunks
    return out


def _arrays(
    columns: dict, malformed: list, extra: Sequence[str], file=None, buffer=None
) -> NameArrays:
    return NameArrays(
        paths=PathList(columns["start"], columns["length"], file=file, buffer=buffer),
        east=columns["east"],
        north=columns["north"],
        heading=columns["heading"],
        zone_number=columns["zone_number"],
        zone_letter=columns["zone_letter"],
        year=columns["year"],
        malformed=malformed,
        extra={name: columns[f"extra_{name}"] for name in extra},
    )


def read_names(
    source: NameSource,
    extra: Sequence[str] = (),
    progress: bool = False,
    walked: tuple[list[str], list[tuple[str, str]]] | None = None,
) -> NameArrays:
    """Parse every name of a source: its list file, or its folder walked (or `walked`)."""
    tables, file, buffer, odd = line_tables(source, progress, walked)
    columns, malformed = _parse_lines(tables, source.folder, extra)
    return _arrays(columns, odd + malformed, extra, file=file, buffer=buffer)


def joined_paths(paths: Sequence[str]) -> bytes:
    """The paths as the lines of one UTF-8 buffer (what a list file would hold)."""
    return ("\n".join(paths) + "\n").encode("utf-8") if paths else b""


def parse_paths(
    paths: Iterable[str], folder: str | os.PathLike = ".", extra: Sequence[str] = ()
) -> tuple[NameArrays, np.ndarray]:
    """Parse an in-memory list of paths; also returns the input index of each valid name.

    A path holding a line break is malformed (no list file could carry it); blank ones are
    skipped, as in a list file.
    """
    paths = list(paths)
    odd = [(i, p) for i, p in enumerate(paths) if "\n" in p or "\r" in p]
    if odd:
        bad = {i for i, _ in odd}
        kept_index = np.array([i for i in range(len(paths)) if i not in bad], dtype=np.int64)
        paths = [paths[i] for i in kept_index.tolist()]
    else:
        kept_index = np.arange(len(paths), dtype=np.int64)
    buffer = joined_paths(paths)
    tables = (_lines_table(b, o) for b, o in _blocks_of_bytes(buffer))
    columns, malformed = _parse_lines(tables, Path(folder), extra)
    names = _arrays(
        columns, [(p, LINE_BREAK_REASON) for _, p in odd] + malformed, extra, buffer=buffer
    )
    # Each path's line starts one byte after the previous line's break.
    line_starts = np.cumsum([0] + [len(p.encode("utf-8")) + 1 for p in paths[:-1]])
    line_of = np.searchsorted(line_starts, names.paths.start, side="right") - 1
    return names, kept_index[line_of] if len(paths) else np.zeros(0, np.int64)
