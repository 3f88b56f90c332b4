"""FlexLM debug logs as a source: the real Autodesk log and hand-made fixtures for the rest.

The expected numbers of the real log were counted apart from licusage, with awk over the file
(see the comments at each figure), never by the code under test.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from licusage import db, queries
from licusage.errors import InvalidInput
from licusage.models import (
    checkouts_t,
    denials_t,
    holds_t,
    pools_t,
    products_t,
    queued_t,
    sessions_t,
)
from licusage.sources.flexlm_log import import_flexlm_log
from licusage.sources.mapping import read_mapping
from tests.helpers import realdata
from tests.sources_checks import assert_refused, cli
from tests.test_hostile import store_checksum

FIXTURES = Path(__file__).parent / "fixtures" / "flexlm"
DETAILS = FIXTURES / "details.log"
AUTODESK = "flexlm-debug-autodesk-2016.log"


def canonical(engine) -> dict[str, list[tuple]]:
    """The store's content without generated ids: what two imports must agree on."""
    s, h, c = sessions_t, holds_t, checkouts_t
    with engine.connect() as conn:
        product = {row.id: row.name for row in conn.execute(sa.select(products_t))}
        return {
            "sessions": sorted(
                tuple(row)
                for row in conn.execute(
                    sa.select(
                        s.c.user_name,
                        s.c.host,
                        s.c.source,
                        s.c.started_at,
                        s.c.last_activity,
                        s.c.ended_at,
                        s.c.end_reason,
                    )
                )
            ),
            "holds": sorted(
                (row[0], row[1], product[row[2]], *row[3:])
                for row in conn.execute(
                    sa.select(
                        s.c.user_name,
                        s.c.started_at,
                        h.c.product_id,
                        h.c.licenses,
                        h.c.granted_at,
                        h.c.released_at,
                    ).join(s, s.c.id == h.c.session_id)
                )
            ),
            "checkouts": sorted(
                tuple(row)
                for row in conn.execute(
                    sa.select(
                        c.c.feature,
                        c.c.user_name,
                        c.c.host,
                        c.c.licenses,
                        c.c.out_at,
                        c.c.in_at,
                        c.c.end_reason,
                    )
                )
            ),
            "denials": sorted(
                tuple(row)
                for row in conn.execute(
                    sa.select(denials_t.c.at, denials_t.c.user_name, denials_t.c.reason)
                )
            ),
            "queued": sorted(
                tuple(row) for row in conn.execute(sa.select(queued_t.c.at, queued_t.c.feature))
            ),
            "pools": sorted(
                tuple(row)
                for row in conn.execute(sa.select(pools_t.c.product_id, pools_t.c.counting))
            ),
        }


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --------------------------------------------------------------------------- the fixtures


