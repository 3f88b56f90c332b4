"""Build the large store once per set of parameters and reuse it.

* SQLite (the default): a file under ``benchmarks/.cache/`` named after the parameters, built
  under a temporary name and renamed when complete. An explicit ``--db sqlite:///file`` is used
  the same way, its parameters kept in ``file.params.json``.
* PostgreSQL: the database named in the URL (e.g. ``licusage_bench``), created when missing; its
  parameters are kept in the database's COMMENT. A database whose comment does not come from
  this tool is never touched.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from licusage import bulk, db

CACHE = Path(__file__).parent / ".cache"
MARKER = "licusage-benchmark-store"


class StoreError(Exception):
    """The URL names something the benchmark must not overwrite."""


@dataclass(frozen=True)
class StoreSpec:
    users: int
    active: int
    history: int
    days: int = 365
    seed: int = 0

    @property
    def key(self) -> str:
        return f"u{self.users}-a{self.active}-h{self.history}-d{self.days}-s{self.seed}"


FULL = StoreSpec(users=20_000, active=100_000, history=2_000_000)
QUICK = StoreSpec(users=300, active=2_000, history=20_000, days=30)


@dataclass
class Store:
    url: str
    spec: StoreSpec
    built_in: float | None  # seconds, when this run built it
    now: datetime  # the generator's "now"


def default_url(spec: StoreSpec) -> str:
    return f"sqlite:///{CACHE / f'large-{spec.key}.sqlite'}"


def _params(spec: StoreSpec, now: datetime) -> dict[str, object]:
    return {"marker": MARKER, **asdict(spec), "now": now.isoformat()}


def _matches(found: dict[str, object] | None, spec: StoreSpec) -> bool:
    return bool(found) and all(found.get(k) == v for k, v in asdict(spec).items())  # type: ignore[union-attr]


def _build(engine: Engine, spec: StoreSpec, progress: bool) -> tuple[float, datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    began = time.perf_counter()
    bulk.generate_large(
        engine,
        users=spec.users,
        active=spec.active,
        history=spec.history,
        days=spec.days,
        seed=spec.seed,
        now=now,
        progress=progress,
    )
    return time.perf_counter() - began, now


def _sqlite(url: str, spec: StoreSpec, progress: bool, rebuild: bool) -> Store:
    path = Path(sa.make_url(url).database or "")
    sidecar = path.with_name(path.name + ".params.json")
    found = json.loads(sidecar.read_text()) if sidecar.exists() else None
    if path.exists() and not rebuild and _matches(found, spec) and found is not None:
        return Store(url, spec, None, datetime.fromisoformat(str(found["now"])))
    if path.exists() and (found is None or found.get("marker") != MARKER):
        raise StoreError(f"{path} exists and is not a benchmark store; choose another file")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".building")
    for leftover in (partial, *[partial.with_name(partial.name + s) for s in ("-wal", "-shm")]):
        leftover.unlink(missing_ok=True)
    engine = db.connect(f"sqlite:///{partial}")
    try:
        seconds, now = _build(engine, spec, progress)
    finally:
        engine.dispose()
    sidecar.unlink(missing_ok=True)
    os.replace(partial, path)
    sidecar.write_text(json.dumps(_params(spec, now)))
    return Store(url, spec, seconds, now)


def _postgres(url: str, spec: StoreSpec, progress: bool, rebuild: bool) -> Store:
    target = sa.make_url(url)
    name = target.database
    if not name:
        raise StoreError("the PostgreSQL URL must name a database, e.g. .../licusage_bench")
    admin = db.create_engine(
        target.set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            comment = conn.execute(
                sa.text(
                    "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
                    " WHERE datname = :n"
                ),
                {"n": name},
            ).scalar()
            found = None
            if comment:
                try:
                    found = json.loads(comment)
                except ValueError:
                    found = None
            if exists and (found is None or found.get("marker") != MARKER):
                raise StoreError(f"database {name!r} exists and is not a benchmark store")
            if exists and not rebuild and _matches(found, spec) and found is not None:
                return Store(url, spec, None, datetime.fromisoformat(str(found["now"])))
            quoted = conn.dialect.identifier_preparer.quote(name)
            if exists:
                conn.exec_driver_sql(f"DROP DATABASE {quoted} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
        engine = db.connect(url)
        try:
            seconds, now = _build(engine, spec, progress)
        finally:
            engine.dispose()
        with admin.connect() as conn:
            text = json.dumps(_params(spec, now)).replace("'", "''")
            conn.exec_driver_sql(f"COMMENT ON DATABASE {quoted} IS '{text}'")
        return Store(url, spec, seconds, now)
    finally:
        admin.dispose()


def prepare(url: str | None, spec: StoreSpec, *, progress: bool, rebuild: bool = False) -> Store:
    """The benchmark store for `spec` at `url` (default: the SQLite cache), built if needed."""
    url = url or default_url(spec)
    backend = sa.make_url(url).get_backend_name()
    if backend == "sqlite":
        return _sqlite(url, spec, progress, rebuild)
    if backend == "postgresql":
        return _postgres(url, spec, progress, rebuild)
    raise StoreError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
