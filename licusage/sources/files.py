"""Remembering how far a log was imported: offset, fingerprint and the parser's state.

A log is recognised by its content, not its name: an import hashes the file's first bytes
up to each offset recorded for the server and format, and continues after the longest one
that matches (the same log, grown, or just the same log again). A log that matches none
(rotated, or another server's) is read from its start. Only whole lines are read: a last line
without its newline is left for the next import, when it is complete.

:func:`import_logs` is the one loop every log source runs: a :class:`LogFormat` names how to
recognise the log and how to read its lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, Required, TypedDict
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from tqdm import tqdm

from .. import clock
from ..db import write
from ..errors import InvalidInput
from ..models import imported_files_t
from .mapping import FeatureMap
from .writer import Counts, ServerWriter

CHUNK = 1 << 20
BLOCK = 1 << 17  # bytes read at a time: decoded, hashed and shown on the progress bar at once
SNIFF_LINES = 50  # a log shows what it is among its first lines


@dataclass
class Resume:
    """Where to continue reading a file: its record (None: new), offset, hash and state."""

    record_id: int | None
    offset: int
    lines: int
    state: dict[str, Any]
    hasher: Any  # hashlib object holding the digest of the bytes before `offset`


def find_resume(conn: Connection, server_id: int, fmt: str, handle: IO[bytes], size: int) -> Resume:
    """The longest recorded prefix of the file open in `handle` (positioned at 0)."""
    records = conn.execute(
        sa.select(
            imported_files_t.c.id,
            imported_files_t.c.offset,
            imported_files_t.c.fingerprint,
            imported_files_t.c.lines,
            imported_files_t.c.state,
        )
        .where(
            imported_files_t.c.server_id == server_id,
            imported_files_t.c.format == fmt,
            imported_files_t.c.offset <= size,
        )
        .order_by(imported_files_t.c.offset)
    ).all()
    hasher = hashlib.sha256()
    best = Resume(None, 0, 0, {}, hasher.copy())
    position = 0
    for record in records:
        while position < record.offset:
            chunk = handle.read(min(CHUNK, record.offset - position))
            if not chunk:
                break
            hasher.update(chunk)
            position += len(chunk)
        if position == record.offset and hasher.hexdigest() == record.fingerprint:
            best = Resume(
                record.id, record.offset, record.lines, json.loads(record.state), hasher.copy()
            )
    handle.seek(best.offset)
    return best


def save(
    conn: Connection,
    resume: Resume,
    *,
    server_id: int,
    fmt: str,
    path: str,
    offset: int,
    lines: int,
    state: dict[str, Any],
) -> None:
    """Record that the file was read up to `offset` (`resume.hasher` holds those bytes)."""
    values = {
        "server_id": server_id,
        "format": fmt,
        "path": path,
        "offset": offset,
        "fingerprint": resume.hasher.hexdigest(),
        "lines": lines,
        "state": json.dumps(state, sort_keys=True),
        "imported_at": clock.current_db_time(),
    }
    if resume.record_id is None:
        conn.execute(sa.insert(imported_files_t).values(**values))
    else:
        conn.execute(
            sa.update(imported_files_t)
            .where(imported_files_t.c.id == resume.record_id)
            .values(**values)
        )


@dataclass
class ImportResult:
    """What one import read and changed."""

    files: int = 0
    lines: int = 0  # new lines read
    bytes: int = 0  # new bytes read
    skipped_bytes: int = 0  # bytes an earlier import had read already
    counts: Counts | None = None


class Clock(Protocol):
    """A log reader's sense of date and time; its state is kept between imports."""

    def state(self) -> dict[str, Any]: ...


class LogReader:
    """Reads a log's lines into a :class:`ServerWriter` (subclasses define :meth:`line`);
    `number` is the line being read."""

    def __init__(self, path: str, writer: ServerWriter, clock: Any) -> None:
        self.path, self.writer, self.clock = path, writer, clock
        self.number = 0

    def bad(self, message: str) -> InvalidInput:
        """The error for the line being read."""
        return InvalidInput(f"{self.path}, line {self.number}: {message}")

    def line(self, text: str) -> None:
        """Read one line (with its newline)."""
        raise NotImplementedError

    def block(self, text: str, first: int) -> None:
        """Read `text`: whole lines, each ending with a newline, the first of them line number
        `first`. This reads them one by one with :meth:`line`; a reader may read a block at
        once instead (e.g. with one pattern over it)."""
        lines = text.split("\n")
        lines.pop()  # what follows the last newline: nothing
        for number, line in enumerate(lines, first):
            self.number = number
            self.line(line + "\n")

    def state(self) -> dict[str, Any]:
        """What the next import needs to go on reading."""
        return dict(self.clock.state())


