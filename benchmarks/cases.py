"""The benchmark cases of issue 6: what is timed, against which reference, and its target.

References are measured in the same run, interleaved with the case. SQL appears here only in
references (what a raw DB-API cursor or DuckDB is given) and in restoring the store after the
logout case; the library itself is always called through its public functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from licusage import actions, analytics, catalog, clock, queries
from licusage.analytics import loading, rollup, usage
from licusage.db import is_sqlite, write
from licusage.models import audit_t, holds_t, sessions_t

BENCH_ACTOR = "benchmark-logout"  # the logout case's actor: what the restore step undoes
LOGOUT_COUNT = 10_000
EXPANSION_SAMPLE = 20_000  # holds the per-session pandas expansion is timed on, then scaled


@dataclass
class Target:
    """``kind``: "ratio" (case / reference <= limit), "seconds" (median <= limit) or "both"
    (median <= limit and case / reference <= 1)."""

    kind: str
    limit: float
    text: str
    unit: str = "s"  # what the case measures: seconds, or "GB" (memory)

    def met(self, median: float, ratio: float | None) -> bool:
        if self.kind == "seconds":
            return median <= self.limit
        if self.kind == "both":
            return median <= self.limit and ratio is not None and ratio <= 1.0
        return ratio is not None and ratio <= self.limit


@dataclass
class Case:
    name: str
    target: Target
    run: Callable[[], Any] | None = None
    reference: Callable[[], Any] | None = None
    reference_name: str = ""
    times_from: str | None = None  # reuse the case times measured by another case
    reference_once: bool = False  # the reference is slow: measure it once
    after: Callable[[], Any] | None = None  # untimed clean-up after each run
    check: Callable[[Any, Any], str | None] | None = None  # (result, reference) -> problem
    notes: list[str] = field(default_factory=list)


@dataclass
class Context:
    engine: Engine
    now: datetime  # the store's "now"
    quick: bool

    @property
    def year(self) -> tuple[datetime, datetime]:
        days = 30 if self.quick else 365
        return self.now - timedelta(days=days), self.now


# ----------------------------------------------------------------------- raw DB-API helpers


def _raw_fetch(engine: Engine, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Run `sql` (``%s`` placeholders) on a raw DB-API cursor and fetch every row."""
    if is_sqlite(engine):
        sql = sql.replace("%s", "?")
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(sql, params)
        rows = list(cursor.fetchall())
        cursor.close()
        raw.rollback()
    finally:
        raw.close()
    return rows


def _usage_sql(
    cat: catalog.Catalog, type_filter: dict[int, list[int]], user: str | None
) -> tuple[str, list[Any]]:
    """session_usage's rows written by hand, as efficiently as we know: one LEFT JOIN per
    product on the unreleased licenses, active sessions only."""
    columns = ["s.id", "s.user_name", "s.host", "s.started_at", "s.last_activity"]
    joins: list[str] = []
    where = ["s.ended_at IS NULL"]
    params: list[Any] = []
    for i, product_id in enumerate(cat.products.values()):
        joins.append(
            f"LEFT JOIN session_licenses h{i} ON h{i}.session_id = s.id AND h{i}.product_id = %s"
            f" AND h{i}.released_at IS NULL"
        )
        params.append(product_id)
        columns.append(f"h{i}.license_type_id")
    for i, product_id in enumerate(cat.products.values()):
        if product_id in type_filter:
            marks = ", ".join(["%s"] * len(type_filter[product_id]))
            where.append(f"h{i}.license_type_id IN ({marks})")
            params += type_filter[product_id]
    if user:
        where.append("s.user_key LIKE %s")
        params.append(f"%{user.casefold()}%")
    sql = (
        f"SELECT {', '.join(columns)} FROM sessions s {' '.join(joins)}"
        f" WHERE {' AND '.join(where)} ORDER BY s.last_activity, s.id"
    )
    return sql, params


def _same_count(result: Any, reference: Any) -> str | None:
    if len(result) != len(reference):
        return f"{len(result)} rows, reference {len(reference)}"
    return None


# ------------------------------------------------------------------------- concurrency refs

