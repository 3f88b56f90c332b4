"""session_usage (columns, order, filters in SQL), pool_usage, sessions_by_id."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from licusage import catalog, queries, sessions
from licusage.errors import InvalidInput, UnknownLicenseType, UnknownProduct

CM, RO, AA = "Case Management", "Reports Only", "RD Agent Assist"
NAMED, CONC = "Named User", "Concurrent User"


@pytest.fixture
def store(engine, frozen):
    """Five active sessions and one ended one, each idle for a different time.

    id order = login order; last activity: carol oldest (3 h ago), then ...
    """
    catalog.add_pool(engine, CM, NAMED, 5)
    catalog.add_pool(engine, CM, CONC, 5)
    catalog.add_pool(engine, RO, CONC, 5)
    catalog.add_pool(engine, AA, CONC, 5)
    catalog.assign_named(engine, CM, "Alice")
    start = frozen.now
    ids = {}

    def login(name, licenses, minutes_ago, host=None):
        result = sessions.login(
            engine, name, licenses, host=host, at=start - timedelta(minutes=minutes_ago)
        )
        assert result.ok, result
        ids[name] = result.session_id

    login("Alice", {CM: NAMED, RO: CONC}, 60, host="ws-1")
    login("bob", {CM: CONC}, 30)
    login("carol", {CM: CONC, AA: CONC}, 180, host="vdi-7")
    login("dave_100%", {RO: CONC}, 10)
    login("O'Brien\\x", {AA: CONC}, 5)
    login("erin", {CM: CONC}, 500)
    sessions.end(engine, ids["erin"])
    return engine, ids


def test_columns_and_dtypes(store):
    engine, _ = store
    frame = queries.session_usage(engine)
    assert list(frame.columns) == [*queries.BASE_COLUMNS, CM, RO, AA]
    dtypes = {c: str(t) for c, t in frame.dtypes.items()}
    assert dtypes["session_id"] == "int64"
    assert dtypes["user"] == dtypes["host"] == "string"
    assert dtypes["started_at"] == dtypes["last_activity"] == "datetime64[us, UTC]"
    assert dtypes["idle"].startswith("timedelta64")
    assert all(dtypes[p] == "string" for p in (CM, RO, AA))


def test_active_sessions_oldest_activity_first_with_types_held(store, frozen):
    engine, ids = store
    frame = queries.session_usage(engine)
    assert list(frame["user"]) == ["carol", "Alice", "bob", "dave_100%", "O'Brien\\x"]
    alice = frame.set_index("user").loc["Alice"]
    assert (alice[CM], alice[RO], alice["host"]) == (NAMED, CONC, "ws-1")
    assert pd.isna(alice[AA])
    assert alice["idle"] == pd.Timedelta(minutes=60)
    assert alice["last_activity"] == pd.Timestamp(frozen.now) - pd.Timedelta(minutes=60)
    assert ids["erin"] not in set(frame["session_id"])


def test_ties_in_last_activity_are_ordered_by_id(engine, frozen):
    catalog.add_pool(engine, CM, CONC, 5)
    first = sessions.login(engine, "zed", {CM: CONC}).session_id
    second = sessions.login(engine, "amy", {CM: CONC}).session_id
    assert list(queries.session_usage(engine)["session_id"]) == [first, second]


USER_CASES = [
    ("ALICE", {"Alice"}),
    ("  bo ", {"bob"}),
    ("o", {"bob", "carol", "O'Brien\\x"}),
    ("%", {"dave_100%"}),
    ("_", {"dave_100%"}),
    ("e_1", {"dave_100%"}),
    ("a%", set()),  # % is literal, not "a then anything"
    ("c_rol", set()),  # _ is literal, not "any one character"
    ("\\", {"O'Brien\\x"}),
    ("'b", {"O'Brien\\x"}),
    ("", {"Alice", "bob", "carol", "dave_100%", "O'Brien\\x"}),
    ("zzz", set()),
]


def test_user_filter_is_a_literal_case_insensitive_substring(store):
    engine, _ = store
    for needle, expected in USER_CASES:
        found = set(queries.session_usage(engine, user=needle)["user"])
        assert found == expected, needle


def test_license_filter_types_of_one_product_match_either(store):
    engine, _ = store
    frame = queries.session_usage(engine, license_types={CM: [CONC]})
    assert set(frame["user"]) == {"bob", "carol"}
    frame = queries.session_usage(engine, license_types={CM: [CONC, NAMED]})
    assert set(frame["user"]) == {"Alice", "bob", "carol"}


def test_license_filter_of_several_products_must_all_match(store):
    engine, _ = store
    frame = queries.session_usage(engine, license_types={CM: [CONC], AA: [CONC]})
    assert list(frame["user"]) == ["carol"]
    frame = queries.session_usage(engine, license_types={CM: [NAMED], RO: {CONC}})
    assert list(frame["user"]) == ["Alice"]


def test_license_filter_empty_or_none_means_any(store):
    engine, _ = store
    everyone = set(queries.session_usage(engine)["user"])
    assert set(queries.session_usage(engine, license_types={CM: []})["user"]) == everyone
    assert set(queries.session_usage(engine, license_types={CM: None})["user"]) == everyone
    assert set(queries.session_usage(engine, license_types={})["user"]) == everyone


def test_idle_over_keeps_sessions_idle_at_least_that_long(store):
    engine, _ = store
    frame = queries.session_usage(engine, idle_over=timedelta(minutes=60))
    assert list(frame["user"]) == ["carol", "Alice"]
    assert queries.session_usage(engine, idle_over=timedelta(days=3650 * 100)).empty


def test_filters_combine(store):
    engine, _ = store
    frame = queries.session_usage(
        engine, user="a", license_types={CM: [CONC, NAMED]}, idle_over=timedelta(minutes=90)
    )
    assert list(frame["user"]) == ["carol"]


BAD_FILTERS = [
    ({"license_types": {"Nope": [CONC]}}, UnknownProduct),
    ({"license_types": {CM: ["Platinum"]}}, UnknownLicenseType),
    ({"license_types": {RO: [NAMED]}}, UnknownLicenseType),  # RO has no Named pool
    ({"license_types": [CM]}, InvalidInput),
    ({"idle_over": timedelta(minutes=-1)}, InvalidInput),
    ({"idle_over": 3600}, InvalidInput),
    ({"user": 42}, InvalidInput),
]


def test_bad_filters_raise(store):
    engine, _ = store
    for kwargs, error in BAD_FILTERS:
        with pytest.raises(error):
            queries.session_usage(engine, **kwargs)


def test_empty_result_keeps_columns_and_dtypes(store):
    engine, _ = store
    frame = queries.session_usage(engine, user="nobody at all")
    assert frame.empty
    assert list(frame.columns) == [*queries.BASE_COLUMNS, CM, RO, AA]
    assert str(frame["last_activity"].dtype) == "datetime64[us, UTC]"


def test_filtering_happens_in_sql(store):
    engine, _ = store
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        frame = queries.session_usage(
            engine, user="Car", license_types={CM: [CONC]}, idle_over=timedelta(minutes=1)
        )
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    usage = [(s, p) for s, p in statements if "session_licenses" in s and "user_key" in s]
    assert len(usage) == 1
    sql, params = usage[0]
    where = sql.upper().split("WHERE", 1)[1]
    assert "LIKE" in where
    assert "ENDED_AT IS NULL" in where
    assert "LAST_ACTIVITY <=" in where
    assert "LICENSE_TYPE_ID IN" in where or "LICENSE_TYPE_ID =" in where
    flat = list(params.values()) if isinstance(params, dict) else list(params)
    assert any(isinstance(v, str) and "car" in v for v in flat)  # the casefolded needle is bound
    assert list(frame["user"]) == ["carol"]


def test_pool_usage_counts_distinct_users_and_todays_denials(engine, frozen):
    catalog.add_pool(engine, CM, CONC, 2)
    catalog.add_pool(engine, CM, NAMED, 3)
    sessions.login(engine, "alice", {CM: CONC})
    sessions.login(engine, "alice", {CM: CONC})  # same seat
    sessions.login(engine, "bob", {CM: CONC})
    sessions.login(engine, "carol", {CM: CONC})  # denied today
    sessions.login(engine, "dave", {CM: NAMED}, at=frozen.now - timedelta(days=1))  # yesterday
    frame = queries.pool_usage(engine)
    assert list(frame.columns) == [
        "product",
        "license_type",
        "kind",
        "seats",
        "in_use",
        "free",
        "denials_today",
        "expires_at",
        "counting",
        "reserved",
        "next_seats",
        "next_seats_at",
    ]
    assert frame[["next_seats", "next_seats_at"]].isna().all(axis=None)  # nothing foreseen
    rows = frame.set_index("license_type")
    assert rows.loc[CONC, ["seats", "in_use", "free", "denials_today"]].tolist() == [2, 2, 0, 1]
    assert rows.loc[NAMED, ["seats", "in_use", "free", "denials_today"]].tolist() == [3, 0, 3, 0]


def test_pool_usage_free_never_negative_after_seats_shrink(engine):
    catalog.add_pool(engine, CM, CONC, 2)
    sessions.login(engine, "alice", {CM: CONC})
    sessions.login(engine, "bob", {CM: CONC})
    catalog.add_pool(engine, CM, CONC, 1)
    row = queries.pool_usage(engine).iloc[0]
    assert (row["seats"], row["in_use"], row["free"]) == (1, 2, 0)


def test_sessions_by_id_reports_active_and_ended(store):
    engine, ids = store
    frame = queries.sessions_by_id(engine, [ids["erin"], ids["bob"], 9999])
    assert list(frame["session_id"]) == sorted([ids["erin"], ids["bob"]])
    by_user = frame.set_index("user")
    assert pd.isna(by_user.loc["bob", "ended_at"])
    assert by_user.loc["erin", "end_reason"] == "user_logout"
    with pytest.raises(InvalidInput):
        queries.sessions_by_id(engine, ["1"])


def test_session_licenses_lists_what_a_logout_frees(store):
    engine, ids = store
    frame = queries.session_licenses(engine, [ids["Alice"], ids["erin"]])
    assert sorted(map(tuple, frame[["product", "license_type"]].to_numpy().tolist())) == [
        (CM, NAMED),
        (RO, CONC),
    ]


def test_the_query_reads_only_through_bound_parameters(store):
    engine, _ = store
    hostile = "x'; DROP TABLE sessions; --"
    assert queries.session_usage(engine, user=hostile).empty
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM sessions")).scalar_one() == 6


def test_the_api_doc_example_runs(tmp_path, monkeypatch):
    """docs/api.md's example, run as written (in a temporary directory)."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code.group(1), "docs/api.md", "exec"), namespace)
    assert namespace["result"].logged_out == (namespace["a"].session_id,)
    assert namespace["result"].unknown == (999,)
    namespace["engine"].dispose()


def test_every_session_query_takes_the_filter_once(store):
    """The filter's keyword arguments are declared once (queries.FilterFields): each session
    query takes them, or a SessionFilter, never both; an unknown keyword is a TypeError."""
    engine, _ = store
    where = queries.SessionFilter(user="ALI", host=None)
    expected = list(queries.session_usage(engine, where)["session_id"])
    assert expected  # Alice
    assert expected == list(queries.session_usage(engine, user="ALI")["session_id"])
    assert queries.session_usage_ids(engine, user="ALI") == expected
    assert list(queries.session_usage_page(engine, user="ALI", limit=10)["session_id"]) == expected
    assert list(queries.session_usage_after(engine, user="ALI")["session_id"]) == expected
    assert [
        i for part in queries.iter_session_usage(engine, user="ALI") for i in part["session_id"]
    ] == expected
    assert queries.session_usage_counts(engine, where)[0] == len(expected)
    with pytest.raises(InvalidInput, match="not both"):
        queries.session_usage(engine, where, user="x")
    with pytest.raises(TypeError, match="usr"):
        queries.session_usage(engine, usr="x")
    with pytest.raises(TypeError, match="usr"):
        queries.session_usage_counts(engine, where, usr=None)
