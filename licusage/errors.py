"""Exceptions the library raises, so callers can tell bad input from a broken store."""

from __future__ import annotations


class LicusageError(Exception):
    """Base class of every error licusage raises on purpose."""


class InvalidInput(LicusageError, ValueError):
    """An argument is malformed (wrong type, negative duration, empty actor, ...)."""


class UnknownProduct(InvalidInput):
    """A product name that is not in the store's catalogue."""


class UnknownLicenseType(InvalidInput):
    """A license type name that the store does not know (for that product)."""


class NotAnAppSession(InvalidInput):
    """A license server's session given to an application's operation (``touch``, ``end``): it
    ends when the server checks it in, or by an admin's logout."""


class StoreUnavailable(LicusageError):
    """The database cannot be reached or used right now."""


class SchemaMismatch(LicusageError):
    """The store's schema is newer than this code, or otherwise not one it can use."""


class PermissionDenied(LicusageError):
    """The acting user's role does not allow the action."""
