"""Hostile input: odd text, unknown names, absurd durations and wrongly typed ids.

Each call gives its documented error (an :class:`~licusage.errors.InvalidInput` subclass) or an
empty result, and leaves every table exactly as it was (compared by a checksum of all rows).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from licusage import actions, catalog, clock, db, queries, sessions
from licusage.errors import InvalidInput, UnknownLicenseType, UnknownProduct
from licusage.models import Base
from licusage.validation import lenient_identity
from tests.helpers import fresh_pg_database, require

CM, RO = "Case Management", "Reports Only"
NAMED_USER, CONCURRENT_USER = catalog.NAMED_USER, catalog.CONCURRENT_USER

HOSTILE_TEXT = [
    "o'brien",
    'say "hi"',
    "'; DROP TABLE sessions; --",
    "%",
    "_",
    "%_%",
    "a%b_c",
    "back\\slash",
    "\\%",
    "\\_",
    "nul\x00byte",
    "\x00",
    "x" * 100_000,
    "🦄👩‍💻",
    "مرحبا بالعالم",
    "\u202eevil\u202c",
    "עברית",
    "   ",
    "\t\n",
]
WRONG_IDS = ["1", 1.0, 1.5, None, True, False, [1], [[1, 2]], {"id": 1}, b"1", float("nan")]
WRONG_ID_COLLECTIONS = [None, "123", b"12", 5, 2.5, True, {"a": object()}]


def store_columns(engine: Engine) -> dict[str, list[str]]:
    """table -> column names of every licusage table the database has now."""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        present = set(inspector.get_table_names())
        return {
            table.name: [column["name"] for column in inspector.get_columns(table.name)]
            for table in Base.metadata.sorted_tables
            if table.name in present
        }


def store_checksum(engine: Engine, columns: dict[str, list[str]] | None = None) -> str:
    """A digest of every row of every table (rows sorted, so a table re-keyed by a migration
    digests the same). `columns` (table -> column names, see :func:`store_columns`) limits it
    to those: an upgrade adds columns, and must keep every value of the ones it had."""
    digest = hashlib.sha256()
    columns = store_columns(engine) if columns is None else columns
    with engine.connect() as conn:
        for table, names in columns.items():
            selected = sa.select(*(sa.column(name) for name in names)).select_from(sa.table(table))
            rows = sorted(repr(tuple(row)) for row in conn.execute(selected))
            if rows:  # an empty table digests as one a store of an earlier revision lacks
                digest.update(table.encode())
            for row in rows:
                digest.update(row.encode())
    return digest.hexdigest()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def populated(request, tmp_path_factory) -> Iterator[Engine]:
    """One store per backend for the module (every test leaves it unchanged, and checks so):
    pools, a named user, active and ended sessions, denials and audit events."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'store.sqlite'}"
        else:
            url = stack.enter_context(fresh_pg_database())
        engine = db.connect(url)
        stack.callback(engine.dispose)
        times = iter(
            datetime(2026, 3, 2, 10, 0, tzinfo=UTC) + timedelta(minutes=7 * i) for i in range(100)
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(clock, "now", lambda: next(times))
            catalog.add_pool(engine, CM, CONCURRENT_USER, 10)
            catalog.add_pool(engine, CM, NAMED_USER, 2)
            catalog.add_pool(engine, RO, CONCURRENT_USER, 1, idle_limit=3600)
            catalog.assign_named(engine, CM, "alice")
            for user in ("alice", "bob", "carol", "dave", "o'brien", "50%_off", "back\\slash"):
                sessions.login(engine, user, {CM: CONCURRENT_USER, RO: CONCURRENT_USER}, host="pc1")
            sessions.login(engine, "alice", {CM: NAMED_USER})
            first = int(queries.session_usage(engine)["session_id"].min())
            actions.logout_sessions(engine, [first], actor="admin")
        yield engine


def _unchanged(engine: Engine, before: str) -> None:
    assert store_checksum(engine) == before


def test_checksum_sees_a_change(engine):
    catalog.add_pool(engine, CM, CONCURRENT_USER, 1)
    session_id = sessions.login(engine, "alice", {CM: CONCURRENT_USER}).session_id
    before = store_checksum(engine)
    assert sessions.touch(engine, session_id, at=clock.now() + timedelta(seconds=1))
    assert store_checksum(engine) != before


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=range(len(HOSTILE_TEXT)))
def test_user_filter_is_literal(populated, text):
    before = store_checksum(populated)
    frame = queries.session_usage(populated, user=text)
    needle = lenient_identity(text)  # the filter compares identities (licusage.validation)
    expected = (
        set(queries.session_usage(populated)["user"])
        if not needle
        else {u for u in queries.session_usage(populated)["user"] if needle in lenient_identity(u)}
    )
    assert set(frame["user"]) == expected
    _unchanged(populated, before)