CONCURRENCY_SQL = """
WITH m AS (
    SELECT *, max(e) OVER (PARTITION BY pool_id, u ORDER BY s, e
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
    FROM holds WHERE s < e
),
isl AS (
    SELECT *, sum(CASE WHEN reach IS NULL OR s > reach THEN 1 ELSE 0 END)
              OVER (PARTITION BY pool_id, u ORDER BY s, e ROWS UNBOUNDED PRECEDING) AS island
    FROM m
),
ep AS (SELECT pool_id, min(s) AS s, max(e) AS e FROM isl GROUP BY pool_id, u, island),
ev AS (
    SELECT pool_id, t, sum(d) AS d FROM (
        SELECT pool_id, s AS t, 1 AS d FROM ep UNION ALL SELECT pool_id, e AS t, -1 AS d FROM ep
    ) GROUP BY pool_id, t
),
lv AS (
    SELECT pool_id, t,
           sum(d) OVER (PARTITION BY pool_id ORDER BY t ROWS UNBOUNDED PRECEDING) AS level
    FROM ev
),
b AS (
    SELECT pool_id,
           CASE WHEN t < $start THEN -1 ELSE (t - $start) // $step END AS bucket,
           t, level
    FROM lv WHERE t < $end
),
per AS (
    SELECT pool_id, bucket, max(level) AS top, arg_max(level, t) AS last_level
    FROM b GROUP BY pool_id, bucket
),
grid AS (
    SELECT p.pool_id, g.bucket
    FROM (SELECT DISTINCT pool_id FROM $pools_table) p,
         (SELECT range AS bucket FROM range(-1, $buckets)) g
),
filled AS (
    SELECT grid.pool_id, grid.bucket, per.top,
           last_value(per.last_level IGNORE NULLS) OVER (
               PARTITION BY grid.pool_id ORDER BY grid.bucket
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS carried
    FROM grid LEFT JOIN per USING (pool_id, bucket)
)
SELECT pool_id, bucket, greatest(coalesce(top, 0), coalesce(carried, 0)) AS in_use
FROM filled WHERE bucket >= 0 ORDER BY pool_id, bucket
"""


def _holds_sql() -> str:
    return (
        "SELECT pool_id, user_name, granted_at, released_at FROM session_licenses"
        " WHERE granted_at < %s AND (released_at IS NULL OR released_at > %s)"
    )


def _ns(values: pd.Series) -> np.ndarray:
    if len(values) and isinstance(values.iloc[0], str):
        parsed = np.array(values.to_numpy(), dtype="datetime64[us]")
    else:
        parsed = pd.to_datetime(values).to_numpy(dtype="datetime64[us]")
    return parsed.astype("datetime64[ns]").astype(np.int64)


