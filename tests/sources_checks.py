"""Checks the license-server source tests share: running the CLI, and bad input refused."""

from __future__ import annotations

from click.testing import CliRunner, Result

from licusage import db
from licusage.cli import main
from tests.test_hostile import store_checksum


def cli(*args: str, input: str | None = None) -> Result:
    """Run ``licusage ARGS`` in-process."""
    return CliRunner().invoke(main, list(args), input=input)


def assert_refused(store_url: str, args: list[str], message: str) -> None:
    """``licusage ARGS --db STORE_URL`` exits 2 with one line on stderr holding `message`, no
    traceback, and leaves every row of the store as it was."""
    engine = db.connect(store_url)
    try:
        before = store_checksum(engine)
        result = cli(*args, "--db", store_url)
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1
        assert message in result.stderr
        assert "Traceback" not in result.output
        assert store_checksum(engine) == before
    finally:
        engine.dispose()