@pytest.mark.parametrize(
    ("text", "users"),
    [("%", {"50%_off"}), ("_", {"50%_off"}), ("\\", {"back\\slash"}), ("'", {"o'brien"})],
)
def test_wildcards_match_only_themselves(populated, text, users):
    assert set(queries.session_usage(populated, user=text)["user"]) == users


@pytest.mark.parametrize("value", [1, 2.5, b"alice", ["alice"], {"u": 1}, True])
def test_user_filter_of_wrong_type(populated, value):
    before = store_checksum(populated)
    with pytest.raises(InvalidInput):
        queries.session_usage(populated, user=value)
    _unchanged(populated, before)


@pytest.mark.parametrize(
    ("types", "error"),
    [
        ({"No Such Product": [NAMED_USER]}, UnknownProduct),
        ({"case management": [NAMED_USER]}, UnknownProduct),
        ({CM: ["Floating"]}, UnknownLicenseType),
        ({CM: ["named user"]}, UnknownLicenseType),
        ({"'; DROP TABLE sessions; --": [NAMED_USER]}, UnknownProduct),
        ({CM: ["%"]}, UnknownLicenseType),
        ({CM: [None]}, UnknownLicenseType),
        ({None: [NAMED_USER]}, UnknownProduct),
        ({CM: 5}, InvalidInput),
        ([CM], InvalidInput),
        ("Case Management", InvalidInput),
    ],
)
def test_unknown_products_and_types(populated, types, error):
    before = store_checksum(populated)
    with pytest.raises(error):
        queries.session_usage(populated, license_types=types)
    _unchanged(populated, before)


@pytest.mark.parametrize(
    "value",
    [
        timedelta(seconds=-1),
        timedelta.min,
        pd.Timedelta("NaT"),
        pd.Timedelta(-5, "s"),
        5,
        -3.5,
        "2h",
        [timedelta(hours=1)],
    ],
)
def test_bad_idle_durations(populated, value):
    before = store_checksum(populated)
    with pytest.raises(InvalidInput):
        queries.session_usage(populated, idle_over=value)
    with pytest.raises(InvalidInput):
        actions.reap_idle(populated, value)
    _unchanged(populated, before)


@pytest.mark.parametrize("value", [timedelta.max, pd.Timedelta.max, timedelta(days=36_500)])
def test_absurdly_long_idle_durations_match_nothing(populated, value):
    before = store_checksum(populated)
    assert queries.session_usage(populated, idle_over=value).empty
    result = actions.reap_idle(populated, value)
    assert result.logged_out == ()
    assert actions.reap_idle(populated, value, dry_run=True).logged_out == ()
    _unchanged(populated, before)


@pytest.mark.parametrize(
    "value", WRONG_IDS, ids=[f"{type(v).__name__}-{i}" for i, v in enumerate(WRONG_IDS)]
)
def test_session_ids_of_the_wrong_type(populated, value):
    before = store_checksum(populated)
    with pytest.raises(InvalidInput):
        actions.logout_sessions(populated, [value], actor="admin")
    real = [int(i) for i in queries.session_usage(populated)["session_id"]]
    with pytest.raises(InvalidInput):  # one bad id spoils the whole request: nothing ends
        actions.logout_sessions(populated, [*real, value], actor="admin")
    with pytest.raises(InvalidInput):
        sessions.end(populated, value)
    with pytest.raises(InvalidInput):
        sessions.touch(populated, value)
    _unchanged(populated, before)


