"""``python -m benchmarks.api``: check-outs per second and heartbeat latency through the HTTP API.

Starts ``licusage serve`` on a fresh store (a temporary SQLite file, or a new database on the
PostgreSQL server of ``--pg``, dropped afterwards), makes a pool with enough seats and a
``sessions:write`` token, then, from `--clients` concurrent HTTP clients (threads, one httpx
connection each, all on 127.0.0.1):

1. check-outs: `--checkouts` ``POST /api/v1/sessions`` (distinct users), wall time -> per second;
2. heartbeats: `--heartbeats` ``POST /api/v1/sessions/{id}/heartbeat`` over those sessions,
   each timed -> p50 / p99 latency.

Examples::

    python -m benchmarks.api                        # SQLite, 16 clients
    python -m benchmarks.api --pg postgresql://postgres@127.0.0.1:5432/postgres
    python -m benchmarks.api --checkouts 200 --heartbeats 400 --clients 4   # quick
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa

from licusage import catalog, db, tokens

PRODUCT, TYPE = "Case Management", "Concurrent User"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _store(pg: str | None) -> Iterator[str]:
    if pg is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        return
    name = f"licusage_apibench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(db.create_engine(pg).url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def _server(url: str, timeout: float = 180) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "licusage", "serve", "--db", url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/api/v1/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("licusage serve did not start")
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(pg: str | None, clients: int, checkouts: int, heartbeats: int) -> dict[str, object]:
    """Measure and return the figures (see the module's notes)."""
    with _store(pg) as url:
        engine = db.connect(url)
        catalog.add_pool(engine, PRODUCT, TYPE, checkouts + clients + 10)
        token = tokens.add_token(engine, "bench", tokens.SESSIONS_WRITE)
        engine.dispose()
        with _server(url) as base:
            headers = {"Authorization": f"Bearer {token}"}
            local = threading.local()

            def client() -> httpx.Client:
                if not hasattr(local, "client"):
                    local.client = httpx.Client(base_url=base, headers=headers, timeout=120)
                return local.client

            def check_out(i: int) -> int:
                response = client().post(
                    "/api/v1/sessions",
                    json={"user": f"bench{i:06d}", "host": "bench", "licenses": {PRODUCT: TYPE}},
                )
                response.raise_for_status()
                return int(response.json()["session_id"])

            def heartbeat(session_id: int) -> float:
                start = time.perf_counter()
                response = client().post(f"/api/v1/sessions/{session_id}/heartbeat")
                elapsed = time.perf_counter() - start
                assert response.json() == {"state": "active"}, response.text
                return elapsed

            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                list(pool.map(check_out, range(-clients, 0)))  # warm up connections
                start = time.perf_counter()
                ids = list(pool.map(check_out, range(checkouts)))
                checkout_seconds = time.perf_counter() - start
                targets = [ids[i % len(ids)] for i in range(heartbeats)]
                latencies = list(pool.map(heartbeat, targets))
    return {
        "store": "postgresql" if pg else "sqlite",
        "clients": clients,
        "checkouts": checkouts,
        "checkouts_per_second": round(checkouts / checkout_seconds, 1),
        "heartbeats": heartbeats,
        "heartbeat_p50_ms": round(1000 * statistics.median(latencies), 1),
        "heartbeat_p99_ms": round(1000 * _percentile(latencies, 0.99), 1),
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", metavar="SERVER_URL", help="PostgreSQL server (a database is made)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--checkouts", type=int, default=2000)
    parser.add_argument("--heartbeats", type=int, default=4000)
    args = parser.parse_args(argv)
    result = run(args.pg, args.clients, args.checkouts, args.heartbeats)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
