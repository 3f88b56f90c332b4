"""What a newcomer runs into: each mistake is exit 2 (or 1, where said) with one line on stderr
and no traceback. Issue 9's list."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from licusage.cli import main


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def one_error_line(result, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("url", "module"),
    [
        ("mysql://u@db.example/licusage", "MySQLdb"),
        ("mysql+pymysql://u@db.example/licusage", "pymysql"),
        ("mssql://u@db.example/licusage", "pyodbc"),
    ],
)
@pytest.mark.parametrize("command", [["sessions"], ["pools"], ["db", "upgrade"]])
def test_a_database_without_its_driver_says_which_and_what_is_supported(url, module, command):
    line = one_error_line(run(*command, "--db", url))
    assert f"the Python module {module}) is not installed" in line
    assert "SQLite" in line
    assert "PostgreSQL" in line
