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


def int_tuple(raw: str | None, size: int) -> tuple[int, ...] | None:
    """'12_-3' -> (12, -3) when it holds exactly `size` integers; None otherwise."""
    try:
        values = tuple(int(part) for part in (raw or "").split("_"))
    except ValueError:
        return None
    return values if len(values) == size else None


def initial_choice(key: str, options: list, default: Any = None) -> None:
    """Like initial(), for a select box: a URL value that is not an option falls back."""
    initial(key, default)
    if st.session_state[key] not in options:
        st.session_state[key] = default if default in options else (options[0] if options else None)


def publish(**values: Any) -> None:
    """Write the values to the URL (None removes a key)."""
    for key, value in values.items():
        if value is None:
            if key in st.query_params:
                del st.query_params[key]
        elif st.query_params.get(key) != str(value):
            st.query_params[key] = str(value)