def test_every_detail_of_a_debug_log(engine):
    result = import_flexlm_log(engine, [str(DETAILS)], server="lic1")
    counts = result.counts
    assert counts is not None
    assert (counts.checkouts, counts.checkins, counts.unmatched) == (7, 3, 1)
    assert (counts.denials, counts.queued, counts.restarts) == (2, 1, 4)
    assert (counts.sessions_started, counts.sessions_ended) == (5, 4)
    assert result.lines == 24
    store = canonical(engine)
    # midnight wraps to 3 March; the restart at 03:10 ends every session then open
    assert store["sessions"] == sorted(
        [
            ("ana", "ws12", "lic1", at("2026-03-02 23:55"), at("2026-03-03 03:10"),
             at("2026-03-03 03:10"), "server_restart"),
            ("ana", "ws12", "lic1", at("2026-03-03 09:00"), at("2026-03-03 09:00"), None, None),
            ("bo", "ws3", "lic1", at("2026-03-03 00:05"), at("2026-03-03 03:10"),
             at("2026-03-03 03:10"), "server_restart"),
            ("bo", "ws3", "lic1", at("2026-03-03 03:15"), at("2026-03-03 04:00"),
             at("2026-03-03 04:00"), "checked_in"),
            ("dee", "ws9", "lic1", at("2026-03-03 02:00"), at("2026-03-03 03:10"),
             at("2026-03-03 03:10"), "server_restart"),
        ]
    )  # fmt: skip
    ana = at("2026-03-02 23:55")
    # a count that changes is a released hold and a new one: the history of counts is exact
    assert [h for h in store["holds"] if h[:2] == ("ana", ana)] == [
        ("ana", ana, "mesher", 1, at("2026-03-02 23:58"), at("2026-03-03 01:30")),
        ("ana", ana, "solver", 2, at("2026-03-03 00:20"), at("2026-03-03 03:10")),
        ("ana", ana, "solver", 8, at("2026-03-02 23:55"), at("2026-03-03 00:10")),
    ]
    reasons = {(c[0], c[1], c[4]): c[6] for c in store["checkouts"]}
    assert reasons[("mesher", "ana", at("2026-03-02 23:58"))] == "idle_timeout"  # (INACTIVE)
    assert reasons[("solver", "ana", at("2026-03-03 00:20"))] == "server_restart"
    assert store["denials"] == [
        (at("2026-03-03 00:06"), "cy", "pool_full"),
        (at("2026-03-03 00:07"), "cy", "unsupported"),
    ]
    assert store["queued"] == [(at("2026-03-03 00:06"), "solver")]
    with engine.connect() as conn:
        details = conn.execute(sa.select(denials_t.c.detail).order_by(denials_t.c.at)).scalars()
        assert list(details) == [
            "Licensed number of users already reached. (-4,342)",
            "License server system does not support this feature. (-18,327)",
        ]
    # the features are pools of their own, floating, seats unknown (not 0)
    pools = queries.pool_usage(engine).set_index("product")
    assert sorted(pools.index) == ["mesher", "nosuch", "solver"]
    assert pools["seats"].isna().all()
    assert pools["free"].isna().all()
    assert set(pools["counting"]) == {"per_checkout"}
    assert pools.loc["mesher", "in_use"] == 1  # ana's checkout of 09:00 is still out
    assert pools.loc["solver", "in_use"] == 0
    usage = queries.session_usage(engine)
    assert list(usage["user"]) == ["ana"]
    assert usage["mesher"].tolist() == ["Floating"]


def test_timezone_converts_the_servers_local_times_to_utc(engine):
    import_flexlm_log(engine, [str(DETAILS)], server="lic1", timezone="Europe/Paris")
    with engine.connect() as conn:
        first = conn.execute(sa.select(sa.func.min(sessions_t.c.started_at))).scalar_one()
    assert db_time(first) == at("2026-03-02 22:55")  # 23:55 in Paris (UTC+1 in March)


