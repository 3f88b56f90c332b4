"""``python -m benchmarks.import_flexlm``: FlexLM debug-log import speed against a line count.

Reads a debug log (default: the shared real Autodesk log, ``../shared/realdata``), optionally
repeated ``--copies`` times into a temporary file to make a larger log, and measures:

* the reference: a plain-Python count of the file's lines (``for line in file: n += 1``,
  binary mode), the least any reader of the file does;
* ``licusage import flexlm-log`` as a library call into a new store (SQLite by default).

It prints lines/s and MB/s of both and the ratio (import time / count time); the target of
issue 11 is a ratio within 5.

Examples::

    python -m benchmarks.import_flexlm
    python -m benchmarks.import_flexlm --copies 20 --repeat 3
    python -m benchmarks.import_flexlm --db postgresql://postgres@127.0.0.1/licusage_bench_import
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from licusage import db
from licusage.models import Base
from licusage.sources.flexlm_log import import_flexlm_log

REALDATA_LOG = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "realdata"
    / "flexlm-debug-autodesk-2016.log"
)


def count_lines(path: Path) -> int:
    """The reference: a plain-Python line count."""
    lines = 0
    with open(path, "rb") as handle:
        for _ in handle:
            lines += 1
    return lines


def _fresh_store(url: str | None, directory: str, run: int) -> str:
    if url is None:
        return f"sqlite:///{directory}/bench-{run}.sqlite"
    engine = db.create_engine(url)
    with engine.begin() as conn:  # an emptied benchmark database
        Base.metadata.drop_all(conn)
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", nargs="?", default=str(REALDATA_LOG), help="a FlexLM debug log")
    parser.add_argument("--copies", type=int, default=1, help="repeat the log N times")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--db", default=None, help="store URL (default: a new SQLite file)")
    args = parser.parse_args(argv)
    source = Path(args.log)
    if not source.is_file():
        print(f"no such log: {source}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as directory:
        path = source
        if args.copies > 1:
            path = Path(directory) / "repeated.log"
            data = source.read_bytes()
            data = data if data.endswith(b"\n") else data + b"\n"
            path.write_bytes(data * args.copies)
        size = os.path.getsize(path)
        count_times, import_times = [], []
        lines = 0
        for run in range(args.repeat):
            started = time.perf_counter()
            lines = count_lines(path)
            count_times.append(time.perf_counter() - started)
            engine = db.connect(_fresh_store(args.db, directory, run))
            started = time.perf_counter()
            import_flexlm_log(engine, [str(path)], server="bench", timezone="Europe/Paris")
            import_times.append(time.perf_counter() - started)
            engine.dispose()
    count_s, import_s = statistics.median(count_times), statistics.median(import_times)
    mb = size / 1e6
    print(f"log: {source} x{args.copies}: {lines} lines, {mb:.2f} MB; store: {args.db or 'SQLite'}")
    print(
        f"line count : {count_s * 1000:9.1f} ms  {lines / count_s:12,.0f} lines/s  {mb / count_s:8.1f} MB/s"
    )
    print(
        f"import     : {import_s * 1000:9.1f} ms  {lines / import_s:12,.0f} lines/s  {mb / import_s:8.1f} MB/s"
    )
    ratio = import_s / count_s
    print(f"ratio      : {ratio:9.1f} x (target <= 5): {'met' if ratio <= 5 else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
