"""How pytest-xdist distributes the suite: one test file (or notebook) per work unit.

Loaded for any path given to pytest (it sits in the rootdir). With ``-n 2`` (``--dist load``)
or ``-n 2 --dist loadgroup`` (the README's command) each file goes whole to one worker:

* a notebook's cells share one kernel, in order: split across workers, later cells would start
  a fresh kernel (``NameError``);
* the ``xdist_group`` marks of the suite (the PostgreSQL contention tests, each browser module)
  stay together, so their servers and connections are never doubled.

xdist's own loadgroup tags each grouped node id with ``@group``; pytest 9.2 no longer lets a
plugin change a node id, so that grouping is silently lost (pytest-xdist issue 1386). File
scheduling (xdist's public ``LoadFileScheduling``) needs no such tag and works with every
version; the check below keeps every ``xdist_group`` inside one file so that it implies the group.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") in ("load", "loadgroup"):
        from xdist.scheduler import LoadFileScheduling

        return LoadFileScheduling(config, log)
    return None


def group_files(items: list[pytest.Item]) -> dict[str, set[str]]:
    """xdist_group name -> the files of the items marked with it."""
    files: dict[str, set[str]] = defaultdict(set)
    for item in items:
        for mark in item.iter_markers("xdist_group"):
            name = mark.args[0] if mark.args else mark.kwargs.get("name", "default")
            files[str(name)].add(item.nodeid.split("::", 1)[0])
    return files


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    spread = {name: sorted(f) for name, f in group_files(items).items() if len(f) > 1}
    if spread:
        raise pytest.UsageError(
            f"xdist_group marks must stay within one file (files are scheduled whole): {spread}"
        )
