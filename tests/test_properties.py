"""Property tests: session_usage's filters agree with a plain-Python reference.

SQLite only (for speed): one store per test, its sessions cleared between examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from licusage import catalog, clock, db, durations, queries, sessions
from licusage.errors import InvalidInput
from licusage.models import audit_t, denials_t, holds_t, sessions_t
from licusage.validation import check_user, lenient_identity

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PRODUCTS = ("Alpha", "Beta", "Gamma")
TYPES = ("Concurrent User", "Floating")  # both concurrent kinds: no assignment needed
USERS = (
    "alice",
    "ALICE",
    "Bob_Smith",
    "bob%",
    "100%_sure",
    "back\\slash",
    "o'brien",
    'say "hi"',
    "Straße",
    "STRASSE",
    "İlker",
    "Ωmega",
    "chen 陈",
    "  padded ",
    "a_b",
    "a%b",
    "🦄 unicorn",
)

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def prop_store(tmp_path, monkeypatch) -> Iterator[Engine]:
    """A SQLite store with the pools of PRODUCTS x TYPES and a clock fixed at NOW."""
    monkeypatch.setattr(clock, "now", lambda: NOW)
    engine = db.connect(f"sqlite:///{tmp_path / 'prop.sqlite'}")
    for product in PRODUCTS:
        for license_type in TYPES:
            catalog.add_pool(engine, product, license_type, 1000)
    yield engine
    engine.dispose()


def clear(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in (holds_t, denials_t, audit_t, sessions_t):
            conn.execute(sa.delete(table))


@dataclass
class Planned:
    user: str
    licenses: dict[str, str]
    idle_minutes: int
    ended: bool


planned = st.builds(
    Planned,
    user=st.sampled_from(USERS),
    licenses=st.dictionaries(st.sampled_from(PRODUCTS), st.sampled_from(TYPES), max_size=3),
    idle_minutes=st.integers(0, 600),
    ended=st.booleans(),
)


@dataclass
class Stored:
    session_id: int
    user: str
    licenses: dict[str, str]
    last_activity: datetime
    ended: bool


def populate(engine: Engine, plans: list[Planned]) -> list[Stored]:
    stored = []
    for plan in plans:
        at = NOW - timedelta(minutes=plan.idle_minutes)
        result = sessions.login(engine, plan.user, plan.licenses, at=at)
        assert result.ok
        assert result.session_id is not None
        if plan.ended:
            sessions.end(engine, result.session_id)
        spelling = check_user(plan.user)  # kept trimmed and in NFC
        stored.append(Stored(result.session_id, spelling, plan.licenses, at, plan.ended))
    return stored


def reference(
    stored: list[Stored],
    user: str | None,
    license_types: dict[str, list[str]] | None,
    idle_over: timedelta | None,
) -> list[int]:
    """What session_usage must return, computed in plain Python."""
    needle = lenient_identity(user or "")  # the user filter compares identities
    kept = []
    for s in stored:
        if s.ended:
            continue
        if needle and needle not in lenient_identity(s.user):
            continue
        if license_types and any(
            types and s.licenses.get(product) not in types
            for product, types in license_types.items()
        ):
            continue
        if idle_over is not None and NOW - s.last_activity < idle_over:
            continue
        kept.append(s)
    kept.sort(key=lambda s: (s.last_activity, s.session_id))
    return [s.session_id for s in kept]


def substrings(names: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Pieces of the names, sometimes with their case swapped."""

    def piece(name: str, bounds: tuple[int, int], swap: bool) -> str:
        text = name[min(bounds) : max(bounds)]
        return text.swapcase() if swap else text

    return st.sampled_from(names).flatmap(
        lambda name: st.builds(
            piece,
            st.just(name),
            st.tuples(st.integers(0, len(name)), st.integers(0, len(name))),
            st.booleans(),
        )
    )


user_filters = st.one_of(st.none(), substrings(USERS), st.text(max_size=4))
license_filters = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(PRODUCTS),
        st.lists(st.sampled_from(TYPES), max_size=2, unique=True),
        max_size=3,
    ),
)
idle_filters = st.one_of(st.none(), st.integers(0, 700).map(lambda m: timedelta(minutes=m)))


@SETTINGS
@given(
    plans=st.lists(planned, max_size=12),
    user=user_filters,
    license_types=license_filters,
    idle_over=idle_filters,
)
def test_session_usage_matches_the_reference(prop_store, plans, user, license_types, idle_over):
    clear(prop_store)
    stored = populate(prop_store, plans)
    frame = queries.session_usage(
        prop_store, user=user, license_types=license_types, idle_over=idle_over
    )
    assert list(frame["session_id"]) == reference(stored, user, license_types, idle_over)
    by_id = {s.session_id: s for s in stored}
    for row in frame.to_dict("records"):
        expected = by_id[row["session_id"]]
        assert row["user"] == expected.user
        for product in PRODUCTS:
            held = None if pd.isna(row[product]) else row[product]
            assert held == expected.licenses.get(product)


@pytest.fixture
def every_user(prop_store) -> tuple[Engine, list[Stored]]:
    stored = populate(
        prop_store,
        [Planned(name, {PRODUCTS[0]: TYPES[0]}, i, False) for i, name in enumerate(USERS)],
    )
    return prop_store, stored


@SETTINGS
@given(needle=st.text())
def test_user_filter_with_any_text_never_errors_and_matches_the_reference(every_user, needle):
    engine, stored = every_user
    frame = queries.session_usage(engine, user=needle)
    expected = {s.user for s in stored if lenient_identity(needle) in lenient_identity(s.user)}
    assert set(frame["user"]) == expected


@SETTINGS
@given(needle=substrings(USERS))
def test_user_filter_finds_every_name_containing_a_piece_of_a_name(every_user, needle):
    engine, stored = every_user
    frame = queries.session_usage(engine, user=needle)
    expected = {s.user for s in stored if lenient_identity(needle) in lenient_identity(s.user)}
    assert set(frame["user"]) == expected
    if lenient_identity(needle):
        assert expected  # the piece came from some name, so something matches


@settings(max_examples=200, deadline=None)
@given(
    parts=st.fixed_dictionaries(
        {},
        optional={
            "d": st.integers(0, 3000),
            "h": st.integers(0, 10_000),
            "m": st.integers(0, 100_000),
            "s": st.integers(0, 1_000_000),
        },
    ).filter(bool),
    spaced=st.booleans(),
)
def test_durations_parse_what_they_say(parts, spaced):
    text = (" " if spaced else "").join(f"{parts[unit]}{unit}" for unit in "dhms" if unit in parts)
    expected = timedelta(
        days=parts.get("d", 0),
        hours=parts.get("h", 0),
        minutes=parts.get("m", 0),
        seconds=parts.get("s", 0),
    )
    if expected > durations.MAX_DURATION:
        with pytest.raises(InvalidInput, match="too long"):
            durations.parse_duration(text)
    else:
        assert durations.parse_duration(text) == expected


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=12))
def test_any_text_either_parses_or_raises_invalid_input(text):
    try:
        value = durations.parse_duration(text)
    except InvalidInput:
        return
    assert timedelta(0) <= value <= durations.MAX_DURATION
