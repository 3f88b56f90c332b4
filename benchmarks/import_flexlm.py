"""``python -m benchmarks.import_flexlm``: FlexLM debug-log import speed against a line count.

Reads a debug log (default: the shared real Autodesk log, ``../shared/realdata``), optionally
made larger in a temporary directory (``--copies N`` or ``--lines N``: the log written again
and again, each copy's dates a year after the last one's, so the large log is one long history
of the same server; written copy by copy, never held in memory), and measures:

* the reference: a plain-Python count of the file's lines (``for line in file: n += 1``,
  binary mode), the least any reader of the file does;
* two floors, what any import of the file must do at least, with nothing written:
  ``read + sha256`` (an import fingerprints every byte it reads, to know the log again) and
  ``+ decode + pattern`` (that, plus decoding the text and the one pattern
  :mod:`licusage.sources.flexlm_log` matches each line with, nothing done with the matches);
* a third floor, what the store costs: ``store the rows`` (after an import, its sessions, holds
  and checkouts read back and written again with :func:`licusage.db.insert_rows`, the import's
  own bulk write, in one transaction that is rolled back): the database's share of an import;
* ``licusage import flexlm-log`` as a library call into a new store (SQLite by default), wall
  time and the process's CPU time (the CPU time is what other processes' load leaves alone).

It prints lines/s and MB/s of each and the ratio (time / line-count time); the target of issue
11 is an import within 5x. ``--memory`` also imports once under :mod:`tracemalloc` and prints the
peak of memory allocated during the import (bounded: it does not grow with the log).

Examples::

    python -m benchmarks.import_flexlm
    python -m benchmarks.import_flexlm --lines 1000000 --repeat 1 --memory
    python -m benchmarks.import_flexlm --db postgresql://postgres@127.0.0.1/licusage_bench_import
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from licusage import db
from licusage.models import Base, checkouts_t, holds_t, sessions_t
from licusage.sources.files import BLOCK
from licusage.sources.flexlm_log import LINES, import_flexlm_log

REALDATA_LOG = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "realdata"
    / "flexlm-debug-autodesk-2016.log"
)
# the years of the log's dates: 3/30/2016, Wed Mar 30 2016
YEAR = re.compile(rb"(?:(?<=\d/)|(?<=[A-Z][a-z]{2} \d\d ))\d{4}(?!\d)")


def count_lines(path: Path) -> int:
    """The reference: a plain-Python line count."""
    lines = 0
    with open(path, "rb") as handle:
        for _ in handle:
            lines += 1
    return lines


def read_and_hash(path: Path) -> int:
    """A floor: read the file in the import's blocks and fingerprint it (sha256)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            hasher.update(block)
    return len(hasher.hexdigest())


def read_hash_and_match(path: Path) -> int:
    """A floor: read + sha256, decode each block and match the debug log's line pattern over
    it (as the import does), nothing done with the matches."""
    hasher = hashlib.sha256()
    matched = 0
    carry = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(BLOCK):
            data = carry + chunk
            end = data.rfind(b"\n") + 1
            carry = data[end:]
            hasher.update(data[:end])
            for _ in LINES.finditer(data[:end].decode("utf-8", "replace")):
                matched += 1
    return matched


def write_large_log(source: Path, target: Path, copies: int) -> None:
    """`copies` copies of the log `source` into `target`, copy k's years shifted by k."""
    data = source.read_bytes()
    data = data if data.endswith(b"\n") else data + b"\n"
    with open(target, "wb") as handle:
        for copy in range(copies):
            handle.write(YEAR.sub(lambda m, k=copy: b"%d" % (int(m.group(0)) + k), data))


def _fresh_store(url: str | None, directory: str, run: int) -> str:
    if url is None:
        return f"sqlite:///{directory}/bench-{run}.sqlite"
    engine = db.create_engine(url)
    with engine.begin() as conn:  # an emptied benchmark database
        Base.metadata.drop_all(conn)
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    return url