@dataclass(frozen=True)
class LogFormat:
    """A kind of log: its name in ``imported_files.format``, the server kind it comes from,
    what it is called in errors (``a FlexLM debug log``), the pattern one of its first lines
    matches (stripped) and what the error says when none does, its clock (made from the state
    an earlier import left) and its line reader."""

    name: str
    server_kind: str
    title: str
    marker: re.Pattern[str]
    no_marker: str
    clock: Callable[[dict[str, Any], ZoneInfo], Clock]
    reader: type[LogReader]

    def sniff(self, path: str, head: bytes) -> None:
        """Raise InvalidInput unless the first bytes of the file at `path` are such a log."""
        if b"\x00" in head:
            raise InvalidInput(f"{path} is not {self.title} (it is binary)")
        lines = head.decode("utf-8", "replace").splitlines()[:SNIFF_LINES]
        if not any(self.marker.match(line.strip()) for line in lines):
            raise InvalidInput(f"{path} is not {self.title} ({self.no_marker})")


def _read_cannot(path: str, error: OSError) -> InvalidInput:
    return InvalidInput(f"cannot read {path}: {error.strerror or error}")


def _import_file(
    conn: Connection,
    fmt: LogFormat,
    writer: ServerWriter,
    path: str,
    tz: ZoneInfo,
    progress: bool,
    result: ImportResult,
) -> None:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after a long loop
    except OSError as error:
        raise _read_cannot(path, error) from None
    with handle:
        try:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(64 * 1024)
            handle.seek(0)
        except OSError as error:
            raise _read_cannot(path, error) from None
        fmt.sniff(path, head)
        resume = find_resume(conn, writer.server_id, fmt.name, handle, size)
        reader = fmt.reader(path, writer, fmt.clock(resume.state, tz))
        offset, lines = resume.offset, resume.lines
        result.skipped_bytes += offset
        with tqdm(
            total=size - offset,
            unit="B",
            unit_scale=True,
            desc=f"importing {Path(path).name}",
            disable=not progress,
            leave=False,
        ) as bar:
            carry = b""  # the start of a line the block read so far does not complete
            while chunk := handle.read(BLOCK):
                data = carry + chunk if carry else chunk
                end = data.rfind(b"\n") + 1
                carry = data[end:]
                if not end:
                    continue
                whole = data[:end]
                # "\n" never occurs inside a UTF-8 sequence: decoding a block of lines gives
                # the text of decoding each line
                reader.block(whole.decode("utf-8", "replace"), lines + 1)
                lines += whole.count(b"\n")
                offset += end
                resume.hasher.update(whole)
                bar.update(end)
            # a last line without its newline is not complete yet: the next import reads it
        result.lines += lines - resume.lines
        result.bytes += offset - resume.offset
        result.files += 1
        if resume.record_id is not None and offset == resume.offset:
            return  # nothing new: the store stays exactly as it was
        save(
            conn,
            resume,
            server_id=writer.server_id,
            fmt=fmt.name,
            path=str(Path(path).resolve()),
            offset=offset,
            lines=lines,
            state=reader.state(),
        )


class ImportOptions(TypedDict, total=False):
    """The keyword arguments of every log import (``import_flexlm_log(engine, paths,
    server="lic1")``): one declaration for all of them; only `server` is required."""

    server: Required[str]
    mapping: FeatureMap | None
    timezone: str | None
    progress: bool


def import_logs(
    engine: Engine,
    fmt: LogFormat,
    paths: Sequence[str],
    *,
    server: str,
    mapping: FeatureMap | None = None,
    timezone: str | None = None,
    progress: bool = False,
) -> ImportResult:
    """Import logs of format `fmt` of the license server named `server`, all in one transaction
    (all or nothing); each file continues where an earlier import of it stopped.

    `mapping` maps the server's features to products (None: the built-in mapping), `timezone`
    is the server's (None: this machine's), `progress` shows a progress bar."""
    tz = clock.zone(timezone)
    if not paths:
        raise InvalidInput("no log file given")
    result = ImportResult()
    with write(engine) as conn:
        writer = ServerWriter(conn, server, fmt.server_kind, mapping)
        for path in paths:
            _import_file(conn, fmt, writer, str(path), tz, progress, result)
        writer.flush()
    result.counts = writer.counts
    return result