def db_time(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def test_a_mapping_groups_features_into_products(engine, tmp_path):
    mapping = tmp_path / "map.toml"
    mapping.write_text(
        (FIXTURES / "mapping.toml").read_text() + '\n[features.nosuch]\nproduct = "Solver"\n'
    )
    import_flexlm_log(engine, [str(DETAILS)], server="lic1", mapping=read_mapping(mapping))
    pools = queries.pool_usage(engine)
    assert sorted(zip(pools["product"], pools["license_type"], strict=True)) == [
        ("Mesher", "Token"),
        ("Solver", "Floating"),
    ]


def test_reimporting_changes_nothing_and_a_grown_log_adds_only_its_new_lines(engine, tmp_path):
    lines = DETAILS.read_bytes().splitlines(keepends=True)
    log = tmp_path / "lmgrd.log"
    # the first part ends inside a line: that line is read once it is complete
    log.write_bytes(b"".join(lines[:13]) + lines[13][:12])
    first = import_flexlm_log(engine, [str(log)], server="lic1")
    assert first.lines == 13
    before = store_checksum(engine)
    again = import_flexlm_log(engine, [str(log)], server="lic1")
    assert (again.lines, again.skipped_bytes) == (0, len(b"".join(lines[:13])))
    assert store_checksum(engine) == before
    log.write_bytes(b"".join(lines))
    grown = import_flexlm_log(engine, [str(log)], server="lic1")
    assert grown.lines == len(lines) - 13
    two_steps = canonical(engine)
    # the same log imported at once into another store gives the same content
    other = db.connect(f"sqlite:///{tmp_path / 'one-step.sqlite'}")
    import_flexlm_log(other, [str(DETAILS)], server="lic1")
    assert canonical(other) == two_steps
    other.dispose()
    assert import_flexlm_log(engine, [str(DETAILS)], server="lic1").lines == 0


@pytest.mark.parametrize(
    ("files", "extra", "message"),
    [
        ([FIXTURES / "not-a-log.txt"], [], "is not a FlexLM debug log"),
        ([FIXTURES / "truncated.log"], [], "line 3: truncated or malformed OUT line"),
        ([DETAILS], ["--map", str(FIXTURES / "mapping-solver-only.toml")], "'mesher' is not in"),
        ([FIXTURES / "no-such-file.log"], [], "cannot read"),
        ([FIXTURES], [], "cannot read"),
        ([DETAILS], ["--timezone", "Mars/Olympus"], "unknown time zone"),
        ([DETAILS], ["--map", str(FIXTURES / "details.log")], "is not valid TOML"),
        ([DETAILS, FIXTURES / "truncated.log"], [], "truncated"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_changes_nothing(store_url, files, extra, message):
    engine = db.connect(store_url)
    import_flexlm_log(engine, [str(DETAILS)], server="other")
    engine.dispose()
    args = ["import", "flexlm-log", *map(str, files), "--server", "lic1", *extra]
    assert_refused(store_url, args, message)


def test_the_cli_imports_and_reports(store_url):
    result = cli("import", "flexlm-log", str(DETAILS), "--server", "lic1", "--db", store_url)
    assert result.exit_code == 0, result.output
    assert "7 checkouts, 3 check-ins, 5 sessions started, 4 ended" in result.output
    assert "2 denials, 1 queued, 4 restarts" in result.output
    result = cli("import", "flexlm-log", str(DETAILS), "--server", "lic1", "--db", store_url)
    assert "Read 0 new lines" in result.output


def test_a_server_name_cannot_be_the_apps_source(sqlite_engine):
    with pytest.raises(InvalidInput, match="name the server"):
        import_flexlm_log(sqlite_engine, [str(DETAILS)], server="app")


# --------------------------------------------------------------------------- the real log


def test_the_real_autodesk_log(engine, tmp_path):
    path = realdata(AUTODESK)
    result = import_flexlm_log(engine, [str(path)], server="SERVER01", timezone="Europe/Paris")
    counts = result.counts
    assert counts is not None
    # grep -c ' OUT: ' and ' IN: ': 1,918 each, every IN matching an earlier OUT
    assert (counts.checkouts, counts.checkins, counts.unmatched) == (1918, 1918, 0)
    # the lmgrd banner and the vendor daemon's "Server started on", both at the start
    assert counts.restarts == 2
    # awk: a user@host's OUT while none of theirs is out starts a session -> 916, all ended;
    # 121 of them ended by an (INACTIVE) check-in
    assert (counts.sessions_started, counts.sessions_ended) == (916, 916)
    with engine.connect() as conn:
        reasons = dict(
            conn.execute(
                sa.select(sessions_t.c.end_reason, sa.func.count()).group_by(
                    sessions_t.c.end_reason
                )
            ).all()
        )
        users = conn.execute(
            sa.select(sa.func.count(sa.distinct(sessions_t.c.user_name)))
        ).scalar_one()
        pairs = conn.execute(sa.select(sessions_t.c.user_name, sessions_t.c.host).distinct()).all()
        checkouts = dict(
            conn.execute(
                sa.select(checkouts_t.c.feature, sa.func.count()).group_by(checkouts_t.c.feature)
            ).all()
        )
    assert reasons == {"checked_in": 795, "idle_timeout": 121}
    # the file has 11,800 lines; the last has no newline yet, so it waits for the next import
    assert result.lines == 11799
    # grep -o 'OUT: "[^"]*" [^ ]*': 69 distinct user@host, 68 distinct users
    assert (users, len(pairs)) == (68, 69)
    # grep -o 'OUT: "[^"]*"' | sort | uniq -c
    assert checkouts == {
        "64300ACD_F": 952,
        "85730ACD_2012_0F": 938,
        "86295ACD_2015_0F": 14,
        "65400MAP_F": 7,
        "85776MAP_2012_0F": 7,
    }
    # nothing is out at the end of the log: no active session, every pool at 0, seats unknown
    assert queries.session_usage(engine).empty
    pools = queries.pool_usage(engine)
    assert pools["in_use"].sum() == 0
    assert pools["seats"].isna().all()
    before = store_checksum(engine)
    assert import_flexlm_log(engine, [str(path)], server="SERVER01").lines == 0
    assert store_checksum(engine) == before