def duckdb_concurrency(
    rows: list[tuple[Any, ...]], start: datetime, end: datetime, now: datetime, pools: list[int]
) -> pd.DataFrame:
    """Hourly exact peak of distinct users per pool, computed by DuckDB from the hold rows."""
    frame = pd.DataFrame.from_records(rows, columns=["pool_id", "user_name", "g", "r"])
    start_ns = pd.Timestamp(start).value
    end_ns = pd.Timestamp(end).value
    until = max(start_ns, min(end_ns, pd.Timestamp(now).value))
    open_ = frame["r"].isna().to_numpy()
    holds = pd.DataFrame(
        {
            "pool_id": frame["pool_id"].astype(np.int64),
            "u": frame["user_name"].astype(object),
            "s": _ns(frame["g"]),
            "e": np.where(open_, until, _ns(frame["r"].where(~open_, frame["g"]))),
        }
    )
    pools_table = pd.DataFrame({"pool_id": np.array(pools, dtype=np.int64)})
    step = 3_600_000_000_000
    buckets = -(-(end_ns - start_ns) // step)
    con = duckdb.connect()
    try:
        con.register("holds", holds)
        con.register("pools_t", pools_table)
        sql = CONCURRENCY_SQL.replace("$pools_table", "pools_t")
        for name, value in (
            ("$start", start_ns),
            ("$end", end_ns),
            ("$step", step),
            ("$buckets", buckets),
        ):
            sql = sql.replace(name, str(int(value)))
        result = con.execute(sql).df()
    finally:
        con.close()
    return result.pivot(index="bucket", columns="pool_id", values="in_use")


def pandas_expansion(holds: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """The straightforward way: expand every hold into the hours it touches, one at a time, and
    count distinct users per pool and hour (an upper bound of the exact peak)."""
    start_ts, end_ts = pd.Timestamp(start).tz_localize(None), pd.Timestamp(end).tz_localize(None)
    parts = []
    for pool_id, user, granted, released in holds.itertuples(index=False):
        first = max(granted, start_ts).floor("h")
        last = min(released if pd.notna(released) else end_ts, end_ts)
        hours = pd.date_range(first, last, freq="h", inclusive="left")
        parts.append(pd.DataFrame({"pool_id": pool_id, "hour": hours, "user": user}))
    expanded = pd.concat(parts, ignore_index=True).drop_duplicates()
    return expanded.groupby(["hour", "pool_id"])["user"].nunique().unstack(fill_value=0)


# --------------------------------------------------------------------------------- the cases


def library_cases(ctx: Context) -> list[Case]:
    engine = ctx.engine
    cat = catalog.read_catalog(engine)
    cases: list[Case] = []

    # session_usage, no filter
    all_sql, all_params = _usage_sql(cat, {}, None)
    cases.append(
        Case(
            "session_usage() all active",
            Target("ratio", 1.5, "ratio <= 1.5"),
            run=lambda: queries.session_usage(engine),
            reference=lambda: _raw_fetch(engine, all_sql, all_params),
            reference_name="raw DB-API cursor, same rows/columns",
            check=_same_count,
        )
    )

    # session_usage(user=...): a real user's full name (a substring filter: may match "name2")
    user = str(queries.session_usage(engine)["user"].iloc[0])
    cases.append(
        Case(
            f"session_usage(user={user!r})",
            Target("seconds", 0.020, "<= 20 ms"),
            run=lambda: queries.session_usage(engine, user=user),
        )
    )

    # license types for two products
    filters = {"Case Management": ["Concurrent User"], "RD Email Management": ["Concurrent User"]}
    type_filter = catalog.parse_license_filter(cat, filters)
    two_sql, two_params = _usage_sql(cat, type_filter, None)
    cases.append(
        Case(
            "session_usage(license_types= 2 products)",
            Target("ratio", 1.5, "ratio <= 1.5"),
            run=lambda: queries.session_usage(engine, license_types=filters),
            reference=lambda: _raw_fetch(engine, two_sql, two_params),
            reference_name="raw DB-API cursor, same rows/columns",
            check=_same_count,
        )
    )

    # logout_sessions of 10,000 sessions, then put them back
    restore_leftovers(engine)
    with engine.connect() as conn:
        ids = (
            conn.execute(
                sa.select(sessions_t.c.id)
                .where(sessions_t.c.ended_at.is_(None))
                .order_by(sessions_t.c.id)
                .limit(LOGOUT_COUNT if not ctx.quick else 1_000)
            )
            .scalars()
            .all()
        )

    def logout() -> actions.LogoutResult:
        result = actions.logout_sessions(engine, ids, actor=BENCH_ACTOR)
        if len(result.logged_out) != len(ids):
            raise AssertionError(f"logged out {len(result.logged_out)} of {len(ids)}")
        return result

    cases.append(
        Case(
            f"logout_sessions({len(ids):,} sessions)",
            Target("seconds", 1.0, "<= 1 s"),
            run=logout,
            after=lambda: restore_leftovers(engine),
            notes=[
                "logout: one transaction (logout_sessions); the sessions, their licenses and "
                "the audit rows it wrote are restored after every run (not timed)"
            ],
        )
    )

    # concurrency, hourly, over a year
    start, end = ctx.year
    pools = [p.id for p in cat.pools]

    def fetch_and_duckdb() -> pd.DataFrame:
        rows = _raw_fetch(engine, _holds_sql(), [_db(engine, end), _db(engine, start)])
        return duckdb_concurrency(rows, start, end, datetime.now(UTC), pools)

    def same_concurrency(result: pd.DataFrame, reference: pd.DataFrame) -> str | None:
        ours = result.to_numpy()
        theirs = reference[[p.id for p in cat.pools]].to_numpy()
        if ours.shape != theirs.shape or not (ours == theirs).all():
            return "concurrency differs from the DuckDB result"
        return None

    period = "30 days" if ctx.quick else "1 year"
    cases.append(
        Case(
            f"concurrency(hourly, {period})",
            Target("ratio", 2.0, "ratio <= 2"),
            run=lambda: analytics.concurrency(engine, start, end, "1h"),
            reference=fetch_and_duckdb,
            reference_name="raw cursor fetch + DuckDB SQL, same result",
            check=same_concurrency,
            notes=[
                "concurrency vs DuckDB: DuckDB cannot read the store itself here (its sqlite/"
                "postgres extensions need a download), so the reference is the hold rows "
                "fetched by a raw cursor, then the same exact hourly peak computed in DuckDB "
                "SQL; the two results are compared cell by cell every run"
            ],
        )
    )

    def expansion() -> float:
        rows = _raw_fetch(engine, _holds_sql(), [_db(engine, end), _db(engine, start)])
        frame = pd.DataFrame.from_records(rows, columns=["pool_id", "user", "g", "r"])
        for column in ("g", "r"):
            frame[column] = pd.to_datetime(frame[column], format="ISO8601")
        size = EXPANSION_SAMPLE // 10 if ctx.quick else EXPANSION_SAMPLE
        sample = frame.sample(min(size, len(frame)), random_state=0)
        began = time.perf_counter()
        pandas_expansion(sample, start, end)
        return (time.perf_counter() - began) * len(frame) / max(len(sample), 1)

    cases.append(
        Case(
            f"concurrency(hourly, {period}) vs pandas",
            Target("ratio", 0.1, "ratio <= 0.1 (10x)"),
            times_from=f"concurrency(hourly, {period})",
            reference=expansion,
            reference_name="per-hold pandas expansion (scaled)",
            reference_once=True,
            notes=[
                "pandas expansion: timed on a random sample of holds (20,000; quick: 2,000) and "
                "scaled linearly to all holds in the window (the expansion is per hold)"
            ],
        )
    )

    cases.append(
        Case(
            f"right_size({period})",
            Target("seconds", 10.0, "<= 10 s"),
            run=lambda: analytics.right_size(engine, start, end),
        )
    )
    cases += rollup_cases(ctx)
    return cases


def rollup_cases(ctx: Context) -> list[Case]:
    """The hourly roll-up (issue 12): its rebuild, then hourly concurrency over a year read
    from it against the same result from the holds alone (compared cell by cell)."""
    engine = ctx.engine
    start, end = ctx.year
    start = start.replace(minute=0, second=0, microsecond=0)  # whole hours: the roll-up serves
    window = loading.window_of(start, end)
    lo = np.arange(window.start, window.end, analytics.HOUR_NS, dtype=np.int64)
    hi = np.minimum(lo + analytics.HOUR_NS, window.end)
    period = "30 days" if ctx.quick else "1 year"

    def from_holds() -> pd.DataFrame:
        return usage.concurrency_from_holds(engine, loading.window_of(start, end), lo, hi)

    def identical(result: pd.DataFrame, reference: pd.DataFrame) -> str | None:
        same = result.shape == reference.shape and (result.to_numpy() == reference.to_numpy()).all()
        return None if same else "the roll-up's concurrency differs from the holds'"

    def same_peaks(result: pd.DataFrame, reference: pd.DataFrame) -> str | None:
        try:
            pd.testing.assert_frame_equal(result, reference, check_exact=True)
        except AssertionError as error:
            return f"peaks differ from the holds': {str(error).splitlines()[0]}"
        return None

    # the Utilisation tab's reads of a year: whole UTC days, as its day range gives them
    day_start = start.replace(hour=0)
    day_end = end.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    day_window = loading.Window(
        loading.instant(day_start, "start"), loading.instant(day_end, "end"), 0
    )
    day_lo = np.arange(day_window.start, day_window.end, analytics.HOUR_NS, dtype=np.int64)
    day_hi = np.minimum(day_lo + analytics.HOUR_NS, day_window.end)

    # the day runs on past now; one fixed "now" for the case and its reference (the window
    # is cut at now: minutes apart, the two would see different periods)
    moment = datetime.now(UTC).replace(microsecond=0)

    def tab() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        with clock.frozen(moment):
            return (
                analytics.concurrency(engine, day_start, day_end, freq="1h"),
                analytics.peaks(engine, day_start, day_end),
                analytics.hour_of_week(engine, day_start, day_end),
            )

    def tab_from_holds() -> tuple[pd.DataFrame, pd.DataFrame]:
        with clock.frozen(moment):
            window = loading.window_of(day_start, day_end)
            return (
                usage.concurrency_from_holds(engine, window, day_lo, day_hi),
                usage.peaks_from_holds(engine, window),
            )

    def same_tab(result: tuple, reference: tuple) -> str | None:
        if identical(result[0], reference[0]) is not None:
            return "the tab's concurrency differs from the holds'"
        return same_peaks(result[1], reference[1])

    return [
        Case(
            f"peaks({period}, roll-up)",
            Target("seconds", 3.0, "<= 3 s"),
            run=lambda: analytics.peaks(engine, start, end),
            reference=lambda: usage.peaks_from_holds(engine, loading.window_of(start, end)),
            reference_name="the same figures from the holds (the path before the roll-up)",
            check=same_peaks,
            notes=[
                "peaks roll-up: whole hours from the roll-up (levels read only for the hours a "
                "percentile or the time near full depends on), the rest from the holds; "
                "compared with the holds-only result (every column, exactly) on the first run"
            ],
        ),
        Case(
            f"utilisation tab ({period})",
            Target("seconds", 3.0, "<= 3 s"),
            run=tab,
            reference=tab_from_holds,
            reference_name="concurrency + peaks from the holds (no roll-up)",
            reference_once=True,
            check=same_tab,
            notes=[
                "utilisation tab: what UtilisationView.refresh reads for the window (whole UTC "
                "days): concurrency(freq='1h'), peaks and hour_of_week; the reference (run "
                "once) is concurrency and peaks from the holds, checked equal"
            ],
        ),
        Case(
            f"rollup rebuild ({period})",
            Target("seconds", 60.0, "<= 60 s"),
            run=lambda: rollup.refresh(engine, rebuild=True),
            notes=["rollup rebuild: every pool recomputed from its first hold (one snapshot)"],
        ),
        Case(
            f"concurrency(hourly, {period}, roll-up)",
            Target("seconds", 3.0, "<= 3 s"),
            run=lambda: analytics.concurrency(engine, start, end, "1h"),
            reference=from_holds,
            reference_name="the same buckets from the holds (the path before the roll-up)",
            check=identical,
            notes=[
                "concurrency roll-up: an hour-aligned window read from the roll-up (refreshed "
                "first: nothing to do), the partial last hour from the holds; compared cell by "
                "cell with the holds-only result every run"
            ],
        ),
    ]


def _db(engine: Engine, value: datetime) -> datetime | str:
    """`value` as a raw-cursor parameter: naive UTC (text on SQLite, as the store keeps it)."""
    naive = value.astimezone(UTC).replace(tzinfo=None)
    return naive.strftime("%Y-%m-%d %H:%M:%S.%f") if is_sqlite(engine) else naive


def restore_leftovers(engine: Engine) -> int:
    """Undo the logout case: re-open the sessions it ended, with their licenses, and drop its
    audit rows. Returns how many sessions were re-opened."""
    ended_by_us = sa.select(sessions_t.c.id).where(sessions_t.c.ended_by == BENCH_ACTOR)
    with write(engine) as conn:
        ended_at = (
            sa.select(sessions_t.c.ended_at)
            .where(sessions_t.c.id == holds_t.c.session_id)
            .scalar_subquery()
        )
        conn.execute(
            sa.update(holds_t)
            .where(holds_t.c.session_id.in_(ended_by_us), holds_t.c.released_at == ended_at)
            .values(released_at=None)
        )
        reopened = conn.execute(
            sa.update(sessions_t)
            .where(sessions_t.c.ended_by == BENCH_ACTOR)
            .values(ended_at=None, end_reason=None, ended_by=None)
        ).rowcount
        conn.execute(sa.delete(audit_t).where(audit_t.c.actor == BENCH_ACTOR))
    return int(reopened or 0)
