"""kill -9 in the middle of ``licusage import flexlm-log``: an import is all or nothing.

A generated FlexLM debug log grows by one day at a time (one *batch*: the lines an import adds
to what the store has, resumed at the offset ``imported_files`` records). The real CLI imports
each day in a process of its own; 12 times per engine that process is killed with SIGKILL at a
random moment: at a random point of its progress bar (the write transaction is open from
its first showing), or, one time in four, from 90 % read on (the last lines, the last writes,
the commit). After
each kill the store equals, row for row, either the store before that day or the store after
it (taken from an uninterrupted import of the same days); importing again then completes the
day. At the end the store equals a one-shot import of the whole log into a fresh store.

The figures (kills rolled back, committed, process gone before the kill; durations) are printed
(``pytest -s``).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from licusage import db
from licusage.models import audit_t, imported_files_t, pool_seats_t
from tests.helpers import fresh_pg_database
from tests.test_sources_flexlm import canonical

pytestmark = pytest.mark.slow

KILLS = 12
SERVER = "lic1"
FEATURES = ("solver", "mesher", "viewer", "post")
START = date(2026, 3, 2)


# --------------------------------------------------------------------------- the log


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:2d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _stamp(day: date) -> str:
    return f"{day.month}/{day.day}/{day.year}"


def flexlm_days(days: int, events: int, seed: int = 15) -> list[bytes]:
    """A FlexLM debug log of `days` days, one bytes string per day, `events` events each.

    The format is the one of ``tests/fixtures/flexlm/details.log``: the lmgrd banner (with the
    date) and the vendor daemon's start first, then ``TIMESTAMP`` day markers; ``OUT``/``IN``
    with ``(N licenses)`` and ``(INACTIVE)``, ``DENIED``, ``QUEUED``, ``UNSUPPORTED``, check-ins
    of checkouts never seen, and checkouts still out across midnight (the next batch ends them).
    """
    rng = random.Random(seed)
    users = [(f"user{i:03d}", f"ws{i % 37:02d}") for i in range(150)]
    out: list[tuple[str, str, str, int]] = []  # (feature, user, host, licenses) still out
    chunks: list[bytes] = []
    for number in range(days):
        day = START + timedelta(days=number)
        lines: list[str] = []
        if number == 0:
            lines += [
                f" 0:00:00 (lmgrd) Server's System Date and Time: Mon Mar 02 {day.year} "
                "00:00:00 UTC",
                " 0:00:01 (lmgrd) FlexNet Licensing (v11.16.2.0 build 123 x64_lsb) started on "
                f"{SERVER} (linux) ({_stamp(day)})",
                " 0:00:02 (mech) Server started on lic1 for:\tsolver\tmesher\tviewer\tpost",
                ' 0:00:03 (mech) UNSUPPORTED: "nosuch" (PORT_AT_HOST_PLUS   ) user000@ws00  '
                "(License server system does not support this feature. (-18,327))",
            ]
            # every feature is seen on the first day: the pools (and product ids) exist before
            # the first kill
            for feature in FEATURES:
                lines.append(f' 0:00:04 (mech) OUT: "{feature}" user000@ws00  ')
                out.append((feature, "user000", "ws00", 1))
        else:
            lines.append(f" 0:00:00 (lmgrd) TIMESTAMP {_stamp(day)}")
        times = sorted(rng.randrange(5, 86_400) for _ in range(events))
        for at in times:
            when = f"{_clock(at)} (mech)"
            roll = rng.random()
            if out and (roll < 0.45 or len(out) > 400):
                feature, user, host, licenses = out.pop(rng.randrange(len(out)))
                count = f"({licenses} licenses)" if licenses > 1 else ""
                idle = "(INACTIVE)" if rng.random() < 0.1 else ""
                lines.append(f'{when} IN: "{feature}" {user}@{host}  {count}{idle}'.rstrip())
            elif roll < 0.92:
                feature = rng.choice(FEATURES)
                user, host = rng.choice(users)
                licenses = rng.choice((1, 1, 1, 2, 4))
                count = f"({licenses} licenses)" if licenses > 1 else ""
                lines.append(f'{when} OUT: "{feature}" {user}@{host}  {count}')
                out.append((feature, user, host, licenses))
            elif roll < 0.96:
                user, host = rng.choice(users)
                words = "Licensed number of users already reached. (-4,342)"
                lines.append(f'{when} DENIED: "{rng.choice(FEATURES)}" {user}@{host}  ({words})')
                if rng.random() < 0.5:
                    lines.append(f'{when} QUEUED: "solver" {user}@{host}  ({words})')
            else:  # returned, but its checkout is older than the log
                user, host = rng.choice(users)
                lines.append(f'{when} IN: "{rng.choice(FEATURES)}" {user}@{host}  ')
        chunks.append("".join(line + "\n" for line in lines).encode())
    return chunks


# --------------------------------------------------------------------------- the store


def snapshot(engine) -> dict[str, object]:
    """Everything an import writes, without generated ids or the time it ran."""
    store: dict[str, object] = dict(canonical(engine))
    with engine.connect() as conn:
        store["audit"] = sorted(
            tuple(row)
            for row in conn.execute(
                sa.select(audit_t.c.action, sa.func.count()).group_by(audit_t.c.action)
            )
        )
        store["seat history"] = conn.execute(
            sa.select(sa.func.count()).select_from(pool_seats_t)
        ).scalar_one()
        store["files"] = sorted(
            tuple(row)
            for row in conn.execute(
                sa.select(
                    imported_files_t.c.offset,
                    imported_files_t.c.lines,
                    imported_files_t.c.fingerprint,
                    imported_files_t.c.state,
                )
            )
        )
    return store


def figures(store: dict[str, object]) -> str:
    sizes = {name: len(rows) for name, rows in store.items() if isinstance(rows, list)}
    return ", ".join(f"{size} {name}" for name, size in sizes.items())


def _command(log: Path, url: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "licusage",
        "import",
        "flexlm-log",
        str(log),
        "--server",
        SERVER,
        "--db",
        url,
        "--progress",
    ]


class Import:
    """``licusage import flexlm-log --progress`` running in a process of its own."""

    def __init__(self, log: Path, url: str) -> None:
        self.process = subprocess.Popen(
            _command(log, url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.shown = b""  # the progress bar so far
        self.percent = -1  # the last percentage it showed (-1: not begun)
        # the bar appears once the store is open and the write transaction begun
        assert self.progress_reaches(0), f"the import ended before it began: {self.shown!r}"

    def progress_reaches(self, percent: float) -> bool:
        """Read the progress bar until it shows `percent` % read; False when the import ended
        first (the bar is gone once every line is read)."""
        assert self.process.stderr is not None
        while self.percent < percent:
            chunk = os.read(self.process.stderr.fileno(), 4096)
            if not chunk:
                return False
            self.shown += chunk
            shown = PERCENT.findall(self.shown[-4096:].decode(errors="replace"))
            if b"importing" in self.shown:
                self.percent = max(self.percent, 0)
            if shown:
                self.percent = max(self.percent, int(shown[-1]))
        return True


PERCENT = re.compile(r"(\d+)%\|")


def _run(log: Path, url: str) -> str:
    result = subprocess.run(
        [*_command(log, url)[:-1], "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def three_stores(request, tmp_path) -> Iterator[tuple[str, str, str]]:
    """URLs of three empty stores on one engine: reference, killed, one-shot."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            urls = [f"sqlite:///{tmp_path / f'{name}.sqlite'}" for name in ("r", "k", "o")]
        else:
            urls = [stack.enter_context(fresh_pg_database()) for _ in range(3)]
        for url in urls:  # created here: the first import's process only imports
            db.connect(url).dispose()
        yield urls[0], urls[1], urls[2]


