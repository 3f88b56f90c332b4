"""Schema migrations: they build exactly the models' schema; upgrade is idempotent; a store
newer than the code is refused and an older one is sent to ``licusage db upgrade``."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from licusage import catalog, db, migrations, sessions
from licusage.cli import main
from licusage.errors import SchemaMismatch, StoreUnavailable
from licusage.models import Base
from tests.test_hostile import store_checksum

CM = "Case Management"


def schema_diff(engine: Engine) -> list:
    """What Alembic's autogenerate would change to make the store match the models."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def revision_of(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return migrations.store_revision(conn)


@pytest.fixture
def bare(store_url):
    """An engine on an empty database, without any schema made."""
    engine = db.create_engine(store_url)
    yield engine
    engine.dispose()


def test_migrations_build_exactly_the_models_schema(bare, store_url):
    assert db.upgrade(store_url) == (None, migrations.head())
    assert schema_diff(bare) == []
    assert revision_of(bare) == migrations.head()


def test_connect_builds_the_same_schema_stamped_at_head(bare, store_url):
    db.connect(store_url).dispose()
    assert schema_diff(bare) == []
    assert revision_of(bare) == migrations.head()


def test_the_comparison_notices_a_difference(bare, store_url):
    db.upgrade(store_url)
    with bare.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_audit_at")
    assert [change[0] for change in schema_diff(bare)] == ["add_index"]


def test_upgrade_is_idempotent_and_keeps_data(store_url):
    engine = db.connect(store_url)
    catalog.add_pool(engine, CM, catalog.CONCURRENT_USER, 2)
    assert sessions.login(engine, "alice", {CM: catalog.CONCURRENT_USER}).ok
    before = store_checksum(engine)
    head = migrations.head()
    assert db.upgrade(store_url) == (head, head)
    assert db.upgrade(store_url) == (head, head)
    assert store_checksum(engine) == before
    assert schema_diff(engine) == []
    engine.dispose()


def _set_revision(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def test_a_newer_store_is_refused(store_url):
    engine = db.connect(store_url)
    _set_revision(engine, "9999_from_the_future")
    before = store_checksum(engine)
    for create in (True, False):
        with pytest.raises(SchemaMismatch, match="newer than this licusage"):
            db.connect(store_url, create=create)
    with pytest.raises(SchemaMismatch, match="9999_from_the_future"):
        db.upgrade(store_url)
    result = CliRunner().invoke(main, ["db", "upgrade", "--db", store_url])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "newer" in result.stderr
    assert store_checksum(engine) == before
    engine.dispose()


SECOND_REVISION = '''"""A test-only second revision.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_test_denials_reason", "denials", ["reason"])


def downgrade():
    op.drop_index("ix_test_denials_reason", table_name="denials")
'''


@pytest.fixture
def with_second_revision(tmp_path, monkeypatch):
    """The packaged migrations plus a revision 0002 (as a later release would ship)."""
    scripts = tmp_path / "migrations"
    shutil.copytree(
        migrations.SCRIPT_LOCATION, scripts, ignore=shutil.ignore_patterns("__pycache__")
    )
    (scripts / "versions" / "0002_test.py").write_text(SECOND_REVISION)
    monkeypatch.setattr(migrations, "SCRIPT_LOCATION", Path(scripts))
    migrations.script_directory.cache_clear()
    yield "0002"
    monkeypatch.undo()
    migrations.script_directory.cache_clear()


def test_an_older_store_needs_db_upgrade(bare, store_url, with_second_revision):
    migrations.upgrade(bare, "0001")  # a store made by the previous release
    with pytest.raises(SchemaMismatch, match="licusage db upgrade"):
        db.connect(store_url)
    result = CliRunner().invoke(main, ["db", "current", "--db", store_url])
    assert result.exit_code == 0
    assert "0001 (older)" in result.output
    result = CliRunner().invoke(main, ["db", "upgrade", "--db", store_url])
    assert result.exit_code == 0, result.output
    assert "from revision 0001 to 0002" in result.output
    assert revision_of(bare) == "0002"
    with bare.connect() as conn:
        indexes = {index["name"] for index in sa.inspect(conn).get_indexes("denials")}
    assert "ix_test_denials_reason" in indexes
    db.connect(store_url).dispose()
    assert db.upgrade(store_url) == ("0002", "0002")


def test_a_store_from_before_migrations_is_adopted(bare, store_url):
    Base.metadata.create_all(bare)  # what licusage did before it had migrations
    catalog.add_pool(bare, CM, catalog.CONCURRENT_USER, 3)
    before = store_checksum(bare)
    engine = db.connect(store_url)
    assert revision_of(bare) == migrations.INITIAL_REVISION
    assert store_checksum(engine) == before
    engine.dispose()


def test_a_database_with_some_tables_is_refused(bare, store_url):
    Base.metadata.tables["products"].create(bare)
    with pytest.raises(SchemaMismatch, match="not all"):
        db.connect(store_url)


def test_servers_starting_together_create_the_store_once(store_url):
    engines: list[Engine] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait()
        try:
            engines.append(db.connect(store_url))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engines[0].connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    assert versions == [(migrations.head(),)]
    assert schema_diff(engines[0]) == []
    for engine in engines:
        engine.dispose()


def test_cli_upgrade_and_current(store_url):
    runner = CliRunner()
    result = runner.invoke(main, ["db", "current", "--db", store_url])
    assert result.exit_code == 0
    assert "(none) (new)" in result.output
    result = runner.invoke(main, ["db", "upgrade", "--db", store_url])
    assert result.exit_code == 0
    assert f"from revision (empty) to {migrations.head()}" in result.output
    result = runner.invoke(main, ["db", "upgrade", "--db", store_url])
    assert result.exit_code == 0
    assert "nothing to do" in result.output
    result = runner.invoke(main, ["db", "current", "--db", store_url])
    assert f"{migrations.head()} (current)" in result.output


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2",
        "notadb://x",
        "sqlite:////nonexistent-dir/x/y.sqlite",
    ],
)
def test_cli_on_a_store_it_cannot_use(url):
    for command in ("upgrade", "current"):
        result = CliRunner().invoke(main, ["db", command, "--db", url])
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(StoreUnavailable):
        db.upgrade(url)
