"""session_usage_page (one page, cut and sorted by the database) and session_usage_counts."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from licusage import catalog, queries, sessions
from licusage.errors import InvalidInput, UnknownProduct

CM, RO = "Case Management", "Reports Only"
NAMED, CONC = "Named User", "Concurrent User"


@pytest.fixture
def store(engine, frozen):
    """Seven active sessions of five users (two users log in twice) and one ended session."""
    return fill(engine, frozen)


def fill(engine, frozen):
    """The sessions of the `store` fixture."""
    catalog.add_pool(engine, CM, NAMED, 5)
    catalog.add_pool(engine, CM, CONC, 9)
    catalog.add_pool(engine, RO, CONC, 9)
    catalog.assign_named(engine, CM, "alice")
    logins = [
        ("alice", {CM: NAMED, RO: CONC}, 60),
        ("bob", {CM: CONC}, 30),
        ("carol", {RO: CONC}, 180),
        ("bob", {RO: CONC}, 90),
        ("dave_100%", {}, 10),
        ("erin", {CM: CONC}, 240),
        ("carol", {CM: CONC}, 5),
    ]
    for name, licenses, minutes_ago in logins:
        result = sessions.login(
            engine, name, licenses, at=frozen.now - timedelta(minutes=minutes_ago)
        )
        assert result.ok, result
    gone = sessions.login(engine, "frank", {CM: CONC}, at=frozen.now - timedelta(minutes=20))
    sessions.end(engine, gone.session_id)
    return engine


FILTERS = [
    {},
    {"user": "B"},
    {"user": "%"},
    {"license_types": {CM: [CONC]}},
    {"license_types": {CM: [CONC], RO: [CONC]}},
    {"idle_over": timedelta(hours=1)},
    {"idle_over": timedelta(days=365_000_000)},
]


@pytest.mark.parametrize("filters", FILTERS)
def test_pages_are_slices_of_session_usage(store, filters):
    whole = queries.session_usage(store, **filters)
    for limit in (1, 2, 3, 25):
        pages = [
            queries.session_usage_page(store, **filters, offset=offset, limit=limit)
            for offset in range(0, max(len(whole), 1), limit)
        ]
        joined = pd.concat(pages, ignore_index=True)
        pd.testing.assert_frame_equal(
            joined.drop(columns="idle"), whole.drop(columns="idle"), check_dtype=True
        )


@pytest.mark.parametrize("filters", FILTERS)
def test_counts_match_session_usage(store, filters):
    whole = queries.session_usage(store, **filters)
    assert queries.session_usage_counts(store, **filters) == (len(whole), whole["user"].nunique())


def test_first_page_is_oldest_activity_first(store):
    page = queries.session_usage_page(store, offset=0, limit=2)
    assert list(page["user"]) == ["erin", "carol"]
    assert list(page.columns) == [*queries.BASE_COLUMNS, CM, RO]
    assert queries.session_usage_counts(store) == (7, 5)


def test_a_page_past_the_end_is_empty_with_the_columns(store):
    page = queries.session_usage_page(store, offset=100, limit=25)
    assert page.empty
    assert list(page.columns) == [*queries.BASE_COLUMNS, CM, RO]


@pytest.mark.parametrize(
    "bad", [{"offset": -1}, {"limit": -5}, {"offset": 1.5}, {"limit": "10"}, {"limit": True}]
)
def test_bad_paging_is_refused(store, bad):
    with pytest.raises(InvalidInput):
        queries.session_usage_page(store, **bad)


def test_filters_are_checked_as_in_session_usage(store):
    with pytest.raises(UnknownProduct):
        queries.session_usage_counts(store, license_types={"Nope": [CONC]})
    with pytest.raises(InvalidInput):
        queries.session_usage_counts(store, idle_over=timedelta(minutes=-1))
    with pytest.raises(InvalidInput):
        queries.session_usage_page(store, idle_over=timedelta(minutes=-1))


@pytest.mark.parametrize("filters", FILTERS)
def test_a_session_filter_gives_what_its_keyword_arguments_give(store, filters):
    where = queries.SessionFilter(**filters)
    pd.testing.assert_frame_equal(
        queries.session_usage(store, where), queries.session_usage(store, **filters)
    )
    assert queries.session_usage_counts(store, where) == queries.session_usage_counts(
        store, **filters
    )
    pd.testing.assert_frame_equal(
        queries.session_usage_page(store, where, offset=1, limit=2),
        queries.session_usage_page(store, **filters, offset=1, limit=2),
    )
    assert queries.SessionFilter(**where.kwargs()) == where
    assert hash(queries.SessionFilter(**filters)) == hash(where)


@pytest.mark.parametrize(
    "bad",
    [
        {"user": 5},
        {"license_types": ["Case Management"]},
        {"license_types": {CM: 5}},
        {"idle_over": timedelta(seconds=-1)},
        {"idle_over": "1h"},
    ],
)
def test_a_session_filter_refuses_bad_arguments_when_made(bad):
    with pytest.raises(InvalidInput):
        queries.SessionFilter(**bad)


def test_a_filter_and_keyword_filters_do_not_mix(store):
    with pytest.raises(InvalidInput):
        queries.session_usage(store, queries.SessionFilter(user="b"), user="c")
    with pytest.raises(InvalidInput):
        queries.session_usage_counts(store, {"user": "b"})  # type: ignore[arg-type]


def test_the_notebook_line_of_a_filter_reproduces_it(store):
    where = queries.SessionFilter(
        user="b", license_types={CM: [CONC]}, idle_over=timedelta(minutes=30)
    )
    code = where.code()
    assert code == (
        "queries.session_usage(engine, user='b', license_types={'Case Management': "
        "['Concurrent User']}, idle_over=pd.Timedelta('0 days 00:30:00'))"
    )
    again = eval(code, {"queries": queries, "engine": store, "pd": pd})
    pd.testing.assert_frame_equal(again, queries.session_usage(store, where))
    assert queries.SessionFilter(user="x" * 100).code(max_user=10).endswith("# 100 characters)")


SORTS = [
    [("user", True)],
    [("user", False)],
    [("session_id", False)],
    [("started_at", True)],
    [("idle", True)],
    [(CM, True)],
    [(RO, True), ("user", False)],
]


def _sorted_like_the_database(whole: pd.DataFrame, sort) -> pd.DataFrame:
    """session_usage's frame sorted in pandas as session_usage_page sorts it in SQL."""
    frame = whole.copy()
    frame["_user"] = frame["user"].str.casefold()
    keys, ascending = [], []
    for key, up in sort:
        column = {"user": "_user", "idle": "last_activity"}.get(key, key)
        keys.append(column)
        ascending.append(not up if key == "idle" else up)
    keys += ["last_activity", "session_id"]
    ascending += [True, True]
    # SQLite puts NULL first in ascending order (a session without that product)
    frame = frame.sort_values(keys, ascending=ascending, na_position="first", kind="stable")
    return frame.drop(columns="_user").reset_index(drop=True)