@pytest.mark.parametrize(
    "value",
    WRONG_ID_COLLECTIONS,
    ids=[f"{type(v).__name__}-{i}" for i, v in enumerate(WRONG_ID_COLLECTIONS)],
)
def test_session_id_collections_of_the_wrong_type(populated, value):
    before = store_checksum(populated)
    with pytest.raises(InvalidInput):
        actions.logout_sessions(populated, value, actor="admin")
    _unchanged(populated, before)


@pytest.mark.parametrize("value", [-(2**31), -1, 0, 10**6, 2**31 - 1])
def test_session_ids_not_in_the_store_are_unknown(populated, value):
    before = store_checksum(populated)
    result = actions.logout_sessions(populated, [value], actor="admin")
    assert result.unknown == (value,)
    assert result.logged_out == ()
    assert not sessions.touch(populated, value)
    _unchanged(populated, before)


@pytest.mark.parametrize("value", [2**31, 2**63 - 1, 2**63, -(2**31) - 1, -(2**63) - 1, 10**30])
def test_session_ids_out_of_range_are_refused(populated, value):
    before = store_checksum(populated)
    with pytest.raises(InvalidInput):
        actions.logout_sessions(populated, [value], actor="admin")
    with pytest.raises(InvalidInput):
        sessions.touch(populated, value)
    with pytest.raises(InvalidInput):
        sessions.end(populated, value)
    _unchanged(populated, before)


@pytest.mark.parametrize("actor", ["", "   ", None, 5, "a\x00b", ["admin"]], ids=range(6))
def test_bad_actors(populated, actor):
    before = store_checksum(populated)
    ids = [int(i) for i in queries.session_usage(populated)["session_id"]]
    with pytest.raises(InvalidInput):
        actions.logout_sessions(populated, ids, actor=actor)
    with pytest.raises(InvalidInput):
        actions.reap_idle(populated, timedelta(0), actor=actor)
    _unchanged(populated, before)


@pytest.mark.parametrize(
    ("licenses", "error"),
    [
        ({"No Such Product": CONCURRENT_USER}, UnknownProduct),
        ({CM: "Floating"}, UnknownLicenseType),
        ({CM: CONCURRENT_USER, "nope": NAMED_USER}, UnknownProduct),
        ({CM: None}, UnknownLicenseType),
        ([CM], InvalidInput),
        ("Case Management", InvalidInput),
        (None, InvalidInput),
    ],
)
def test_login_with_unknown_products_changes_nothing(populated, licenses, error):
    before = store_checksum(populated)
    with pytest.raises(error):
        sessions.login(populated, "eve", licenses)
    _unchanged(populated, before)


@pytest.mark.parametrize(
    "user", ["", "   ", "a\x00b", None, 7, ["eve"], "x" * 100_000], ids=lambda u: repr(u)[:20]
)
def test_login_with_bad_user_changes_nothing(populated, user):
    before = store_checksum(populated)
    with pytest.raises(InvalidInput):
        sessions.login(populated, user, {CM: CONCURRENT_USER})
    _unchanged(populated, before)


@pytest.mark.parametrize(
    "user",
    ["o'hara", "100%", "a_b", "c:\\users\\x", "🦄", "مرحبا", "'; DROP TABLE x; --"],
)
def test_odd_user_names_are_stored_and_found_literally(engine, user):
    catalog.add_pool(engine, CM, CONCURRENT_USER, 5)
    sessions.login(engine, "bystander", {CM: CONCURRENT_USER})
    result = sessions.login(engine, user, {CM: CONCURRENT_USER})
    assert result.ok
    frame = queries.session_usage(engine, user=user)
    assert list(frame["user"]) == [user]
    assert list(frame["session_id"]) == [result.session_id]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=st.text(max_size=300))
