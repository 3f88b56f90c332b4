"""Tables for people (notebooks, reports): durations and times in words a reader scans.

Query results keep exact values (``Timedelta``, microsecond UTC timestamps) for computing;
:func:`readable` makes a copy to show.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .durations import format_duration

TIME_FORMAT = "%Y-%m-%d %H:%M"


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 session``, ``2 sessions``, ``1,000 sessions`` (`many`: an irregular plural)."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


def _duration(value: Any) -> str:
    return "" if pd.isna(value) else format_duration(pd.Timedelta(value).to_pytimedelta())


def readable(frame: pd.DataFrame, tz: str = "UTC") -> pd.DataFrame:
    """A copy of `frame` to show: durations as ``2h 05m`` (see
    :func:`licusage.durations.format_duration`), timestamps to the minute in `tz` (``UTC`` by
    default; naive ones are taken as UTC), missing values blank. Other columns are unchanged.
    """
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_timedelta64_dtype(values):
            out[column] = values.map(_duration)
        elif pd.api.types.is_datetime64_any_dtype(values):
            stamps = values.dt.tz_localize("UTC") if values.dt.tz is None else values
            out[column] = stamps.dt.tz_convert(tz).dt.strftime(TIME_FORMAT).fillna("")
    return out
