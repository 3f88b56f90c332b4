"""The suite's warning filters (pyproject.toml): strict for what our code causes, lenient for a
dependency's warning about its own internals. These run under the configured filters."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
import sqlalchemy as sa


def warn_from(module: str, category: type[Warning]) -> list[warnings.WarningMessage]:
    """Raise a warning attributed to `module` (as stacklevel does); the ones only recorded."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn_explicit(
            "probe", category, f"{module.replace('.', '/')}.py", 1, module=module, registry={}
        )
    return seen


@pytest.mark.parametrize("module", ["licusage", "licusage.cli.main", "tests.test_demo"])
@pytest.mark.parametrize("category", [DeprecationWarning, FutureWarning, UserWarning])
def test_a_warning_from_our_code_is_an_error(module, category):
    with pytest.raises(category):
        warn_from(module, category)


@pytest.mark.parametrize("module", ["panel.widgets", "bokeh.models", "click.utils", "pandas.io"])
@pytest.mark.parametrize("category", [DeprecationWarning, FutureWarning])
def test_a_dependency_deprecating_its_own_internals_fails_nothing(module, category):
    assert [w.category for w in warn_from(module, category)] == [category]


def test_a_deprecated_call_in_our_code_is_an_error():
    """Libraries point a deprecation at their caller (stacklevel=2): here, this module."""

    def deprecated_api() -> None:
        warnings.warn("use the new one", FutureWarning, stacklevel=2)

    with pytest.raises(FutureWarning):
        deprecated_api()


def test_sqlalchemy_warnings_about_our_sql_are_errors_even_inside_pandas(tmp_path):
    """A cartesian product in SQL we hand to pandas.read_sql: SQLAlchemy warns from inside
    pandas, and that is still an error."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.sqlite'}")
    meta = sa.MetaData()
    a = sa.Table("a", meta, sa.Column("x", sa.Integer))
    b = sa.Table("b", meta, sa.Column("y", sa.Integer))
    meta.create_all(engine)
    try:
        with engine.connect() as conn, pytest.raises(sa.exc.SAWarning, match="cartesian"):
            pd.read_sql(sa.select(a.c.x, b.c.y), conn)
    finally:
        engine.dispose()