def _last_store(url: str | None, directory: str, runs: int) -> str:
    """The store the last of `runs` imports wrote (see :func:`_fresh_store`)."""
    return url if url is not None else f"sqlite:///{directory}/bench-{runs - 1}.sqlite"


def _timed(function: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def store_rows_again(url: str, repeat: int) -> float:
    """A floor: seconds (median of `repeat`) to write the sessions, holds and checkouts an
    import stored at `url` again, by the import's own bulk insert, each time rolled back."""
    tables = (sessions_t, holds_t, checkouts_t)  # parents first
    engine = db.connect(url)
    try:
        with engine.connect() as conn:
            stored = {}
            for table in tables:
                names = [column.name for column in table.columns]
                rows = conn.execute(sa.select(table).order_by(table.c.id)).all()
                stored[table] = (names, [tuple(row) for row in rows])
            conn.rollback()
            times = []
            for _ in range(repeat):
                with conn.begin() as transaction:
                    for table in reversed(tables):
                        conn.execute(table.delete())
                    started = time.perf_counter()
                    for table in tables:
                        db.insert_rows(conn, table, *stored[table])
                    times.append(time.perf_counter() - started)
                    transaction.rollback()
        return statistics.median(times)
    finally:
        engine.dispose()


def _import(url: str, path: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one import of `path` into the store at `url`."""
    engine = db.connect(url)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        import_flexlm_log(engine, [str(path)], server="bench", timezone="Europe/Paris")
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", nargs="?", default=str(REALDATA_LOG), help="a FlexLM debug log")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--copies", type=int, default=1, help="the log N times, a year apart")
    size.add_argument("--lines", type=int, default=None, help="copies enough for N lines")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--db", default=None, help="store URL (default: a new SQLite file)")
    parser.add_argument("--memory", action="store_true", help="also the import's peak memory")
    args = parser.parse_args(argv)
    source = Path(args.log)
    if not source.is_file():
        print(f"no such log: {source}", file=sys.stderr)
        return 2
    copies = args.copies
    if args.lines is not None:
        copies = max(1, -(-args.lines // max(count_lines(source), 1)))
    with tempfile.TemporaryDirectory() as directory:
        path = source
        if copies > 1:
            path = Path(directory) / "large.log"
            write_large_log(source, path, copies)
        size_mb = os.path.getsize(path) / 1e6
        lines = count_lines(path)
        count_s = _timed(lambda: count_lines(path), args.repeat)
        floors = {
            "read + sha256": _timed(lambda: read_and_hash(path), args.repeat),
            "+ decode + pattern": _timed(lambda: read_hash_and_match(path), args.repeat),
        }
        runs = [_import(_fresh_store(args.db, directory, run), path) for run in range(args.repeat)]
        floors["store the rows"] = store_rows_again(
            _last_store(args.db, directory, args.repeat), args.repeat
        )
        import_s = statistics.median(wall for wall, _ in runs)
        cpu_s = statistics.median(cpu for _, cpu in runs)
        peak = None
        if args.memory:
            url = _fresh_store(args.db, directory, args.repeat)
            tracemalloc.start()
            _import(url, path)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    print(
        f"log: {source} x{copies}: {lines} lines, {size_mb:.2f} MB; "
        f"store: {args.db or 'SQLite'}; load average {os.getloadavg()[0]:.1f}"
    )

    def show(what: str, seconds: float) -> None:
        print(
            f"{what:25s}: {seconds * 1000:9.1f} ms {lines / seconds:12,.0f} lines/s "
            f"{size_mb / seconds:8.1f} MB/s {seconds / count_s:8.1f} x"
        )

    show("line count", count_s)
    for what, seconds in floors.items():
        show(f"floor: {what}", seconds)
    show("import (wall)", import_s)
    show("import (CPU)", cpu_s)
    ratio = import_s / count_s
    print(
        f"ratio (wall)             : {ratio:9.1f} x (target <= 5): {'met' if ratio <= 5 else 'not met'}"
    )
    if peak is not None:
        print(f"peak memory of one import (tracemalloc): {peak / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
