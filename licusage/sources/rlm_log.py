"""The Reprise RLM report log (an ISV server's ``REPORTLOG``), read into the store.

The records read (the "std" and "detailed" formats; fields are separated by spaces, quoted
fields may hold spaces, an empty user or host is ``""``)::

    RLM Report Log Format 0, version 14.2, authenticated
    START hostname mm/dd/yyyy hh:mm
    OUT product version pool# user host "isv_def" count cur_use cur_resuse server_handle
        share_handle process_id "project" "requested product" "requested version" mm/dd hh:mm:ss
    INUSE (same fields as OUT: a checkout out when the log was started)
    IN why product version user host "isv_def" count cur_use cur_resuse server_handle
        share_handle process_id mm/dd hh:mm:ss
    DENY product version user host "isv_def" count why last_attempt mm/dd hh:mm
    QUE product version user host "isv_def" count server_handle "project" "requested product"
        "requested version" mm/dd hh:mm:ss
    SHUTDOWN who user host mm/dd hh:mm:ss

What is read:

* ``OUT`` (and ``INUSE`` for a handle not out yet) checks out ``count`` licenses; ``IN``
  returns the checkout with the same ``server_handle``. The check-in reason ``why`` 3 (removed
  by the administrator) ends with ``removed``, 4 (idle timeout) with ``idle_timeout``, any other
  with ``checked_in``.
* ``DENY`` becomes a denial (reason ``pool_full`` for RLM status -22 "all licenses in use",
  else ``server_denied``; ``detail`` keeps the status); ``QUE`` a queued request.
* ``START`` gives the date with its year; records carry month/day only, and a date more than
  half a year earlier than the last one is in the next year. ``START`` and ``SHUTDOWN`` end
  every checkout still out (reason ``server_restart``). Other records are skipped.

Times (fractional seconds dropped) are local to the server: ``timezone`` converts them to UTC.
Imports are repeatable and incremental as for the FlexLM debug log (:mod:`.files`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, Unpack
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from ..db import store_operation
from ..sessions import POOL_FULL
from . import files
from .files import ImportOptions, ImportResult
from .flexlm_log import SERVER_DENIED
from .writer import CHECKED_IN, IDLE_TIMEOUT, REMOVED

FORMAT = "rlm-log"
REASONS = {"3": REMOVED, "4": IDLE_TIMEOUT}  # IN's "why"; anything else: checked_in
ALL_IN_USE = "-22"  # RLM_EL_ALLINUSE
WRAP_DAYS = 183  # a date this much earlier than the last one is in the next year

TOKEN = re.compile(r'"([^"]*)"|(\S+)')
DAY = re.compile(r"(\d{1,2})/(\d{1,2})$")
FULL_DAY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})$")
TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$")
HEADER = re.compile(r"RLM Report Log Format \d|RLM_LOG_VERSION|START \S+ \d{1,2}/\d{1,2}/\d{4} ")
# fields before the date and time, at least: OUT/INUSE, IN, DENY, QUE, SHUTDOWN
MIN_FIELDS = {"OUT": 12, "INUSE": 12, "IN": 12, "DENY": 8, "QUE": 7, "SHUTDOWN": 3}


class _Clock:
    """The year and last month/day of the records read so far."""

    def __init__(self, state: dict[str, Any], tz: ZoneInfo) -> None:
        self.day: date | None = date.fromisoformat(state["date"]) if state.get("date") else None
        self.tz = tz

    def state(self) -> dict[str, Any]:
        return {"date": self.day.isoformat() if self.day else None}

    def at(self, month: int, day: int, hh: int, mm: int, ss: int) -> datetime | None:
        """Naive UTC of a month/day record time (None: no year known yet, or impossible)."""
        if self.day is None:
            return None
        year = self.day.year
        try:
            when = date(year, month, day)
            if when < self.day - timedelta(days=WRAP_DAYS):
                when = date(year + 1, month, day)
        except ValueError:
            return None
        if when > self.day:
            self.day = when
        local = datetime(when.year, when.month, when.day, hh, mm, ss, tzinfo=self.tz)
        return local.astimezone(UTC).replace(tzinfo=None)


def _tokens(text: str) -> list[str] | None:
    """The record's fields (quoted ones unquoted); None for an unbalanced quote."""
    if text.count('"') % 2:
        return None
    return [m.group(1) if m.group(2) is None else m.group(2) for m in TOKEN.finditer(text)]


