"""Keep each notebook's cells on one pytest-xdist worker: they share one kernel, in order.

With this, ``pytest --nbval notebooks/ -n 2 --dist loadgroup`` runs the notebooks in parallel,
one notebook per worker (``--dist loadfile`` does the same without this file).
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.xdist_group(name=item.path.name))
