"""Alert rules over the store, evaluated on a schedule, delivered by e-mail and webhook.

Rules live in a TOML file (see ``docs/alerts.md``)::

    [email]
    host = "smtp.example.org"      # port = 25, starttls = false, username, password_env
    from = "licusage@example.org"
    to = ["licenses@example.org"]

    [webhook]
    url = "https://chat.example.org/hooks/licusage"

    [[rule]]
    name = "Case Management nearly full"
    kind = "pool_usage"            # a pool above above_percent for longer than `for`
    pool = "Case Management=Concurrent User"   # optional: every pool
    above_percent = 90
    for = "15m"

    [[rule]]
    kind = "denials"               # more than more_than denials within `within`
    more_than = 5
    within = "1h"

    [[rule]]
    kind = "pool_expiry"           # a pool, or some of its seats, expiring within each of `days`
    days = [30, 15, 7]

    [[rule]]
    kind = "source_down"           # a license-server source that is not answering

    [[rule]]
    kind = "session_age"           # sessions older than older_than
    older_than = "12h"

An alert is one rule for one *subject* (a pool, a source, an expiry threshold). It **fires**
when its condition becomes true: a firing is stored (table ``alert_firings``) and delivered
once, to every channel. It stays open, and is not delivered again, until the condition is
false at an evaluation: then it **clears**. When the condition returns, it fires again.
Several servers may evaluate one store: evaluations are serialised (SQLite's write lock, a
PostgreSQL advisory lock) and at most one open firing per rule and subject can exist, so each
firing is delivered by one of them.

:func:`decide` is the pure decision (what is true now); :func:`evaluate` records and delivers.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import threading
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import catalog as catalog_
from . import clock, metrics, queries
from . import db as store
from .db import store_operation, write
from .durations import format_duration, parse_duration
from .errors import InvalidInput, LicusageError
from .models import alert_firings_t
from .validation import check_whole

log = logging.getLogger(__name__)

KINDS = ("pool_usage", "denials", "pool_expiry", "source_down", "session_age")
_PG_LOCK_KEY = 0x11C0A1E7  # serialises evaluations of one store across hosts


@dataclass(frozen=True)
class Rule:
    """One alert rule of the file (see the module's notes for each kind's settings)."""

    name: str
    kind: str
    pool: tuple[str, str] | None = None
    source: str | None = None
    above_percent: float = 90.0
    duration: timedelta = timedelta(0)  # pool_usage's `for`
    more_than: int = 0
    within: timedelta = timedelta(hours=1)
    days: tuple[int, ...] = (30, 15, 7)
    older_than: timedelta = timedelta(hours=12)


@dataclass(frozen=True)
class EmailChannel:
    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class WebhookChannel:
    url: str
    timeout: float = 30.0


@dataclass(frozen=True)
class AlertConfig:
    """The rules and where firings go."""

    rules: tuple[Rule, ...]
    email: EmailChannel | None = None
    webhook: WebhookChannel | None = None


@dataclass(frozen=True)
class Alert:
    """A rule's condition that holds now, for one subject."""

    rule: str
    kind: str
    subject: str
    message: str


