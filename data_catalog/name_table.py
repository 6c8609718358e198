"""SF-XL paths to label arrays: the one bulk parser, for ingest, training, evaluation and the app.

The paths of a source (name_source: a folder or its X_images_paths.txt) are parsed in
chunks by DuckDB with the pattern and casts of name_pattern; the few paths the pattern
refuses are judged by `names.parse_name`. The result is a NameArrays: numbers per valid
name, the malformed ones with their reasons, and the paths as byte offsets.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from data_catalog.name_pattern import (
    FAST_NAME_PATTERN,
    field_sql,
    judge,
    month_sql,
    sql_text,
    year_sql,
)
from data_catalog.name_source import (
    LINE_BREAK_REASON,
    NameSource,
    PathList,
    blocks_of_bytes,
    cut_sql,
    joined_paths,
    line_tables,
    lines_table,
    normalized_path_sql,
    outside_reason,
    strip_line_break,
)
from data_catalog.names import FIELD_NAMES

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
        """The distinct UTM zones as (number, letter); a count, not a sort (41M names in 0.1 s)."""
        codes = np.bincount(
            np.asarray(self.zone_number, np.int64) * 256 + self.zone_letter, minlength=1
        )
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
              FROM (SELECT *, {cut_sql("raw", folder)} AS cut FROM chunk))"""


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
        malformed=malformed,
        extra={name: columns[f"extra_{name}"] for name in extra},
        **{name: columns[name] for name in _NUMERIC_COLUMNS},
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


def parse_paths(
    paths: Iterable[str], folder: str | os.PathLike = ".", extra: Sequence[str] = ()
) -> tuple[NameArrays, np.ndarray]:
    """Parse an in-memory list of paths; also returns the input index of each valid name.

    A path holding a line break is malformed (no list file could carry it); blank ones are
    skipped, as in a list file.
    """
    paths = list(paths)
    has_break = np.array(["\n" in p or "\r" in p for p in paths], dtype=bool)
    odd = [(paths[i], LINE_BREAK_REASON) for i in np.flatnonzero(has_break).tolist()]
    kept_index = np.flatnonzero(~has_break).astype(np.int64)
    paths = [paths[i] for i in kept_index.tolist()]
    buffer = joined_paths(paths)
    tables = (lines_table(b, o) for b, o in blocks_of_bytes(buffer))
    columns, malformed = _parse_lines(tables, Path(folder), extra)
    names = _arrays(columns, odd + malformed, extra, buffer=buffer)
    # Each path's line starts one byte after the previous line's break.
    line_starts = np.cumsum([0] + [len(p.encode("utf-8")) + 1 for p in paths[:-1]])
    line_of = np.searchsorted(line_starts, names.paths.start, side="right") - 1
    return names, kept_index[line_of] if len(paths) else np.zeros(0, np.int64)