def test_kill_9_in_a_flexlm_import_leaves_nothing_or_the_whole_batch(three_stores, tmp_path):
    reference_url, killed_url, oneshot_url = three_stores
    days = flexlm_days(KILLS + 1, events=16_000)
    reference, killed = (db.connect(url) for url in (reference_url, killed_url))
    try:
        # the uninterrupted import, a day at a time: the states a kill may leave, the durations
        expected: list[dict[str, object]] = []
        durations: list[float] = []
        log = tmp_path / "reference.log"
        with log.open("ab") as handle:
            for day in days:
                handle.write(day)
                handle.flush()
                started = time.monotonic()
                reference_import = Import(log, reference_url)
                reference_import.progress_reaches(101)  # to its end (the pipe never fills)
                assert reference_import.process.wait(timeout=600) == 0
                durations.append(time.monotonic() - started)
                expected.append(snapshot(reference))
        # the same days, each import killed at a random moment, then imported again
        log = tmp_path / "killed.log"
        log.write_bytes(days[0])
        _run(log, killed_url)
        assert snapshot(killed) == expected[0]
        rng = random.Random(15)
        outcomes = {"rolled back": 0, "committed": 0, "finished before the kill": 0}
        for number in range(1, KILLS + 1):
            with log.open("ab") as handle:
                handle.write(days[number])
            running = Import(log, killed_url)
            # a random moment: at a random point of the reading, or (one time in four) in the
            # last lines read, the last writes and the commit (from 90 % read on)
            if rng.random() < 0.75:
                running.progress_reaches(rng.uniform(0, 90))  # the bar's last showing: ~95 %
            else:
                running.progress_reaches(90)
                time.sleep(rng.uniform(0, durations[number] * 0.4))
            process = running.process
            finished = process.poll() is not None
            if not finished:
                os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            state = snapshot(killed)
            assert state in (expected[number - 1], expected[number]), f"day {number}: partial"
            if finished:
                outcomes["finished before the kill"] += 1
            elif state == expected[number]:
                outcomes["committed"] += 1
            else:
                outcomes["rolled back"] += 1
            _run(log, killed_url)  # completes the day, or reads nothing new
            assert snapshot(killed) == expected[number]
        # a one-shot import of the whole log into a fresh store: the same store
        whole = tmp_path / "whole.log"
        whole.write_bytes(b"".join(days))
        started = time.monotonic()
        _run(whole, oneshot_url)
        oneshot_duration = time.monotonic() - started
        oneshot = db.connect(oneshot_url)
        try:
            final = snapshot(killed)
            assert final == snapshot(oneshot)
        finally:
            oneshot.dispose()
        print(
            f"\nkill -9 of a FlexLM import x{KILLS} ({killed.dialect.name}): "
            + ", ".join(f"{count} {what}" for what, count in outcomes.items())
            + f"; a day's import {min(durations[1:]):.2f}-{max(durations[1:]):.2f} s"
            + f", one-shot {oneshot_duration:.2f} s; final store: {figures(final)}"
        )
        assert outcomes["rolled back"] >= 1  # at least one kill fell inside the transaction
    finally:
        reference.dispose()
        killed.dispose()