class _Reader(files.LogReader):
    clock: _Clock

    def line(self, text: str) -> None:
        kind, _, rest = text.strip().partition(" ")
        if kind == "START":
            self._start(rest)
            return
        need = MIN_FIELDS.get(kind)
        if need is None:
            return  # PRODUCT, TIMEZONE, authentication, ...: nothing to keep
        fields = _tokens(rest)
        if fields is None or len(fields) < need + 2:
            raise self.bad(f"truncated or malformed {kind} record: {text.strip()!r}")
        at = self._time(fields[-2], fields[-1], kind, text)
        fields = fields[:-2]
        writer = self.writer
        if kind == "SHUTDOWN":
            writer.restart(at)
            return
        if kind == "IN":
            why, product, _version, user, host, _isv, count = fields[:7]
            writer.checkin(
                at,
                product,
                user,
                host or None,
                self._count(count, kind, text),
                reason=REASONS.get(why, CHECKED_IN),
                handle=fields[9],
            )
            return
        if kind in ("OUT", "INUSE"):
            product, version, _pool, user, host, _isv, count = fields[:7]
            handle = fields[9]
            licenses = self._count(count, kind, text)
            if kind == "INUSE" and any(
                c.handle == handle and c.feature == product for c in writer.open_checkouts()
            ):
                return
            writer.checkout(
                at, product, user, host or None, licenses, handle=handle, version=version
            )
            return
        product, _version, user, host, _isv, count = fields[:6]
        licenses = self._count(count, kind, text)
        if kind == "QUE":
            writer.queued(
                at, product, user, host or None, licenses, f"rlm: queued, handle {fields[6]}"
            )
            return
        why = fields[6]
        reason = POOL_FULL if why == ALL_IN_USE else SERVER_DENIED
        writer.denial(at, product, user, host or None, reason, f"rlm status {why}")

    def _count(self, value: str, kind: str, text: str) -> int:
        if not value.isdigit() or int(value) < 1:
            raise self.bad(f"bad license count in {kind} record: {text.strip()!r}")
        return int(value)

    def _time(self, day_text: str, time_text: str, kind: str, text: str) -> datetime:
        day, clock_time = DAY.match(day_text), TIME.match(time_text)
        if day is None or clock_time is None:
            raise self.bad(f"truncated or malformed {kind} record: {text.strip()!r}")
        hh, mm, ss = (int(g or 0) for g in clock_time.groups())
        if hh > 23 or mm > 59 or ss > 59:
            raise self.bad(f"impossible time in {kind} record: {text.strip()!r}")
        at = self.clock.at(int(day.group(1)), int(day.group(2)), hh, mm, ss)
        if at is None:
            if self.clock.day is None:
                raise self.bad("no date is known yet (no START record before it)")
            raise self.bad(f"impossible date in {kind} record: {text.strip()!r}")
        return at

    def _start(self, rest: str) -> None:
        fields = rest.split()
        full = FULL_DAY.match(fields[1]) if len(fields) >= 3 else None
        clock_time = TIME.match(fields[2]) if full else None
        if full is None or clock_time is None:
            raise self.bad(f"malformed START record: START {rest.strip()!r}")
        month, day, year = (int(g) for g in full.groups())
        try:
            self.clock.day = date(year, month, day)
        except ValueError:
            raise self.bad(f"impossible date in START {rest.strip()!r}") from None
        hh, mm, ss = (int(g or 0) for g in clock_time.groups())
        at = self.clock.at(month, day, hh, mm, ss)
        assert at is not None
        self.writer.restart(at)


RLM_LOG = files.LogFormat(
    FORMAT,
    "rlm",
    "an RLM report log",
    HEADER,
    "no 'RLM Report Log Format' or START record among its first lines",
    _Clock,
    _Reader,
)


@store_operation
def import_rlm_log(
    engine: Engine, paths: list[str] | tuple[str, ...], **options: Unpack[ImportOptions]
) -> ImportResult:
    """Import RLM report logs of the license server named `server` (all or nothing).

    Each file continues where an earlier import of the same log stopped (see
    :mod:`licusage.sources.files`). Raises :class:`~licusage.errors.InvalidInput` for a file
    that cannot be read, is not a report log or has a truncated record, and for a feature the
    mapping lacks; then nothing is changed.
    """
    return files.import_logs(engine, RLM_LOG, paths, **options)
