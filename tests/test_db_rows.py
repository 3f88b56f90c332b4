"""db.insert_rows / db.update_rows, the bulk writes of an import: what they store is what
``conn.execute(insert, dicts)`` stores, value for value, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa

from licusage import db
from licusage.models import servers_t

# text that COPY's and SQL's quoting must carry through unchanged
AWKWARD = ["plain", "tab\there", "new\nline", "back\\slash", "\\N", "quote ' \" ;", "ünï ✓", ""]
COLUMNS = ("name", "kind", "remove_command", "created_at")


def _rows(prefix: str) -> list[tuple[object, ...]]:
    return [
        (
            f"{prefix}{n}",
            "flexlm",
            None if n % 3 == 0 else text,
            datetime(2026, 3, 29, 1, 59, 59, 999_999 if n % 2 else 0),
        )
        for n, text in enumerate(AWKWARD)
    ]


def _stored(conn: sa.Connection, prefix: str) -> list[tuple[object, ...]]:
    """The rows named `prefix`..., their values as the driver returns them (text on SQLite)."""
    return [
        tuple(row)
        for row in conn.execute(
            sa.text(
                "SELECT name, kind, remove_command, created_at FROM license_servers "
                "WHERE name LIKE :names ORDER BY id"
            ),
            {"names": f"{prefix}%"},
        )
    ]


def test_insert_rows_stores_what_an_insert_of_dicts_stores(engine):
    with db.write(engine) as conn:
        conn.execute(sa.insert(servers_t), [dict(zip(COLUMNS, r, strict=True)) for r in _rows("a")])
        db.insert_rows(conn, servers_t, COLUMNS, _rows("b"))
        db.insert_rows(conn, servers_t, COLUMNS, [])  # nothing: no statement
    with engine.connect() as conn:
        by_dicts, by_rows = _stored(conn, "a"), _stored(conn, "b")
    assert len(by_rows) == len(AWKWARD)
    assert [r[1:] for r in by_rows] == [r[1:] for r in by_dicts]
    assert [r[2] for r in by_rows] == [None if n % 3 == 0 else t for n, t in enumerate(AWKWARD)]


def test_update_rows_sets_each_row_by_its_key(engine):
    with db.write(engine) as conn:
        db.insert_rows(conn, servers_t, COLUMNS, _rows("c"))
        ids = [row.id for row in conn.execute(sa.select(servers_t.c.id).order_by(servers_t.c.id))]
        later = datetime(2026, 10, 25, 2, 30, 0, 5)
        db.update_rows(
            conn,
            servers_t,
            ["remove_command", "created_at"],
            [(f"cmd {i}\t\\", later, i) for i in ids[:2]],
        )
        db.update_rows(conn, servers_t, ["kind"], [])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(servers_t).order_by(servers_t.c.id)).all()
    assert [(r.remove_command, r.created_at) for r in rows[:2]] == [
        (f"cmd {i}\t\\", later) for i in ids[:2]
    ]
    assert [r.created_at for r in rows[2:]] == [row[3] for row in _rows("c")[2:]]


def test_a_failed_insert_raises_as_sqlalchemy_does_and_changes_nothing(engine):
    with pytest.raises(sa.exc.IntegrityError):  # the unique server name
        with db.write(engine) as conn:
            db.insert_rows(conn, servers_t, COLUMNS, _rows("d") + _rows("d"))
    with engine.connect() as conn:
        assert _stored(conn, "d") == []
