"""The FlexLM (FlexNet Publisher) debug log: ``lmgrd -l FILE``, read into the store.

Each line starts with a time of day and the daemon's name in parentheses::

     9:27:32 (adskflex) OUT: "64300ACD_F" USER03@COMPUTER03
    11:02:14 (adskflex) IN: "64300ACD_F" USER07@COMPUTER04  (INACTIVE)
    10:12:00 (vendor) OUT: "solver" ana@ws12  (8 licenses)
    10:13:00 (vendor) DENIED: "solver" bo@ws3  (Licensed number of users already reached. (-4,342))
    10:13:00 (vendor) QUEUED: "solver" bo@ws3  (Licensed number of users already reached. (-4,342))
    10:14:00 (vendor) UNSUPPORTED: "nosuch" (PORT_AT_HOST_PLUS   ) bo@ws3  (License server system does not support this feature. (-18,327))
     7:56:05 (lmgrd) TIMESTAMP 3/30/2016

What is read:

* ``OUT`` / ``IN`` with ``(N licenses)`` (default 1); ``IN ... (INACTIVE)`` ends with reason
  ``idle_timeout`` (the server's TIMEOUT), any other ``IN`` with ``checked_in``.
* ``DENIED`` and ``UNSUPPORTED`` become denials (reason ``pool_full`` for FlexLM error -4,
  ``unsupported`` for UNSUPPORTED, else ``server_denied``; the server's words in ``detail``);
  ``QUEUED`` becomes a queued request.
* The date: ``TIMESTAMP M/D/YYYY`` lines, the start-up banner (``(lmgrd) FlexNet Licensing
  (...) started on HOST (...) (M/D/YYYY)`` and ``Server's System Date and Time: ...``); between
  them a time more than 6 hours earlier than the line before is the next day (midnight).
* A restart (the lmgrd banner, or the vendor daemon's ``Server started on``) ends every
  checkout still out (reason ``server_restart``).

Times are local to the server: ``timezone`` (IANA name) converts them to UTC (default UTC).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, Unpack
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from ..db import store_operation
from ..errors import InvalidInput
from ..sessions import POOL_FULL
from . import files
from .files import ImportOptions, ImportResult
from .writer import CHECKED_IN, IDLE_TIMEOUT

FORMAT = "flexlm-log"
UNSUPPORTED = "unsupported"
SERVER_DENIED = "server_denied"
WRAP_SECONDS = 6 * 3600  # a time this much earlier than the last one is the next day
ONE_DAY = timedelta(days=1)

LINE = re.compile(r"\s*(\d{1,2}):(\d{2}):(\d{2}) \(([^()\s]+)\) ?(.*)")
# a block of lines: each time-stamped line's time, daemon, event (None: another message) and
# the rest (lines without a time and a daemon are skipped: wrapped continuations)
LINES = re.compile(
    r"^[^\S\n]*(\d{1,2}:\d{2}:\d{2}) \(([^()\s]+)\) ?(?:(OUT|IN|DENIED|QUEUED|UNSUPPORTED): )?(.*)",
    re.MULTILINE,
)
HOUR = timedelta(hours=1)
SUBJECT = re.compile(r'"([^"]+)" (?:\([^()]*\) )?(\S+)(.*)')
LICENSES = re.compile(r"\((\d+) licenses?\)")
VERBOSE = re.compile(r"\^\^\^.*\^\^\^")
TIMESTAMP = re.compile(r"TIMESTAMP (\d{1,2})/(\d{1,2})/(\d{4})\s*$")
BANNER = re.compile(
    r"(?:FlexNet|FLEXnet|FLEXlm)\b.*\bstarted on\b.*\((\d{1,2})/(\d{1,2})/(\d{4})\)"
)
SYSTEM_DATE = re.compile(r"Server's System Date and Time: \w{3} (\w{3}) (\d{1,2}) (\d{4})")
MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
ERROR_CODE = re.compile(r"\((-?\d+),\s*\d+(?::[^)]*)?\)\)?\s*$")


class _Clock:
    """The date and time of day of the lines read so far."""

    def __init__(self, state: dict[str, Any], tz: ZoneInfo) -> None:
        self.day: date | None = date.fromisoformat(state["date"]) if state.get("date") else None
        self.last: int = int(state.get("last", -1))
        self.tz = tz
        # this day's hours: hour -> the UTC time it starts at (None: its offset changes)
        self._hours: dict[int, datetime | None] = {}
        self._hours_of: date | None = None

    def state(self) -> dict[str, Any]:
        return {"date": self.day.isoformat() if self.day else None, "last": self.last}

    def advance(self, seconds: int) -> None:
        if self.day is not None and self.last >= 0 and seconds < self.last - WRAP_SECONDS:
            self.day += timedelta(days=1)
        self.last = seconds

    def set_day(self, day: date, seconds: int) -> None:
        self.day, self.last = day, seconds

    def utc(self, seconds: int) -> datetime | None:
        """The naive UTC time of `seconds` into the current day (None: no day known yet)."""
        if self.day is None:
            return None
        if self._hours_of != self.day:
            self._hours, self._hours_of = {}, self.day
        hour, within = divmod(seconds, 3600)
        try:
            start = self._hours[hour]
        except KeyError:
            start = self._hours[hour] = self._hour_start(hour)
        if start is None:
            return self._convert(seconds)
        return start + timedelta(seconds=within)

    def _hour_start(self, hour: int) -> datetime | None:
        """When `hour` of the day starts, in UTC, if the zone's offset is the same all through
        it (else None: each time of it is converted on its own)."""
        start, end = self._convert(hour * 3600), self._convert(hour * 3600 + 3599)
        return start if end - start == timedelta(seconds=3599) else None

    def _convert(self, seconds: int) -> datetime:
        assert self.day is not None
        local = datetime(self.day.year, self.day.month, self.day.day) + timedelta(seconds=seconds)
        return local.replace(tzinfo=self.tz).astimezone(UTC).replace(tzinfo=None)


def _date(month: str, day: str, year: str) -> date | None:
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        return None


def _denial_reason(kind: str, detail: str) -> str:
    if kind == "UNSUPPORTED":
        return UNSUPPORTED
    code = ERROR_CODE.search(detail)
    if code and code.group(1) == "-4":
        return POOL_FULL
    return SERVER_DENIED


def _inner(rest: str) -> str | None:
    """The text inside one balanced pair of parentheses making up `rest` (None: not so)."""
    text = VERBOSE.sub("", rest).strip()
    if not text:
        return ""
    if not (text.startswith("(") and text.endswith(")")):
        return None
    depth = 0
    for position, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and position != len(text) - 1:
            return None
        if depth < 0:
            return None
    return text[1:-1] if depth == 0 else None


class _Reader(files.LogReader):
    clock: _Clock

    def __init__(self, path: str, writer: Any, clock: Any) -> None:
        super().__init__(path, writer, clock)
        self._seconds: dict[str, int] = {}  # "H:MM:SS" -> seconds into the day
        self._text, self._first, self._at = "", 0, 0  # the block, its first line, the match

    def bad(self, message: str) -> InvalidInput:
        if self._text:  # reading a block: the number of the line being read
            self.number = self._first + self._text.count("\n", 0, self._at)
        return super().bad(message)

    def block(self, text: str, first: int) -> None:
        """Read a block of lines with one pattern (the lines it skips are the ones :meth:`line`
        skips: without a time and a daemon); the same as :meth:`line` on each."""
        self._text, self._first = text, first
        clock, known = self.clock, self._seconds
        day, last = clock.day, clock.last
        try:
            for match in LINES.finditer(text):
                stamp, daemon, kind, message = match.groups()
                seconds = known.get(stamp)
                if seconds is None:
                    hours, minutes, secs = stamp.split(":")
                    seconds = known[stamp] = int(hours) * 3600 + int(minutes) * 60 + int(secs)
                if day is not None and last >= 0 and seconds < last - WRAP_SECONDS:
                    day += ONE_DAY
                last = seconds
                if kind is None:
                    # only lmgrd's messages and TIMESTAMP / Server's... / Server started on
                    # say anything to _other
                    if daemon == "lmgrd" or message.startswith(("T", "S")):
                        clock.day, clock.last, self._at = day, last, match.start()
                        self._other(daemon, message, seconds)
                        day, last = clock.day, clock.last
                    continue
                clock.day, clock.last, self._at = day, last, match.start()
                self._event(kind, message, seconds, match.group(0))
        finally:
            clock.day, clock.last = day, last
            self._text = ""

    def line(self, text: str) -> None:
        self.block(text if text.endswith("\n") else text + "\n", self.number)

    def _event(self, kind: str, body: str, seconds: int, text: str) -> None:
        """An OUT, IN, DENIED, QUEUED or UNSUPPORTED line (`text`), `body` after its colon."""
        at = self.clock.utc(seconds)
        if at is None:
            raise self.bad("no date is known yet (no start-up banner or TIMESTAMP line before it)")
        subject = SUBJECT.fullmatch(body.rstrip())
        if subject is None:
            if not body.startswith('"') and kind in ("DENIED", "QUEUED"):
                return  # the older "DENIED: N feature to user" form: no user@host to keep
            raise self.bad(f"truncated or malformed {kind} line: {text.strip()!r}")
        feature, who, rest = subject.groups()
        user, at_sign, host = who.rpartition("@")
        if not at_sign or not user:
            raise self.bad(f"{kind} line without user@host: {text.strip()!r}")
        writer = self.writer
        if kind in ("OUT", "IN"):
            licenses = 1
            inactive = False
            count = None
            if rest:  # most lines end with user@host
                remainder = VERBOSE.sub("", rest)
                count = LICENSES.search(remainder)
                if count:
                    licenses = int(count.group(1))
                    remainder = remainder[: count.start()] + remainder[count.end() :]
                if "(INACTIVE)" in remainder:
                    inactive = True
                    remainder = remainder.replace("(INACTIVE)", "", 1)
                if remainder.strip() or licenses < 1:
                    raise self.bad(f"truncated or malformed {kind} line: {text.strip()!r}")
            if kind == "OUT":
                writer.checkout(at, feature, user, host or None, licenses)
            else:
                writer.checkin(
                    at,
                    feature,
                    user,
                    host or None,
                    licenses if count else None,
                    reason=IDLE_TIMEOUT if inactive else CHECKED_IN,
                )
            return
        detail = _inner(rest)
        if detail is None:
            raise self.bad(f"truncated or malformed {kind} line: {text.strip()!r}")
        if kind == "QUEUED":
            writer.queued(at, feature, user, host or None, 1, detail or None)
        else:
            writer.denial(
                at, feature, user, host or None, _denial_reason(kind, detail), detail or None
            )

    def _other(self, daemon: str, message: str, seconds: int) -> None:
        clock = self.clock
        stamp = TIMESTAMP.match(message)
        if stamp:
            day = _date(*stamp.groups())
            if day is None:
                raise self.bad(f"impossible date in {message.strip()!r}")
            clock.set_day(day, seconds)
            return
        banner = BANNER.search(message) if daemon == "lmgrd" else None
        if banner:
            day = _date(*banner.groups())
            if day is not None:
                clock.set_day(day, seconds)
            self._restart(seconds)
            return
        system = SYSTEM_DATE.match(message)
        if system:
            month = MONTHS.get(system.group(1))
            day = _date(str(month), system.group(2), system.group(3)) if month else None
            if day is not None:
                clock.set_day(day, seconds)
            return
        if daemon != "lmgrd" and message.startswith("Server started on"):
            self._restart(seconds)

    def _restart(self, seconds: int) -> None:
        at = self.clock.utc(seconds)
        if at is not None:
            self.writer.restart(at)


FLEXLM_LOG = files.LogFormat(
    FORMAT,
    "flexlm",
    "a FlexLM debug log",
    LINE,
    "no line starts with a time and a daemon, as in ' 9:27:32 (lmgrd) ...'",
    _Clock,
    _Reader,
)


@store_operation
def import_flexlm_log(
    engine: Engine, paths: list[str] | tuple[str, ...], **options: Unpack[ImportOptions]
) -> ImportResult:
    """Import FlexLM debug logs of the license server named `server` (all or nothing).

    Each file continues where an earlier import of the same log stopped (see
    :mod:`licusage.sources.files`): importing a log again changes nothing, a grown log adds only
    its new lines. Raises :class:`~licusage.errors.InvalidInput` for a file that cannot be read,
    is not a debug log or has a truncated line, and for a feature the mapping lacks; then
    nothing is changed.
    """
    return files.import_logs(engine, FLEXLM_LOG, paths, **options)
