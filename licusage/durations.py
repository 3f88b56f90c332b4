"""Durations as people type them (``45m``, ``2h``, ``1h30m``, ``1d2h``) and as tables show them.

Grammar of :func:`parse_duration`: one or more ``<whole number><unit>`` parts, units ``d``
(days), ``h`` (hours), ``m`` (minutes) and ``s`` (seconds), each at most once and largest
first; case and spaces between parts do not matter (``1h 30m``, ``2H``). A bare number is
refused on purpose: ``--idle-over 2`` could mean 2 seconds, minutes or hours, and a wrong guess
would log everybody out. Empty text, signs, fractions, unknown units and durations longer than
:data:`MAX_DURATION` raise :class:`~licusage.errors.InvalidInput`.
"""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import InvalidInput

MAX_DURATION = timedelta(days=3650)  # ten years: anything longer is a typo, not a policy

UNITS: dict[str, timedelta] = {
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
}
_PART = re.compile(r"\s*([0-9]+)\s*([a-z])\s*")


def parse_duration(
    text: str, *, minimum: timedelta = timedelta(0), maximum: timedelta = MAX_DURATION
) -> timedelta:
    """The timedelta `text` names, e.g. ``parse_duration("1h30m") == timedelta(minutes=90)``.

    Raises :class:`~licusage.errors.InvalidInput` (a ``ValueError``) for malformed text and
    for durations below `minimum` or above `maximum`.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"a duration must be text such as '2h', not {text!r}")
    cleaned = text.strip().lower()
    if not cleaned:
        raise InvalidInput("a duration may not be empty; use e.g. 30s, 45m, 2h, 1d or 1h30m")
    if cleaned.startswith("-"):
        raise InvalidInput(f"a duration may not be negative: {text!r}")
    if re.fullmatch(r"[0-9]+", cleaned):
        raise InvalidInput(
            f"duration {text!r} has no unit; write e.g. {cleaned}s, {cleaned}m or {cleaned}h"
        )
    total = timedelta(0)
    seen: list[str] = []
    position = 0
    order = list(UNITS)
    while position < len(cleaned):
        match = _PART.match(cleaned, position)
        if match is None or match.end() == position:
            raise InvalidInput(
                f"invalid duration {text!r}; use e.g. 30s, 45m, 2h, 1d, 1h30m or 1d2h"
            )
        digits, unit = match.groups()
        if unit not in UNITS:
            raise InvalidInput(
                f"invalid duration {text!r}: unknown unit {unit!r} (use d, h, m or s)"
            )
        if unit in seen or (seen and order.index(unit) < order.index(seen[-1])):
            raise InvalidInput(
                f"invalid duration {text!r}: give each unit once, largest first (e.g. 1d2h30m)"
            )
        if len(digits) > 30 or int(digits) > maximum // UNITS[unit]:
            raise InvalidInput(f"duration {text!r} is too long (at most {_describe(maximum)})")
        seen.append(unit)
        total += int(digits) * UNITS[unit]
        position = match.end()
    if total > maximum:
        raise InvalidInput(f"duration {text!r} is too long (at most {_describe(maximum)})")
    if total < minimum:
        raise InvalidInput(f"duration {text!r} is too short (at least {_describe(minimum)})")
    return total


def _describe(value: timedelta) -> str:
    if value % timedelta(days=1) == timedelta(0) and value >= timedelta(days=1):
        return f"{value.days}d"
    return format_duration(value).replace(" ", "")


def format_duration(value: timedelta | float | None, *, seconds: bool = True) -> str:
    """A short readable form: ``45s``, ``12m 05s``, ``2h 05m``, ``3d 04h`` (two units at most).

    The one duration format of the CLI, the CSV export and the dashboard. `value` is a
    timedelta (or pandas Timedelta) or a number of seconds; None or NaN show as ``""``. Without
    `seconds` (the dashboard's table) the smallest unit is the minute: ``12m``, ``0m``. Negative
    values (a clock running behind) show as ``0s`` (``0m``); sub-second parts are dropped.
    """
    if value is None or (not isinstance(value, timedelta) and value != value):  # None, NaN
        return ""
    total = value.total_seconds() if isinstance(value, timedelta) else float(value)
    whole = max(int(total), 0)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if not seconds:
        return f"{minutes}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
