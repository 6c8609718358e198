"""The SF-XL name as SQL: a conservative pattern and typed casts of its `@`-separated fields.

DuckDB matches each path against FAST_NAME_PATTERN, which accepts only names that
`names.parse_name` accepts too (plain decimal numbers, ranges checked), and casts the
fields of those with field_sql. The rare paths it refuses (exponents, odd digits, nan/inf,
malformed names) go to `judge`, that is to `parse_name` itself, which keeps them or gives
the reason they are malformed. The bulk parser (name_table) and the catalog ingest use the
same pattern, casts and judge, so every reader agrees with `parse_name` by construction.
"""

from __future__ import annotations

from data_catalog.names import (
    FIELD_NAMES,
    NUMERIC_FIELDS,
    OPTIONAL_NUMERIC_FIELDS,
    ZONE_LETTERS,
    MalformedNameError,
    SFXLName,
    parse_name,
)

# Each field's pattern accepts a subset of what names._check_fields accepts for that field, so
# a name matching the whole pattern is valid for parse_name too. Anything else is decided by
# parse_name.
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


def typed_fields_sql(parts: str = "parts") -> str:
    """The typed columns of a name, in FIELD_NAMES order, then year and month."""
    columns = [field_sql(name, parts) for name in FIELD_NAMES]
    return ", ".join([*columns, year_sql(parts), month_sql(parts)])


_CASTS = {"VARCHAR": str, "INTEGER": int, "DOUBLE": lambda text: float(text) if text else None}


def typed_row(name: SFXLName) -> dict:
    """The typed field values of a name parsed by parse_name (the slow, rare way)."""
    row = {key: _CASTS[field_kind(key)](getattr(name, key)) for key in FIELD_NAMES}
    return {**row, "year": name.year, "month": name.month}


def judge(path: str) -> dict | str:
    """parse_name's verdict on a path the pattern refused: its typed row, or the reason."""
    try:
        return typed_row(parse_name(path))
    except MalformedNameError as error:
        return error.reason
    except ValueError as error:  # e.g. a zone number of non-ASCII digits int() refuses
        return f"unreadable field: {error}"
