"""Print pip constraints pinning every dependency of pyproject.toml to its lower bound.

    python .ci/lowest_constraints.py > lowest.txt
    pip install -c lowest.txt -e '.[test]'

Used by .ci/lowest to check that the lowest versions pyproject.toml allows still pass.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)")


def lower_bounds(pyproject: Path, extras: list[str]) -> dict[str, str]:
    """name -> lowest version, for the dependencies and the given extras."""
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    bounds = {}
    for requirement in wanted:
        match = REQUIREMENT.match(requirement)
        if match and match.group(1).lower() != "licusage":
            bounds[match.group(1).lower()] = match.group(3)
    return bounds


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    for name, version in sorted(
        lower_bounds(root / "pyproject.toml", sys.argv[1:] or ["test"]).items()
    ):
        print(f"{name}=={version}")
