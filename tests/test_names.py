"""The SF-XL file name: parse/format round trip, malformed names, and the bulk parser of the
catalog agreeing with names.parse_name."""

from __future__ import annotations

import math

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_catalog.catalog import NAME_COLUMNS
from data_catalog.name_pattern import FAST_NAME_PATTERN
from data_catalog.name_table import parse_paths
from data_catalog.names import FIELD_NAMES, MalformedNameError, format_name, make_name, parse_name

REAL = (
    "@0543037.38@4180974.80@10@S@037.77510@-122.51130@1ooZhwTQyuNt0xiue5YhLg@@134@@@@201311@@.jpg"
)


def test_real_example_round_trip():
    name = parse_name(REAL)
    assert format_name(name) == REAL
    assert (name.east, name.north, name.zone_number, name.utm_zone_letter) == (
        543037.38,
        4180974.80,
        10,
        "S",
    )
    assert (name.latitude, name.longitude) == (37.7751, -122.5113)
    assert name.pano_id == "1ooZhwTQyuNt0xiue5YhLg"
    assert name.tile_num == "" and name.pitch == "" and name.note == ""
    assert name.heading_deg == 134.0
    assert (name.year, name.month, name.extension) == (2013, 11, ".jpg")


def test_make_name_writes_the_real_example():
    built = make_name(
        543037.38,
        4180974.80,
        10,
        "S",
        37.7751,
        -122.5113,
        pano_id="1ooZhwTQyuNt0xiue5YhLg",
        heading=134,
        timestamp="201311",
    )
    assert built == REAL


def test_empty_fields_stay_empty():
    built = make_name(543000.0, 4175000.0, 10, "S", 37.7, -122.5)
    name = parse_name(built)
    assert built.count("@") == len(FIELD_NAMES)
    assert name.heading_deg is None and name.year is None and name.month is None
    assert format_name(name) == built


@pytest.mark.parametrize(("heading", "text"), [(0, "0"), (5, "5"), (90.0, "90"), (7.5, "7.5")])
def test_heading_is_not_zero_padded(heading, text):
    built = make_name(543000.0, 4175000.0, 10, "S", 37.7, -122.5, heading=heading)
    assert built.split("@")[9] == text
    assert parse_name(built).heading_deg == float(heading)


def test_only_the_base_name_is_parsed():
    nested = f"/data/sf@xl/a@b@c/train/37.77@-122.51/{REAL}"
    assert parse_name(nested) == parse_name(REAL)


MALFORMED = [
    ("photo.jpg", "found 0"),
    ("@0543037.38@4180974.80@10@S.jpg", "found 4"),
    (REAL[1:].replace("0543037.38", "x0543037.38", 1), "found 14"),  # no leading '@'
    (REAL.replace("0543037.38", "east", 1), "utm_east is not a number"),
    (REAL.replace("0543037.38", "inf", 1), "utm_east is not finite"),
    (REAL.replace("4180974.80", "-Infinity", 1), "utm_north is not finite"),
    (REAL.replace("037.77510", "NaN", 1), "lat is not finite"),
    (REAL.replace("@134@", "@nan@", 1), "heading is not finite"),
    (REAL.replace("@134@", "@-INF@", 1), "heading is not finite"),
    (REAL.replace("@134@@@@", "@134@+nan@@@", 1), "pitch is not finite"),
    (REAL.replace("@134@@@@", "@134@@inf@@", 1), "roll is not finite"),
    (REAL.replace("@134@@@@", "@134@@@Infinity@", 1), "height is not finite"),
    (REAL.replace("@10@", "@61@", 1), "utm_zone_number must be 1..60"),
    (REAL.replace("@S@", "@I@", 1), "utm_zone_letter"),
    (REAL.replace("037.77510", "095.00000", 1), "lat/lon out of range"),
    (REAL.replace("@134@", "@north@", 1), "heading is not a number"),
    (REAL.replace("201311", "2013", 1), "timestamp must be"),
    (REAL.replace("201311", "201313", 1), "month out of range"),
    (REAL.replace("@.jpg", "@jpg", 1), "extension must start with '.'"),
]


@pytest.mark.parametrize(("path", "reason"), MALFORMED)
def test_malformed_names_say_why(path, reason):
    with pytest.raises(MalformedNameError) as caught:
        parse_name(f"train/{path}")
    assert reason in caught.value.reason
    assert caught.value.path == f"train/{path}"
    assert str(caught.value).startswith(f"train/{path}: ")


coordinates = st.tuples(
    st.floats(543_000, 555_000), st.floats(4_175_000, 4_185_000), st.floats(37.6, 37.9)
)


