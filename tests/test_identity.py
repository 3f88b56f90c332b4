"""One person, one identity (issue 15, finding 4), on SQLite and PostgreSQL: seats, named seats,
sparing the actor's own sessions and the user filter all use the canonical identity; the
spelling is kept for display; control and invisible characters are refused; migration 0003
merges the spellings of an existing store without losing a session."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from licusage import actions, catalog, db, migrations, queries, sessions, validation
from licusage.errors import InvalidInput, PermissionDenied
from licusage.models import assignments_t, audit_t, denials_t, holds_t, sessions_t
from tests.test_hostile import store_checksum

CM, RO = "Case Management", "Reports Only"
CONC, NAMED = catalog.CONCURRENT_USER, catalog.NAMED_USER

SAME_PERSON = ["alice", "Alice", "ALICE", "alice ", " alice", "\u00a0alice"]
JOSE = ["Jos\u00e9", "Jose\u0301", "JOSÉ"]  # composed, decomposed (NFC makes them one), upper
REFUSED = [
    "alice\t",
    "alice\n",
    "ali\nce",
    "al\u200bice",  # zero-width space
    "\u202eecila",  # right-to-left override
    "alice\u2066",  # left-to-right isolate
    "\u00adalice",  # soft hyphen
    "\ufeffalice",  # byte-order mark
    "bob\x1b[31m",  # a terminal escape
    "carol\x00",
    "\u2028dave",  # line separator
]


@pytest.mark.parametrize("name", SAME_PERSON)
def test_spellings_of_one_person_have_one_identity(name):
    assert validation.user_identity(name) == "alice"


def test_composed_and_decomposed_accents_are_one_identity():
    assert {validation.user_identity(n) for n in JOSE} == {"jos\u00e9"}
    assert validation.check_user("Jose\u0301 ") == "Jos\u00e9"  # the spelling: NFC, trimmed


@pytest.mark.parametrize("name", REFUSED)
def test_control_and_invisible_characters_are_refused_with_a_clear_error(engine, name):
    catalog.add_pool(engine, CM, CONC, 5)
    before = store_checksum(engine)
    with pytest.raises(InvalidInput, match=r"contains U\+[0-9A-F]{4}"):
        sessions.login(engine, name, {CM: CONC})
    with pytest.raises(InvalidInput, match="actor"):
        actions.logout_sessions(engine, [1], actor=name)
    assert store_checksum(engine) == before


def test_a_per_user_pool_counts_identities_not_spellings(engine):
    catalog.add_pool(engine, CM, CONC, 2)
    ids = [sessions.login(engine, name, {CM: CONC}) for name in SAME_PERSON + JOSE]
    assert all(r.ok for r in ids), [r.denied for r in ids]  # 10 spellings, 2 people, 2 seats
    third = sessions.login(engine, "bob", {CM: CONC})
    assert third.denied == {CM: sessions.POOL_FULL}
    pools = queries.pool_usage(engine).set_index("product")
    assert pools.loc[CM, "in_use"] == 2
    # the spelling each application sent is what the tables show
    usage = queries.session_usage(engine)
    assert sorted(usage["user"]) == sorted(validation.check_user(n) for n in SAME_PERSON + JOSE)
    assert queries.session_usage_counts(engine) == (len(SAME_PERSON) + len(JOSE), 2)


def test_named_seats_belong_to_identities(engine):
    catalog.add_pool(engine, RO, NAMED, 1)
    assert catalog.assign_named(engine, RO, "Alice ")
    assert not catalog.assign_named(engine, RO, "ALICE")  # already named
    for name in SAME_PERSON:
        assert sessions.login(engine, name, {RO: NAMED}).ok, name
    assert sessions.login(engine, "bob", {RO: NAMED}).denied == {RO: sessions.NOT_NAMED}
    assert catalog.unassign_named(engine, RO, "alice")
    assert sessions.login(engine, "Alice", {RO: NAMED}).denied == {RO: sessions.NOT_NAMED}


def test_sparing_the_actors_own_sessions_uses_the_identity(engine):
    catalog.add_pool(engine, CM, CONC, 20)
    own = [sessions.login(engine, name, {CM: CONC}).session_id for name in SAME_PERSON]
    other = sessions.login(engine, "bob", {CM: CONC}).session_id
    result = actions.authorized_logout(engine, [*own, other], actor="ALICE", role=actions.ADMIN)
    assert set(result.spared) == set(own)
    assert result.logged_out == (other,)


def test_the_user_filter_finds_every_spelling(engine):
    catalog.add_pool(engine, CM, CONC, 20)
    for name in [*SAME_PERSON, "bob"]:
        sessions.login(engine, name, {CM: CONC})
    for needle in ["alice", "ALICE", " Alice ", "lic", "al\u200bice"]:
        found = queries.session_usage(engine, user=needle)
        assert len(found) == len(SAME_PERSON), needle


def test_refused_viewer_is_audited_with_the_checked_spelling(engine):
    catalog.add_pool(engine, CM, CONC, 20)
    target = sessions.login(engine, "bob", {CM: CONC}).session_id
    with pytest.raises(PermissionDenied):
        actions.authorized_logout(engine, [target], actor=" vic\u00e9 ", role=actions.VIEWER)
    with engine.connect() as conn:
        assert conn.execute(sa.select(audit_t.c.actor)).scalars().all() == ["vic\u00e9"]


# --- migration 0003 ---------------------------------------------------------------------------

OLD_SPELLINGS = [
    "alice",
    "Alice",
    "ALICE ",
    "al\u200bice",
    "Jose\u0301",
    "JOS\u00c9",
    "\u202eecila",
]


OLD_HOLDS = sa.table(
    "session_licenses",
    *(
        sa.column(name)
        for name in (
            "session_id",
            "product_id",
            "license_type_id",
            "pool_id",
            "user_name",
            "granted_at",
            "released_at",
        )
    ),
)


def _old_store(engine: Engine) -> dict[str, int]:
    """A store at revision 0002 filled the way the release before 0003 did: every spelling its
    own user (raw user names in the holds, casefolded spellings as user_key)."""
    migrations.upgrade(engine, "0002")
    with db.write(engine) as conn:
        conn.execute(sa.text("INSERT INTO products (id, name) VALUES (1, :n)"), {"n": CM})
        conn.execute(
            sa.text("INSERT INTO license_types (id, name, kind) VALUES (1, :c, 'concurrent')"),
            {"c": CONC},
        )
        conn.execute(
            sa.text("INSERT INTO license_types (id, name, kind) VALUES (2, :n, 'named')"),
            {"n": NAMED},
        )
        now = datetime(2026, 11, 1, 9, 0)
        for pool_id, type_id in ((1, 1), (2, 2)):
            conn.execute(
                sa.text(
                    "INSERT INTO license_pools (id, product_id, license_type_id, seats, created_at)"
                    " VALUES (:i, 1, :t, 50, :at)"
                ),
                {"i": pool_id, "t": type_id, "at": now - timedelta(days=30)},
            )
        for i, name in enumerate(OLD_SPELLINGS, start=1):
            ended = now + timedelta(hours=1) if i % 2 else None
            conn.execute(
                sa.insert(sessions_t).values(
                    id=i,
                    user_name=name,
                    user_key=name.casefold(),
                    host="ws",
                    started_at=now,
                    last_activity=now,
                    ended_at=ended,
                    end_reason="user_logout" if ended else None,
                    ended_by=name if ended else None,
                )
            )
            conn.execute(
                sa.insert(OLD_HOLDS).values(  # the table as revision 0002 had it
                    session_id=i,
                    product_id=1,
                    license_type_id=1,
                    pool_id=1,
                    user_name=name,
                    granted_at=now,
                    released_at=ended,
                )
            )
            conn.execute(
                sa.insert(denials_t).values(
                    at=now,
                    user_name=name,
                    host="ws",
                    product_id=1,
                    license_type_id=1,
                    pool_id=1,
                    reason="pool_full",
                )
            )
            conn.execute(
                sa.insert(assignments_t).values(
                    pool_id=2, user_name=name, assigned_at=now - timedelta(days=i)
                )
            )
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('sessions', 'id'), (SELECT max(id) FROM sessions))"
            )
    return {name: i for i, name in enumerate(OLD_SPELLINGS, start=1)}


@pytest.fixture
def bare(store_url):
    engine = db.create_engine(store_url)
    yield engine
    engine.dispose()


def test_upgrade_from_0002_merges_spellings_without_losing_a_session(bare, store_url):
    ids = _old_store(bare)
    with bare.connect() as conn:
        before = {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (sessions_t, holds_t, denials_t, audit_t)
        }
        spellings = dict(conn.execute(sa.select(sessions_t.c.id, sessions_t.c.user_name)).all())
    with pytest.raises(Exception, match="db upgrade"):
        db.connect(store_url)  # the store must be upgraded first
    assert db.upgrade(store_url) == ("0002", migrations.head())
    engine = db.connect(store_url)
    try:
        with engine.connect() as conn:
            after = {
                t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in (sessions_t, holds_t, denials_t, audit_t)
            }
            assert after == before  # nothing lost
            # the spellings are kept for display
            assert dict(conn.execute(sa.select(sessions_t.c.id, sessions_t.c.user_name)).all()) == (
                spellings
            )
            keys = dict(conn.execute(sa.select(sessions_t.c.id, sessions_t.c.user_key)).all())
            holders = dict(conn.execute(sa.select(holds_t.c.session_id, holds_t.c.user_name)).all())
            denied = set(conn.execute(sa.select(denials_t.c.user_name)).scalars())
            named = conn.execute(
                sa.select(assignments_t.c.user_name, assignments_t.c.assigned_at).order_by(
                    assignments_t.c.user_name
                )
            ).all()
        alice = [ids[n] for n in ("alice", "Alice", "ALICE ", "al\u200bice")]
        jose = [ids["Jose\u0301"], ids["JOS\u00c9"]]
        assert {keys[i] for i in alice} == {"alice"}
        assert {holders[i] for i in alice} == {"alice"}
        assert {keys[i] for i in jose} == {holders[i] for i in jose} == {"jos\u00e9"}
        assert keys[ids["\u202eecila"]] == "ecila"
        assert denied == {"alice", "jos\u00e9", "ecila"}
        # three identities named once each, the earliest assignment kept
        assert [n for n, _ in named] == ["alice", "ecila", "jos\u00e9"]
        assert dict(named)["alice"] == datetime(2026, 11, 1, 9, 0) - timedelta(days=4)
        # the merged store counts one seat per person and finds every spelling
        active_alice = [i for i in alice if i % 2 == 0]
        assert len(queries.session_usage(engine, user="ALICE")) == len(active_alice)
        assert sessions.login(engine, "Alice", {CM: NAMED}).ok
        # and every session can still be ended, exactly once
        for session_id in ids.values():
            sessions.end(engine, session_id)
        with engine.connect() as conn:
            assert (
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(holds_t)
                    .where(holds_t.c.released_at.is_(None))
                ).scalar_one()
                == 1  # the new login
            )
    finally:
        engine.dispose()
    assert db.upgrade(store_url) == (migrations.head(), migrations.head())  # idempotent