@dataclass(frozen=True)
class Firing:
    """A stored firing (``cleared_at`` None while open)."""

    id: int
    rule: str
    kind: str
    subject: str
    message: str
    fired_at: datetime
    cleared_at: datetime | None = None
    delivery: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation did: firings made (and delivered), firings cleared."""

    fired: tuple[Firing, ...] = ()
    cleared: tuple[Firing, ...] = ()


# --- the rules file ------------------------------------------------------------------------


def _get(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise InvalidInput(f"{where}: {key} must be {_type_name(kind)}, not {value!r}")
    if not isinstance(value, kind):
        raise InvalidInput(f"{where}: {key} must be {_type_name(kind)}, not {value!r}")
    return value


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _duration(table: Mapping[str, Any], key: str, where: str, default: timedelta) -> timedelta:
    text = _get(table, key, str, where)
    if text is None:
        return default
    try:
        return parse_duration(text)
    except InvalidInput as error:
        raise InvalidInput(f"{where}: {key}: {error}") from None


def _unknown_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise InvalidInput(f"{where}: unknown setting {extra[0]!r} (allowed: {sorted(allowed)})")


_RULE_KEYS = {
    "pool_usage": {"pool", "above_percent", "for"},
    "denials": {"pool", "more_than", "within"},
    "pool_expiry": {"pool", "days"},
    "source_down": {"source"},
    "session_age": {"older_than"},
}


def _rule(table: Any, position: int) -> Rule:
    where = f"rule {position}"
    if not isinstance(table, dict):
        raise InvalidInput(f"{where} must be a table ([[rule]])")
    kind = _get(table, "kind", str, where)
    if kind not in KINDS:
        raise InvalidInput(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    name = _get(table, "name", str, where) or f"{kind} {position}"
    where = f"rule {name!r}"
    _unknown_keys(table, {"name", "kind", *_RULE_KEYS[kind]}, where)
    pool = None
    if (spec := _get(table, "pool", str, where)) is not None:
        product, sep, license_type = spec.partition("=")
        if not sep or not product.strip() or not license_type.strip():
            raise InvalidInput(f"{where}: pool must be PRODUCT=TYPE, not {spec!r}")
        pool = (product.strip(), license_type.strip())
    values: dict[str, Any] = {"name": name, "kind": kind, "pool": pool}
    if kind == "pool_usage":
        percent = _get(table, "above_percent", (int, float), where)
        if percent is None or not 0 <= percent <= 100:
            raise InvalidInput(f"{where}: above_percent must be a number from 0 to 100")
        values["above_percent"] = float(percent)
        values["duration"] = _duration(table, "for", where, timedelta(0))
    elif kind == "denials":
        more_than = _get(table, "more_than", int, where)
        if more_than is None or more_than < 0:
            raise InvalidInput(f"{where}: more_than must be a whole number >= 0")
        values["more_than"] = more_than
        values["within"] = _duration(table, "within", where, timedelta(hours=1))
        if values["within"] <= timedelta(0):
            raise InvalidInput(f"{where}: within must be a positive duration")
    elif kind == "pool_expiry":
        days = table.get("days", [30, 15, 7])
        if (
            not isinstance(days, list)
            or not days
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in days)
        ):
            raise InvalidInput(
                f"{where}: days must be a list of whole numbers > 0, e.g. [30, 15, 7]"
            )
        values["days"] = tuple(sorted(set(days), reverse=True))
    elif kind == "source_down":
        values["source"] = _get(table, "source", str, where)
    elif kind == "session_age":
        values["older_than"] = _duration(table, "older_than", where, timedelta(hours=12))
    return Rule(**values)


def parse_config(text: str, origin: str = "alert rules") -> AlertConfig:
    """The rules and channels of a TOML document; InvalidInput naming the bad setting."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InvalidInput(f"{origin} is not valid TOML: {error}") from None
    _unknown_keys(data, {"rule", "email", "webhook"}, origin)
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        raise InvalidInput(f"{origin}: rules are [[rule]] tables")
    rules = tuple(_rule(table, i) for i, table in enumerate(raw_rules, start=1))
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(f"{origin}: two rules are named {duplicates[0]!r}")
    email = None
    if (table := data.get("email")) is not None:
        _unknown_keys(
            table,
            {"host", "port", "from", "to", "starttls", "username", "password_env", "timeout"},
            "[email]",
        )
        to = table.get("to")
        if isinstance(to, str):
            to = [to]
        if not isinstance(to, list) or not to or not all(isinstance(a, str) for a in to):
            raise InvalidInput("[email]: to must name at least one address")
        host, sender = _get(table, "host", str, "[email]"), _get(table, "from", str, "[email]")
        if not host or not sender:
            raise InvalidInput("[email]: host and from are required")
        email = EmailChannel(
            host=host,
            sender=sender,
            to=tuple(to),
            port=_get(table, "port", int, "[email]") or 25,
            starttls=bool(_get(table, "starttls", bool, "[email]")),
            username=_get(table, "username", str, "[email]"),
            password_env=_get(table, "password_env", str, "[email]"),
            timeout=float(_get(table, "timeout", (int, float), "[email]") or 30),
        )
    webhook = None
    if (table := data.get("webhook")) is not None:
        _unknown_keys(table, {"url", "timeout"}, "[webhook]")
        url = _get(table, "url", str, "[webhook]")
        if not url or not url.startswith(("http://", "https://")):
            raise InvalidInput("[webhook]: url must be an http:// or https:// URL")
        webhook = WebhookChannel(
            url=url, timeout=float(_get(table, "timeout", (int, float), "[webhook]") or 30)
        )
    return AlertConfig(rules=rules, email=email, webhook=webhook)