@pytest.mark.parametrize("sort", SORTS, ids=str)
@pytest.mark.parametrize("filters", FILTERS[:5])
def test_sorted_pages_are_slices_of_the_sorted_result(sqlite_store, filters, sort):
    whole = _sorted_like_the_database(queries.session_usage(sqlite_store, **filters), sort)
    for limit in (2, 25):
        pages = [
            queries.session_usage_page(
                sqlite_store, **filters, offset=offset, limit=limit, sort=sort
            )
            for offset in range(0, max(len(whole), 1), limit)
        ]
        joined = pd.concat(pages, ignore_index=True)
        assert list(joined["session_id"]) == list(whole["session_id"])


def test_host_filter_and_ids_and_batches(store):
    sid = int(queries.session_usage(store, user="erin")["session_id"].item())
    with store.begin() as conn:
        conn.execute(
            sessions_table().update().where(sessions_table().c.id == sid).values(host="WS-Erin%")
        )
    assert list(queries.session_usage(store, host="ws-erin%")["session_id"]) == [sid]
    assert queries.session_usage_counts(store, host="erin") == (1, 1)
    assert queries.session_usage(store, host="_").empty
    assert queries.session_usage_ids(store) == list(queries.session_usage(store)["session_id"])
    batches = list(queries.iter_session_usage(store, batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    pd.testing.assert_frame_equal(
        pd.concat(batches, ignore_index=True).drop(columns="idle"),
        queries.session_usage(store).drop(columns="idle"),
    )
    with pytest.raises(InvalidInput):
        queries.session_usage_page(store, sort=[("password", True)])


def sessions_table():
    from licusage.models import sessions_t

    return sessions_t


@pytest.fixture
def sqlite_store(sqlite_engine, frozen):
    """The `store` sessions on SQLite only (NULL ordering differs on PostgreSQL)."""
    return fill(sqlite_engine, frozen)