def test_any_user_filter_is_a_literal_substring(populated, text):
    before = store_checksum(populated)
    everyone = queries.session_usage(populated)
    frame = queries.session_usage(populated, user=text)
    needle = lenient_identity(text)
    if not needle:
        assert len(frame) == len(everyone)
    else:
        assert set(frame["user"]) == {u for u in everyone["user"] if needle in lenient_identity(u)}
    _unchanged(populated, before)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ids=st.lists(
        st.one_of(
            st.text(max_size=5),
            st.floats(),
            st.none(),
            st.booleans(),
            st.lists(st.integers(), max_size=2),
        ),
        min_size=1,
        max_size=5,
    ),
    extra=st.lists(st.integers(min_value=-5, max_value=50), max_size=5),
)
def test_any_wrongly_typed_id_changes_nothing(populated, ids, extra):
    before = store_checksum(populated)
    with pytest.raises(InvalidInput):
        actions.logout_sessions(populated, [*extra, *ids], actor="admin")
    _unchanged(populated, before)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    product=st.text(max_size=50).filter(lambda p: p not in (CM, RO)),
    license_type=st.text(max_size=50),
)
def test_any_unknown_product_is_refused(populated, product, license_type):
    before = store_checksum(populated)
    with pytest.raises(InvalidInput):
        queries.session_usage(populated, license_types={product: [license_type]})
    with pytest.raises(InvalidInput):
        sessions.login(populated, "eve", {product: license_type})
    _unchanged(populated, before)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seconds=st.integers(min_value=-(10**12), max_value=-1))
def test_any_negative_duration_is_refused(populated, seconds):
    before = store_checksum(populated)
    with pytest.raises(InvalidInput):
        queries.session_usage(populated, idle_over=timedelta(seconds=seconds))
    with pytest.raises(InvalidInput):
        actions.reap_idle(populated, timedelta(seconds=seconds))
    _unchanged(populated, before)


def _cli_commands() -> dict[str, object]:
    from licusage.cli import main

    return dict(getattr(main, "commands", {}))


@pytest.mark.parametrize("text", ["%", "o'brien", "nul\x00byte", "x" * 100_000, "🦄", "مرحبا"])
def test_cli_sessions_user_filter(populated, text):
    commands = _cli_commands()
    require("sessions" in commands, "the CLI has no `sessions` command yet")
    from licusage.cli import main

    url = populated.url.render_as_string(hide_password=False)
    before = store_checksum(populated)
    result = CliRunner().invoke(main, ["sessions", "--db", url, "--user", text])
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert len(result.stderr.strip().splitlines()) == 1
    _unchanged(populated, before)


@pytest.mark.parametrize(
    "ids", [["abc"], ["1.5"], ["--", "'; DROP TABLE sessions; --"], ["99999999999999999999999"]]
)
def test_cli_logout_bad_ids(populated, ids):
    commands = _cli_commands()
    require("logout" in commands, "the CLI has no `logout` command yet")
    from licusage.cli import main

    url = populated.url.render_as_string(hide_password=False)
    before = store_checksum(populated)
    result = CliRunner().invoke(main, ["logout", "--db", url, "--actor", "admin", "--yes", *ids])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    _unchanged(populated, before)


@pytest.mark.parametrize("value", ["-5m", "0", "abc", "99999999999d", "1h-5m", "nan"])
def test_cli_reap_bad_durations(populated, value):
    commands = _cli_commands()
    require("reap" in commands, "the CLI has no `reap` command yet")
    from licusage.cli import main

    url = populated.url.render_as_string(hide_password=False)
    before = store_checksum(populated)
    result = CliRunner().invoke(main, ["reap", "--db", url, "--idle-over", value])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    _unchanged(populated, before)


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=range(len(HOSTILE_TEXT)))
def test_audit_actor_filter_is_exact_and_harmless(populated, text):
    before = store_checksum(populated)
    frame = queries.audit_log(populated, actor=text)
    assert frame.empty or set(frame["actor"]) == {text}
    assert queries.audit_log(populated, actor="admin")["actor"].tolist() == ["admin"]
    _unchanged(populated, before)


@pytest.mark.parametrize("value", ["2026-03-01", 5, [datetime(2026, 3, 1)], date(2026, 3, 1)])
def test_audit_dates_of_the_wrong_type(populated, value):
    before = store_checksum(populated)
    with pytest.raises(InvalidInput):
        queries.audit_log(populated, start=value)
    with pytest.raises(InvalidInput):
        queries.audit_log(populated, end=value)
    _unchanged(populated, before)
