"""A small client of the HTTP API (``/api/v1/``) for Python applications, on httpx.

::

    from licusage.client import Client

    with Client("http://licusage:5006", token="lu_...") as api:
        checkout = api.check_out("alice", {"Case Management": "Concurrent User"}, host="ws-17")
        if checkout.session_id is not None:
            state = api.heartbeat(checkout.session_id)   # {"state": "active"} ...
            api.check_in(checkout.session_id)

An error answer raises :class:`ApiError` carrying the status, the stable code and the named
fields of the API's JSON error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from .errors import LicusageError


class ApiError(LicusageError):
    """The API answered an error: ``status``, ``code`` and ``fields`` (name -> message)."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, str]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.fields = fields


@dataclass(frozen=True)
class Checkout:
    """What a check-out got (see ``POST /api/v1/sessions``)."""

    session_id: int | None
    granted: dict[str, str] = field(default_factory=dict)
    denied: dict[str, str] = field(default_factory=dict)


class Client:
    """The API of the server at `base_url`, as the holder of `token`."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0, **kwargs: Any) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            **kwargs,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            try:
                error = response.json()["error"]
                fields = {f["field"]: f["message"] for f in error.get("fields", [])}
                raise ApiError(response.status_code, error["code"], error["message"], fields)
            except (ValueError, KeyError, TypeError):
                raise ApiError(
                    response.status_code, "http_error", response.text[:200], {}
                ) from None
        return response.json()

    def check_out(
        self, user: str, licenses: Mapping[str, str], host: str | None = None
    ) -> Checkout:
        """Start a session of `user` asking for `licenses` (product -> license type)."""
        body = self._call(
            "POST", "/sessions", json={"user": user, "host": host, "licenses": dict(licenses)}
        )
        return Checkout(body["session_id"], body["granted"], body["denied"])

    def heartbeat(self, session_id: int) -> dict[str, Any]:
        """``{"state": "active"}``, or ``{"state": "ended", "reason": ..., "by": ...}``."""
        return dict(self._call("POST", f"/sessions/{int(session_id)}/heartbeat"))

    def check_in(self, session_id: int) -> bool:
        """End the session; False when it had already ended."""
        return bool(self._call("DELETE", f"/sessions/{int(session_id)}")["ended"])

    def sessions(
        self,
        user: str | None = None,
        licenses: Sequence[str] = (),
        idle_over: str | None = None,
        page_size: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Every active session matching the filter (``licenses``: ``PRODUCT=TYPE`` values),
        fetched page by page."""
        params: list[tuple[str, str]] = [("limit", str(page_size))]
        if user:
            params.append(("user", user))
        if idle_over:
            params.append(("idle_over", idle_over))
        params += [("license", value) for value in licenses]
        cursor = None
        while True:
            page = self._call(
                "GET", "/sessions", params=params + ([("cursor", cursor)] if cursor else [])
            )
            yield from page["sessions"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def pools(self) -> list[dict[str, Any]]:
        """Seats per pool (``GET /api/v1/pools``)."""
        return list(self._call("GET", "/pools")["pools"])

    def logout(
        self, session_ids: Sequence[int] | None = None, filter: Mapping[str, Any] | None = None
    ) -> dict[str, list[int]]:
        """Log sessions out (an ``admin`` token): by id, or all matching `filter`."""
        body: dict[str, Any] = (
            {"session_ids": list(session_ids or [])} if filter is None else {"filter": dict(filter)}
        )
        return dict(self._call("POST", "/logout", json=body))
