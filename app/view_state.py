"""The view's state in the URL (st.query_params), so that a shared link reopens the same view.

Each widget is keyed; on a fresh session its value starts from the URL, and after every run
the current values are written back to the URL.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import streamlit as st


def initial(
    key: str,
    default: Any,
    cast: Callable[[str], Any] = str,
    low: float | None = None,
    high: float | None = None,
) -> None:
    """Seed st.session_state[key] from the URL (or `default`) unless the widget already has it.

    A link is user input: a value that does not cast, or a number outside [low, high] (the
    widget's own range) or not finite, falls back to `default` instead of reaching the widget.
    """
    if key in st.session_state:
        # A value left by another page's widget of the same key (the threshold of Results
        # and Failures) is re-assigned, so that this page's widget starts from it rather than
        # from its own default; only if it is valid here, like a link's.
        value = st.session_state[key]
        if isinstance(value, int | float) and not within(value, low, high):
            value = default
        st.session_state[key] = value
        return
    raw = st.query_params.get(key)
    try:
        value = cast(raw) if raw is not None else default
    except (TypeError, ValueError, OverflowError):
        value = default
    if isinstance(value, int | float) and not within(value, low, high):
        value = default
    st.session_state[key] = value


def within(value: float, low: float | None, high: float | None) -> bool:
    return (
        math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)
    )


def remembered_tuple(key: str, size: int) -> tuple[int, ...] | None:
    """st.session_state[key], else the URL's `key` when it holds `size` integers ('12_-3')."""
    if st.session_state.get(key) is not None:
        return st.session_state[key]
    try:
        values = tuple(int(part) for part in st.query_params.get(key, "").split("_"))
    except ValueError:
        return None
    return values if len(values) == size else None


def choice(
    label: str, options, key: str, default: Any = None, widget=st.selectbox, cast=str, **kwargs
):
    """A choice widget (st.selectbox, st.radio) keyed `key`, starting from the URL like
    initial(); a value that is not an option falls back to `default`, else the first option."""
    initial(key, default, cast)
    if st.session_state[key] not in options:
        st.session_state[key] = default if default in options else (options[0] if options else None)
    return widget(label, options, key=key, **kwargs)


def number(label: str, low, high, key: str, default, widget=st.number_input, **kwargs):
    """A number widget (st.number_input, st.slider) over [low, high] keyed `key`, starting from
    the URL; its values have the type of `low`."""
    initial(key, type(low)(default), type(low), low, high)
    return widget(label, low, high, key=key, **kwargs)


def new_pick(event, key: str) -> dict | None:
    """The object clicked on a st.pydeck_chart, or None: the chart keeps reporting its last
    selection on every rerun, so a pick already seen (remembered under `key`) is not new."""
    picked = [obj for objects in event.selection.objects.values() for obj in objects]
    if not picked or repr(picked[0]) == st.session_state.get(key):
        return None
    st.session_state[key] = repr(picked[0])
    return picked[0]


def publish(**values: Any) -> None:
    """Write the values to the URL (None removes a key)."""
    for key, value in values.items():
        if value is None:
            if key in st.query_params:
                del st.query_params[key]
        elif st.query_params.get(key) != str(value):
            st.query_params[key] = str(value)
