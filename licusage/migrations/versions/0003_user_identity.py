"""User identity: one person, one identity, however the application spelled the name.

Earlier stores compared user names as raw strings: ``alice``, ``Alice``, ``alice `` and
``al\\u200bice`` took four seats of a per-user pool. From this revision seats, named seats and
the user filter use the *identity* of a name (Unicode NFC, surrounding space trimmed, control
and invisible characters left out, case-folded; see :mod:`licusage.validation`), while
``sessions.user_name`` keeps the spelling for display. This migration rewrites existing rows:

* ``sessions.user_key``: the identity of ``user_name`` (was the case-folded spelling);
* ``session_licenses.user_name`` and ``denials.user_name``: the identity (what seats count);
* ``named_assignments``: one row per pool and identity (spellings merged, the earliest
  ``assigned_at`` kept).

No session, hold, denial or audit event is removed; no table or column changes. The rule is
copied here (not imported) so that this revision means the same thing in every later release.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import unicodedata
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_DROPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
WIDTH = 200


def identity(name: str) -> str:
    """The identity of a stored name, as revision 0003 defines it."""
    normal = unicodedata.normalize("NFC", name)
    kept = "".join(c for c in normal if unicodedata.category(c) not in _DROPPED).strip()
    if not kept:  # a name of invisible characters only: keep it apart from every other
        kept = normal
    folded = unicodedata.normalize("NFC", kept.casefold())
    return "".join(" " if unicodedata.category(c) == "Zs" else c for c in folded)[:WIDTH]


def _rewrite(conn: sa.Connection, table: str, column: str, source: str) -> None:
    """Set `column` of `table` to the identity of `source`, one UPDATE per distinct name."""
    t = sa.table(table, sa.column(column), sa.column(source))
    names = conn.execute(sa.select(t.c[source]).distinct()).scalars().all()
    for name in names:
        key = identity(name)
        conn.execute(
            sa.update(t).where(t.c[source] == name, t.c[column] != key).values({column: key})
        )


def upgrade() -> None:
    conn = op.get_bind()
    _rewrite(conn, "sessions", "user_key", "user_name")
    _rewrite(conn, "session_licenses", "user_name", "user_name")
    _rewrite(conn, "denials", "user_name", "user_name")
    a = sa.table(
        "named_assignments", sa.column("pool_id"), sa.column("user_name"), sa.column("assigned_at")
    )
    merged: dict[tuple[int, str], datetime] = {}
    rows = conn.execute(sa.select(a.c.pool_id, a.c.user_name, a.c.assigned_at)).all()
    for pool_id, name, assigned_at in rows:
        key = (pool_id, identity(name))
        if key not in merged or assigned_at < merged[key]:
            merged[key] = assigned_at
    if any(identity(name) != name for _, name, _ in rows):
        conn.execute(sa.delete(a))
        if merged:
            conn.execute(
                sa.insert(a),
                [
                    {"pool_id": p, "user_name": u, "assigned_at": at}
                    for (p, u), at in sorted(merged.items(), key=lambda item: item[0])
                ],
            )


def downgrade() -> None:
    # identities cannot be turned back into the spellings they merged; the rows stay valid
    pass