@settings(max_examples=60, deadline=None)
@given(
    coordinates,
    st.one_of(st.none(), st.integers(0, 359), st.floats(0, 359.5).map(lambda h: round(h, 1))),
    st.text("abcXYZ019_-", max_size=22),
    st.sampled_from(["", "2013", "201311", "20131105", "20131105_120000"]).map(
        lambda s: s if len(s) != 4 else ""
    ),
)
def test_round_trip_of_built_names(point, heading, pano_id, timestamp):
    east, north, lat = point
    built = make_name(
        east, north, 10, "S", lat, -122.4, pano_id=pano_id, heading=heading, timestamp=timestamp
    )
    assert format_name(parse_name(built)) == built
    assert parse_name(f"x@y/{built}") == parse_name(built)


# --- the catalog's bulk parser agrees with parse_name ------------------------------------------


def _expected_value(field: str, text: str):
    kind = NAME_COLUMNS[field]
    if kind.startswith("VARCHAR"):
        return text
    if kind.startswith("INTEGER"):
        return int(text)
    return float(text) if text else None


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _same(a, b) -> bool:
    """Equal, where None and NaN both mean missing (pandas shows NULL as NaN)."""
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    return a == b


def assert_bulk_agrees(paths: list[str]) -> None:
    """The one bulk parser agrees with parse_name on every path, field by field."""
    arrays, index = parse_paths(paths, extra=(*FIELD_NAMES, "month"))
    reasons = dict(arrays.malformed)
    position = {paths[i]: row for row, i in enumerate(index.tolist())}
    for path in paths:
        try:
            name = parse_name(path)
        except MalformedNameError as error:
            assert path not in position, f"bulk parser accepted {path!r}: {error.reason}"
            assert reasons[path] == error.reason
            continue
        assert path in position, f"bulk parser rejected {path!r}: {reasons.get(path)}"
        i = position[path]
        for field in FIELD_NAMES:
            expected = _expected_value(field, getattr(name, field))
            found = arrays.extra[field][i]
            assert _same(found, expected), (path, field, found, expected)
        assert _same(arrays.extra["month"][i], name.month)
        assert arrays.paths[i] == path
        assert (arrays.east[i], arrays.north[i]) == (name.east, name.north)
        assert _same(float(arrays.heading[i]), name.heading_deg)
        assert (int(arrays.zone_number[i]), chr(arrays.zone_letter[i])) == (
            name.zone_number,
            name.utm_zone_letter,
        )
        assert int(arrays.year[i]) == (-1 if name.year is None else name.year)


def test_bulk_parser_takes_the_fast_way_for_real_names():
    paths = [REAL, f"train/sf@xl/a@b/{REAL}", f"val/queries/{REAL}"]
    names, _ = parse_paths(paths)
    fast = duckdb.execute(
        "SELECT bool_and(regexp_full_match(path, ?)) FROM unnest(?) AS t(path)",
        [FAST_NAME_PATTERN, paths],
    ).fetchone()[0]
    assert names.malformed == [] and fast
    assert_bulk_agrees(paths)


def test_bulk_parser_agrees_on_odd_and_malformed_names():
    odd_but_valid = [
        REAL.replace("0543037.38", "5.4303738e5", 1),  # exponent: parse_name accepts it
        REAL.replace("@134@", "@ 134@", 1),  # float() strips spaces
        REAL.replace("@10@", "@010@", 1),
        REAL.replace("037.77510", "+37.7751", 1),
        REAL.replace("-122.51130", "-180", 1),
        REAL.replace("037.77510", "90.000", 1),
        REAL.replace("201311", "20131105_235959", 1),
    ]
    paths = [REAL, f"a@b/{REAL}", *odd_but_valid, *(path for path, _ in MALFORMED)]
    paths += [f"x@y/{path}" for path, _ in MALFORMED]
    assert_bulk_agrees(paths)


# Letters enough for nan, inf and infinity in any case, with signs and exponents.
_FIELD_TEXT = st.text("0123456789.+-eE_ SNIAFYnaifty@/\u0663x", max_size=9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(FIELD_NAMES) - 1), _FIELD_TEXT), max_size=40))
def test_bulk_parser_agrees_on_mutated_names(mutations):
    fields = REAL.split("@")[1:]
    paths = [REAL]
    for index, text in mutations:
        mutated = list(fields)
        mutated[index] = text
        paths.append("train/" + "@" + "@".join(mutated))
    assert_bulk_agrees(list(dict.fromkeys(paths)))