def load_config(path: str | Path) -> AlertConfig:
    """:func:`parse_config` of the file at `path`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidInput(f"cannot read the alert rules {path}: {error.strerror}") from None
    return parse_config(text, str(path))


# --- deciding ------------------------------------------------------------------------------


def lowest_level(holds: pd.DataFrame, start: datetime, end: datetime) -> int:
    """The fewest distinct users holding at any instant of [`start`, `end`] (naive UTC times;
    ``released_at`` missing = still held). 0 when nobody held throughout."""
    if holds.empty:
        return 0
    events: list[tuple[datetime, int]] = []
    for _, group in holds.groupby("user"):
        # merge each user's overlapping holds: a user counts once
        spans = sorted(
            (max(g, start), end if pd.isna(r) else min(r, end))
            for g, r in zip(group["granted_at"], group["released_at"], strict=True)
        )
        merged: list[list[datetime]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        for lo, hi in merged:
            if hi > lo:
                events += [(lo, 1), (hi, -1)]
    if not events:
        return 0
    events.sort(key=lambda e: (e[0], e[1]))  # at one instant: releases before grants
    level, lowest, cursor = 0, None, start
    for when, step in events:
        if when > cursor:
            lowest = level if lowest is None else min(lowest, level)
            cursor = when
        level += step
    if cursor < end:
        lowest = level if lowest is None else min(lowest, level)
    return int(lowest or 0)


def _pools(engine: Engine, rule: Rule) -> list[catalog_.Pool]:
    pools = list(catalog_.read_catalog(engine).pools)
    if rule.pool is None:
        return pools
    return [p for p in pools if (p.product, p.license_type) == rule.pool]


def _label(product: str, license_type: str) -> str:
    return f"{product}={license_type}"


def _partial_expiries(
    engine: Engine, rule: Rule, pools: Sequence[catalog_.Pool], now: datetime
) -> list[Alert]:
    """A pool_expiry rule's alerts for seats of `pools` lost before the pool expires (`now`:
    naive UTC): a license file's increment that ends before the others."""
    with engine.connect() as conn:
        coming = catalog_.seats_to_come(conn, now)
    alerts: list[Alert] = []
    for pool in pools:
        had = pool.seats
        for at, seats in coming.get(pool.id, []):
            if had is not None and seats < had and at != pool.expires_at:
                alerts.extend(_expiring_seats(rule, pool, at - now, at, had - seats, had))
            had = seats
    return alerts


def _expiring_seats(
    rule: Rule, pool: catalog_.Pool, left: timedelta, at: datetime, lost: int, had: int
) -> list[Alert]:
    label = _label(pool.product, pool.license_type)
    return [
        Alert(
            rule.name,
            rule.kind,
            f"{label} seats drop {at:%Y-%m-%d %H:%M} within {days} days",
            f"{label}: {lost} of {had} seats expire in {format_duration(left)} "
            f"({at:%Y-%m-%d %H:%M} UTC)",
        )
        for days in rule.days
        if left <= timedelta(days=days)
    ]


def decide(engine: Engine, rules: Sequence[Rule], now: datetime | None = None) -> list[Alert]:
    """The alerts whose condition holds at `now` (default: the clock's now). Reads only."""
    when = clock.to_utc(now or clock.now())
    naive = clock.to_db(when)
    assert naive is not None
    alerts: list[Alert] = []
    for rule in rules:
        if rule.kind == "pool_usage":
            start = naive - rule.duration
            holds = queries.held_between(engine, start, naive + timedelta(microseconds=1))
            for pool in _pools(engine, rule):
                if pool.seats is None or pool.seats <= 0:  # seats not known: no percentage
                    continue
                mine = holds[
                    (holds["product"] == pool.product)
                    & (holds["license_type"] == pool.license_type)
                ]
                level = (
                    lowest_level(mine, start, naive)
                    if rule.duration
                    else int(queries_in_use(mine, naive))
                )
                if 100 * level / pool.seats > rule.above_percent:
                    label = _label(pool.product, pool.license_type)
                    alerts.append(
                        Alert(
                            rule.name,
                            rule.kind,
                            label,
                            f"{label}: at least {level} of {pool.seats} seats in use "
                            f"(over {rule.above_percent:g} %) for {format_duration(rule.duration)}",
                        )
                    )
        elif rule.kind == "denials":
            counts = queries.denial_counts(engine, when - rule.within)
            if rule.pool is not None:
                counts = counts[
                    (counts["product"] == rule.pool[0]) & (counts["license_type"] == rule.pool[1])
                ]
            total = int(counts["denials"].sum())
            if total > rule.more_than:
                subject = _label(*rule.pool) if rule.pool else "all pools"
                alerts.append(
                    Alert(
                        rule.name,
                        rule.kind,
                        subject,
                        f"{total} denials in the last {format_duration(rule.within)} "
                        f"({subject}; more than {rule.more_than})",
                    )
                )
        elif rule.kind == "pool_expiry":
            pools = _pools(engine, rule)
            for pool in pools:
                if pool.expires_at is None:
                    continue
                left = pool.expires_at - naive
                for days in rule.days:
                    if left <= timedelta(days=days):
                        label = _label(pool.product, pool.license_type)
                        state = (
                            "has expired"
                            if left <= timedelta(0)
                            else f"expires in {format_duration(left)}"
                        )
                        alerts.append(
                            Alert(
                                rule.name,
                                rule.kind,
                                f"{label} within {days} days",
                                f"{label} {state} ({pool.expires_at:%Y-%m-%d %H:%M} UTC)",
                            )
                        )
            alerts.extend(_partial_expiries(engine, rule, pools, naive))
        elif rule.kind == "source_down":
            for status in metrics.source_statuses(engine):
                if rule.source is not None and status.source != rule.source:
                    continue
                if not status.up:
                    alerts.append(
                        Alert(
                            rule.name, rule.kind, status.source, f"source {status.source} is down"
                        )
                    )
        elif rule.kind == "session_age":
            old = queries.sessions_started_before(engine, when - rule.older_than)
            if len(old):
                first = old.iloc[0]
                alerts.append(
                    Alert(
                        rule.name,
                        rule.kind,
                        "sessions",
                        f"{len(old)} active sessions are older than "
                        f"{format_duration(rule.older_than)} (oldest: #{first['session_id']} of "
                        f"{first['user']}, started {pd.Timestamp(first['started_at']):%Y-%m-%d %H:%M} UTC)",
                    )
                )
    return alerts


