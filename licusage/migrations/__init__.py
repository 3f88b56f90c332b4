"""Schema management. Creates a new store's schema; see ``licusage db upgrade``."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from ..models import Base


def ensure_current(engine: Engine) -> None:
    """Create the schema of a new store (tables and indexes that do not exist yet)."""
    Base.metadata.create_all(engine)
