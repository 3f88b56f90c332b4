"""Remembering how far a log was imported: offset, fingerprint and the parser's state.

A log is recognised by its content, not its name: an import hashes the file's first bytes
up to each offset recorded for the server and format, and continues after the longest one
that matches (the same log, grown, or just the same log again). A log that matches none
(rotated, or another server's) is read from its start. Only whole lines are read: a last line
without its newline is left for the next import, when it is complete.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import clock
from ..models import imported_files_t

CHUNK = 1 << 20


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
