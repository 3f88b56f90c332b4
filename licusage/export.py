"""The one CSV formatter of every export: the CLI's ``--format csv`` and the dashboard's downloads.

Rules (documented in ``docs/api.md``, "Exports"):

* **No formulas.** A text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
  return is written with a leading ``'`` (the OWASP rule against CSV injection), so a
  spreadsheet shows ``=HYPERLINK(...)`` as text instead of running it. Only text is changed:
  numbers (``-3``, ``2.5``) stay numbers.
* **Times** are ISO 8601 in UTC (``2026-03-02T10:00:00+00:00``); naive datetimes are taken to be
  UTC already, as the store keeps them. Missing values are empty cells.
* **Durations** (``timedelta``) are whole seconds, so they sort and add up; :func:`frame_csv`
  can add a readable column beside each (``idle_text``: ``2h 05m``).
"""

from __future__ import annotations

import csv
import io
import numbers
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from . import clock

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _missing(value: Any) -> bool:
    """None, NaN, NaT (of any kind)."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # not a scalar
        return False


def neutralise(text: str) -> str:
    """`text` with a leading ``'`` when a spreadsheet would take it for a formula."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def iso_utc(value: Any) -> str | None:
    """A time as ISO 8601 UTC text (None for a missing one)."""
    if value is None or _missing(value):
        return None
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        value = pd.Timestamp(value).to_pydatetime()
    if isinstance(value, datetime):
        return clock.to_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"not a time: {value!r}")


def seconds(value: Any) -> int | None:
    """A duration as whole seconds, never negative (None for a missing one)."""
    if value is None or _missing(value):
        return None
    return max(int(pd.Timedelta(value).total_seconds()), 0)


def cell(value: Any) -> Any:
    """One value as a CSV cell: text neutralised, numbers kept, times ISO UTC, durations in
    seconds, missing values empty."""
    if isinstance(value, str):
        return neutralise(value)
    if value is None or _missing(value):
        return ""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, (datetime, date, np.datetime64)):
        text = iso_utc(value)
        return "" if text is None else text
    if isinstance(value, (timedelta, np.timedelta64)):
        number = seconds(value)
        return "" if number is None else number
    if isinstance(value, numbers.Number):
        return value
    return neutralise(str(value))


def write_csv(
    records: Iterable[Mapping[str, Any]], columns: Sequence[str], out: io.TextIOBase | Any
) -> None:
    """Write `records` (dicts keyed by `columns`) to `out` as CSV with a header line."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([neutralise(str(c)) for c in columns])
    for record in records:
        writer.writerow([cell(record.get(c)) for c in columns])


def records_csv(records: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """:func:`write_csv` into a string."""
    out = io.StringIO()
    write_csv(records, columns, out)
    return out.getvalue()


def frame_csv(
    frame: pd.DataFrame,
    *,
    index: bool = False,
    readable_durations: bool = False,
) -> str:
    """`frame` as CSV text by the rules of this module.

    With `index`, the index comes first (its name as the header). With `readable_durations`,
    every duration column ``x`` (timedelta dtype) is followed by ``x_text`` (``2h 05m``).
    """
    from .durations import format_duration

    data = frame.reset_index() if index else frame
    columns: list[str] = []
    series: list[list[Any]] = []
    for name in data.columns:
        column = data[name]
        values = list(column)
        columns.append(str(name))
        series.append(values)
        if readable_durations and pd.api.types.is_timedelta64_dtype(column.dtype):
            columns.append(f"{name}_text")
            series.append(
                [
                    "" if pd.isna(v) else format_duration(pd.Timedelta(v).to_pytimedelta())
                    for v in column
                ]
            )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([neutralise(c) for c in columns])
    for row in zip(*series, strict=True):
        writer.writerow([cell(v) for v in row])
    return out.getvalue()


def frame_csv_file(frame: pd.DataFrame, **options: Any) -> io.StringIO:
    """:func:`frame_csv` as a file object at its start (what a download widget reads)."""
    out = io.StringIO(frame_csv(frame, **options))
    out.seek(0)
    return out