def queries_in_use(holds: pd.DataFrame, at: datetime) -> int:
    """Distinct users holding at `at` among `holds` (see :func:`lowest_level`)."""
    held = holds[
        (holds["granted_at"] <= at) & (holds["released_at"].isna() | (holds["released_at"] > at))
    ]
    return int(held["user"].nunique())


# --- recording and delivering --------------------------------------------------------------


def _firing(row: Any) -> Firing:
    return Firing(
        id=int(row.id),
        rule=row.rule,
        kind=row.kind,
        subject=row.subject,
        message=row.message,
        fired_at=clock.to_utc(row.fired_at),
        cleared_at=None if row.cleared_at is None else clock.to_utc(row.cleared_at),
        delivery=json.loads(row.delivery) if row.delivery else {},
    )


@store_operation
def evaluate(
    engine: Engine, config: AlertConfig, now: datetime | None = None, deliver: bool = True
) -> Evaluation:
    """Decide, record new firings and clear those whose condition no longer holds (one
    serialised transaction), then deliver the new firings to every channel."""
    alerts = {(a.rule, a.subject): a for a in decide(engine, config.rules, now)}
    at = clock.current_db_time(now)
    f = alert_firings_t
    fired: list[Firing] = []
    cleared: list[Firing] = []
    with write(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
        open_rows = {
            (r.rule, r.subject): r
            for r in conn.execute(sa.select(f).where(f.c.cleared_at.is_(None)))
        }
        for key, row in open_rows.items():
            if key not in alerts:
                conn.execute(sa.update(f).where(f.c.id == row.id).values(cleared_at=at))
                cleared.append(_firing(row))
        for key, alert in alerts.items():
            if key in open_rows:
                continue
            firing_id = conn.execute(
                sa.insert(f)
                .values(
                    rule=alert.rule,
                    kind=alert.kind,
                    subject=alert.subject,
                    message=alert.message,
                    fired_at=at,
                )
                .returning(f.c.id)
            ).scalar_one()
            fired.append(
                Firing(
                    int(firing_id),
                    alert.rule,
                    alert.kind,
                    alert.subject,
                    alert.message,
                    clock.to_utc(at),
                )
            )
    if deliver and fired:
        fired = [_deliver(engine, config, firing) for firing in fired]
    return Evaluation(tuple(fired), tuple(cleared))


def payload(firing: Firing) -> dict[str, Any]:
    """The JSON a webhook receives for a firing."""
    return {
        "source": "licusage",
        "state": "firing",
        "id": firing.id,
        "rule": firing.rule,
        "kind": firing.kind,
        "subject": firing.subject,
        "message": firing.message,
        "fired_at": firing.fired_at.isoformat(),
    }


def send_email(channel: EmailChannel, firing: Firing) -> None:
    """Send `firing` as a plain-text e-mail through the channel's SMTP server."""
    message = EmailMessage()
    message["Subject"] = f"[licusage] {firing.rule}: {firing.subject}"
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.to)
    message.set_content(
        f"{firing.message}\n\nRule: {firing.rule} ({firing.kind})\n"
        f"Fired: {firing.fired_at:%Y-%m-%d %H:%M:%S} UTC\n"
        "It is sent once; licusage records when it clears.\n"
    )
    with smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout) as smtp:
        if channel.starttls:
            smtp.starttls()
        if channel.username:
            smtp.login(channel.username, os.environ.get(channel.password_env or "", ""))
        smtp.send_message(message)


