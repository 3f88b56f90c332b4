"""The API's errors: one JSON shape, a stable code, every bad field named.

``{"error": {"code": "invalid_request", "message": "...", "fields": [{"field": "user",
"message": "..."}]}}``. Codes: ``invalid_json`` (400), ``unsupported_media_type`` (415),
``invalid_request`` (422), ``unauthenticated`` (401), ``invalid_token`` (401), ``forbidden``
(403), ``not_found`` (404), ``method_not_allowed`` (405), ``not_an_app_session`` (409), ``store_unavailable`` (503),
``internal`` (500).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError


class ApiError(Exception):
    """An error answered as JSON with `status`, a stable `code`, and the bad `fields`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.fields)


def error_body(code: str, message: str, fields: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """The JSON every error answers with."""
    return {
        "error": {
            "code": code,
            "message": message,
            "fields": [{"field": name, "message": text} for name, text in fields],
        }
    }


def _field_name(location: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in location) or "body"


def validation_error(error: ValidationError, prefix: str = "") -> ApiError:
    """A 422 naming every field pydantic refused (dotted paths, e.g. ``licenses.Reports``)."""
    fields = []
    for item in error.errors(include_url=False):
        location = [part for part in item["loc"] if part not in ("function-after",)]
        name = _field_name(location)
        message = str(item["msg"]).removeprefix("Value error, ")
        fields.append((f"{prefix}{name}" if location else (prefix.rstrip(".") or "body"), message))
    names = ", ".join(dict.fromkeys(name for name, _ in fields))
    return ApiError(422, "invalid_request", f"invalid fields: {names}", fields)


def invalid(field: str, message: str) -> ApiError:
    """A 422 for one bad field."""
    return ApiError(422, "invalid_request", f"{field}: {message}", [(field, message)])


def not_an_app_session(error: Exception) -> ApiError:
    """A 409: the session is a license server's checkout, not the application's to end or touch."""
    return ApiError(409, "not_an_app_session", str(error), [("session_id", str(error))])
