"""``python -m benchmarks``: build or reuse the large store, run the cases, print the table.

Examples::

    python -m benchmarks                                   # SQLite, cached in benchmarks/.cache
    python -m benchmarks --db postgresql://postgres@127.0.0.1/licusage_bench
    python -m benchmarks --quick                            # small store: a smoke run
    python -m benchmarks --cases session_usage,logout --repeat 7
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from licusage import db

from . import cases as case_defs
from .store import CACHE, FULL, QUICK, StoreError, StoreSpec, prepare


@dataclass
class Row:
    case: str
    times: list[float]
    reference_times: list[float]
    reference_name: str
    target: case_defs.Target
    problem: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    @property
    def reference_median(self) -> float | None:
        return statistics.median(self.reference_times) if self.reference_times else None

    @property
    def ratio(self) -> float | None:
        ref = self.reference_median
        return None if not ref or not self.times else self.median / ref

    @property
    def met(self) -> bool:
        return (
            self.problem is None and bool(self.times) and self.target.met(self.median, self.ratio)
        )


def _seconds(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "-"
    if unit != "s":
        return f"{value:.2f} {unit}"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def _timed(func: Any) -> tuple[float, Any]:
    began = time.perf_counter()
    result = func()
    return time.perf_counter() - began, result


def run_case(case: case_defs.Case, repeat: int, done: dict[str, Row]) -> Row:
    """Run `case` and its reference `repeat` times, interleaved; check their results agree."""
    row = Row(case.name, [], [], case.reference_name, case.target)
    if case.times_from is not None:
        row.times = list(done[case.times_from].times) if case.times_from in done else []
    for index in range(repeat):
        result = reference = None
        if case.run is not None:
            seconds, result = _timed(case.run)
            row.times.append(seconds)
            if case.after is not None:
                case.after()
        if case.reference is not None and not (case.reference_once and index):
            seconds, reference = _timed(case.reference)
            # a reference that returns a float has measured (and scaled) itself
            row.reference_times.append(reference if isinstance(reference, float) else seconds)
        if index == 0 and case.check is not None and result is not None:
            row.problem = case.check(result, reference)
    return row


def print_table(rows: list[Row], out: Any = sys.stdout) -> None:
    header = ["case", "median", "min", "max", "reference median", "ratio", "target", "met?"]
    table = [header]
    for row in rows:
        table.append(
            [
                row.case,
                _seconds(row.median if row.times else None, row.target.unit),
                _seconds(min(row.times) if row.times else None, row.target.unit),
                _seconds(max(row.times) if row.times else None, row.target.unit),
                _seconds(row.reference_median),
                "-" if row.ratio is None else f"{row.ratio:.2f}",
                row.target.text,
                ("yes" if row.met else "NO") + (f" ({row.problem})" if row.problem else ""),
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for number, line in enumerate(table):
        print(
            "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |",
            file=out,
        )
        if number == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=out)


def _selected(name: str, wanted: list[str] | None) -> bool:
    return not wanted or any(w.strip().lower() in name.lower() for w in wanted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--db", help="store URL (default: a cached SQLite file in benchmarks/.cache)"
    )
    parser.add_argument("--quick", action="store_true", help="a small store: a smoke run")
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per case (default 5; quick 1)"
    )
    parser.add_argument(
        "--cases", help="comma-separated parts of case names to run (e.g. session_usage,logout)"
    )
    parser.add_argument("--rebuild", action="store_true", help="build the store even if cached")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--no-dashboard", action="store_true", help="skip the browser cases")
    args = parser.parse_args(argv)
    spec: StoreSpec = QUICK if args.quick else FULL
    repeat = args.repeat or (1 if args.quick else 5)
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    wanted = args.cases.split(",") if args.cases else None

    try:
        store = prepare(args.db, spec, progress=sys.stderr.isatty(), rebuild=args.rebuild)
    except StoreError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    url = db.resolve_url(store.url)
    backend = url.split(":", 1)[0]
    print(
        f"store: {backend}, {spec.users:,} users, {spec.active:,} active, "
        f"{spec.history:,} history over {spec.days} days"
        + (f" (built in {store.built_in:.1f} s)" if store.built_in else " (cached)")
    )
    engine = db.connect(store.url)
    rows: list[Row] = []
    notes: list[str] = []
    try:
        ctx = case_defs.Context(engine, store.now, args.quick)
        selected = [c for c in case_defs.library_cases(ctx) if _selected(c.name, wanted)]
        done: dict[str, Row] = {}
        for case in selected:
            print(f"running {case.name} ...", file=sys.stderr, flush=True)
            row = run_case(case, repeat, done)
            done[case.name] = row
            rows.append(row)
            notes += case.notes
        if not args.no_dashboard:
            from . import dashboard

            for row in dashboard.run(store.url, ctx, repeat, wanted):
                rows.append(row)
            notes += dashboard.NOTES
    finally:
        case_defs.restore_leftovers(engine)
        engine.dispose()

    print()
    print_table(rows)
    for note in dict.fromkeys(notes):
        print(f"- {note}")
    if store.built_in:
        print(f"- store built in {store.built_in:.1f} s")
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "backend": backend,
        "machine": f"{platform.node()} {platform.machine()} {platform.processor()}",
        "store": spec.__dict__,
        "built_in": store.built_in,
        "rows": [
            {
                "case": r.case,
                "times": r.times,
                "reference_times": r.reference_times,
                "reference": r.reference_name,
                "median": r.median if r.times else None,
                "reference_median": r.reference_median,
                "ratio": r.ratio,
                "target": r.target.text,
                "met": r.met,
                "problem": r.problem,
            }
            for r in rows
        ],
    }
    path = args.json or CACHE / f"results-{backend}{'-quick' if args.quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    failed = [r for r in rows if r.problem]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