def post_webhook(channel: WebhookChannel, firing: Firing) -> None:
    """POST :func:`payload` of `firing` as JSON; an answer other than 2xx is an error."""
    response = httpx.post(channel.url, json=payload(firing), timeout=channel.timeout)
    response.raise_for_status()


def _deliver(engine: Engine, config: AlertConfig, firing: Firing) -> Firing:
    outcome: dict[str, str] = {}
    channels: list[tuple[str, Any]] = []
    if config.email is not None:
        channels.append(("email", lambda: send_email(config.email, firing)))
    if config.webhook is not None:
        channels.append(("webhook", lambda: post_webhook(config.webhook, firing)))
    for name, send in channels:
        try:
            send()
            outcome[name] = "sent"
        except (OSError, smtplib.SMTPException, httpx.HTTPError) as error:
            outcome[name] = f"failed: {type(error).__name__}: {error}"[:500]
            log.warning(
                "alert %s (%s): %s delivery failed: %s", firing.rule, firing.subject, name, error
            )
    with write(engine) as conn:
        conn.execute(
            sa.update(alert_firings_t)
            .where(alert_firings_t.c.id == firing.id)
            .values(delivery=json.dumps(outcome, sort_keys=True))
        )
    return Firing(**{**firing.__dict__, "delivery": outcome})


@store_operation
def firings(engine: Engine, limit: int = 200, open_only: bool = False) -> pd.DataFrame:
    """Stored firings, newest first: ``id``, ``rule``, ``kind``, ``subject``, ``message``,
    ``fired_at``, ``cleared_at`` (UTC; missing while open), ``delivery`` (JSON text)."""
    check_whole(limit, "limit", 1)
    f = alert_firings_t
    query = (
        sa.select(
            f.c.id,
            f.c.rule,
            f.c.kind,
            f.c.subject,
            f.c.message,
            f.c.fired_at,
            f.c.cleared_at,
            f.c.delivery,
        )
        .order_by(f.c.fired_at.desc(), f.c.id.desc())
        .limit(limit)
    )
    if open_only:
        query = query.where(f.c.cleared_at.is_(None))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(
        rows,
        columns=["id", "rule", "kind", "subject", "message", "fired_at", "cleared_at", "delivery"],
    )
    for column in ("fired_at", "cleared_at"):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]").dt.tz_localize("UTC")
    return frame


# --- in the server -------------------------------------------------------------------------


class AlertEvaluator(threading.Thread):
    """A daemon thread evaluating the rules against the store at `url` every `every`."""

    def __init__(self, url: str | None, config: AlertConfig, every: timedelta) -> None:
        super().__init__(name="licusage-alerts", daemon=True)
        if not isinstance(every, timedelta) or every < timedelta(seconds=1):
            raise InvalidInput(f"the alert period must be at least 1s, not {every!r}")
        self.url = store.resolve_url(url)
        self.config = config
        self.every = every
        self.runs = 0
        self.last_error: str | None = None
        self._stop_event = threading.Event()

    def run_once(self) -> Evaluation | None:
        """One evaluation now; None when the store could not be used."""
        try:
            engine = store.connect(self.url)
        except LicusageError as error:
            self.last_error = str(error)
            log.warning("alerts: %s", error)
            return None
        try:
            result = evaluate(engine, self.config)
        except LicusageError as error:
            self.last_error = str(error)
            log.warning("alerts: %s", error)
            return None
        finally:
            engine.dispose()
        self.runs += 1
        self.last_error = None
        return result

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.run_once()
            except Exception as error:  # keep evaluating; the next period retries
                self.last_error = f"{type(error).__name__}: {error}"
                log.exception("alerts: unexpected error")
            if self._stop_event.wait(self.every.total_seconds()):
                break

    def stop(self, timeout: float | None = 10) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)


def start_evaluator(url: str | None, config: AlertConfig, every: timedelta) -> AlertEvaluator:
    """Start evaluating `config` against the store at `url` every `every` in this process."""
    evaluator = AlertEvaluator(url, config, every)
    evaluator.start()
    log.info("alerts: %d rules every %s", len(config.rules), every)
    return evaluator


def describe(firings_: Iterable[Firing]) -> list[str]:
    """One line per firing, for the CLI."""
    return [f"{f.rule}: {f.subject}: {f.message}" for f in firings_]
