"""The HTTP API's request and response bodies (pydantic models): validation and OpenAPI.

Each request model refuses unknown fields and wrong types, and pydantic names every bad field
(see :func:`licusage.api.errors.validation_error`). The same models give the schemas of
``/api/v1/openapi.json``, so the document cannot drift from what the handlers accept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import validation
from ..durations import parse_duration
from ..sessions import MAX_SESSION_ID, MIN_SESSION_ID
from ..validation import MAX_HOST_LENGTH, MAX_USER_LENGTH

Name = Annotated[str, Field(min_length=1, max_length=200)]
SessionId = Annotated[int, Field(ge=MIN_SESSION_ID, le=MAX_SESSION_ID, strict=True)]
MAX_PAGE = 1000
MAX_IDS = 100_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CheckoutRequest(_Strict):
    """Start a session: `user` logs in on `host` asking for `licenses` (product -> type)."""

    user: Annotated[str, Field(min_length=1, max_length=MAX_USER_LENGTH)]
    host: Annotated[str, Field(max_length=MAX_HOST_LENGTH)] | None = None
    licenses: dict[Name, Name] = Field(default_factory=dict)

    # the library's own rules (licusage.validation), so a field is refused here exactly when
    # sessions.login would refuse it
    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        return validation.check_user(value)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        return validation.check_host(value)


class CheckoutResponse(BaseModel):
    """What a check-out got: the session (None when every license was denied), the licenses
    granted (product -> type) and those denied (product -> reason)."""

    session_id: int | None
    granted: dict[str, str]
    denied: dict[str, Literal["pool_full", "not_named", "pool_expired"]]


class HeartbeatResponse(BaseModel):
    """``active``, or ``ended`` with the reason (e.g. ``admin_logout``) and who ended it."""

    state: Literal["active", "ended"]
    reason: str | None = None
    by: str | None = None


class EndResponse(BaseModel):
    """Whether this call ended the session (false: it had ended already)."""

    session_id: int
    ended: bool


class SessionFilterModel(_Strict):
    """The dashboard's filter: user substring, license types (``PRODUCT=TYPE``, all products
    must match, several types of one product: any of them), idle at least `idle_over`, host
    substring, `source` (``app`` or a license server's name, exactly)."""

    user: Annotated[str, Field(max_length=1000)] | None = None
    license: list[Annotated[str, Field(max_length=401)]] = Field(default_factory=list)
    idle_over: str | None = Field(default=None, description="a duration such as 45m, 2h, 1d")
    host: Annotated[str, Field(max_length=200)] | None = None
    source: (
        Annotated[str, Field(max_length=200, description="app, or a license server's name")] | None
    ) = None

    @field_validator("idle_over")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)  # InvalidInput is a ValueError: pydantic names the field
        return value

    @field_validator("license")
    @classmethod
    def _licenses(cls, values: list[str]) -> list[str]:
        for value in values:
            product, sep, license_type = value.partition("=")
            if not sep or not product.strip() or not license_type.strip():
                raise ValueError(f"{value!r} is not PRODUCT=TYPE")
        return values


class SessionQuery(SessionFilterModel):
    """``GET /api/v1/sessions``: the filter plus keyset paging."""

    model_config = ConfigDict(extra="forbid", strict=False)
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 100
    cursor: Annotated[str, Field(max_length=200)] | None = None


class SessionRecord(BaseModel):
    """One active session, times in UTC (ISO 8601)."""

    session_id: int
    user: str
    host: str | None
    started_at: datetime
    last_activity: datetime
    idle_seconds: float
    source: str
    licenses: dict[str, str]


class SessionPage(BaseModel):
    """A page of sessions; pass `next_cursor` as ``cursor`` for the next (None: last page)."""

    sessions: list[SessionRecord]
    next_cursor: str | None


class PoolRecord(BaseModel):
    """Seats of one pool right now (see ``queries.pool_usage``)."""

    product: str
    license_type: str
    kind: str
    seats: int | None = Field(description="None when not known")
    in_use: int
    free: int | None
    denials_today: int
    expires_at: datetime | None
    next_seats: int | None = Field(
        description="The next seat count the pool's history has in store (e.g. a license "
        "file's increment expires), None when none is"
    )
    next_seats_at: datetime | None = Field(description="From when next_seats are in force")


class PoolList(BaseModel):
    pools: list[PoolRecord]


class AuditQuery(_Strict):
    """``GET /api/v1/audit``: events in [start, end), of one actor, newest first."""

    model_config = ConfigDict(extra="forbid", strict=False)
    start: datetime | None = None
    end: datetime | None = None
    actor: Annotated[str, Field(max_length=200)] | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 100


class AuditRecord(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    session_id: int | None
    user: str | None
    reason: str | None
    origin: str | None
    detail: str | None


class AuditList(BaseModel):
    events: list[AuditRecord]


class LogoutRequest(_Strict):
    """Log sessions out: either `session_ids`, or every active session matching `filter`."""

    session_ids: Annotated[list[SessionId], Field(max_length=MAX_IDS)] | None = None
    filter: SessionFilterModel | None = None

    @model_validator(mode="after")
    def _one_of(self) -> LogoutRequest:
        if (self.session_ids is None) == (self.filter is None):
            raise ValueError("give exactly one of session_ids and filter")
        return self


class LogoutResponse(BaseModel):
    """Which sessions this call ended, which had ended before, which do not exist, and which
    were spared (a signed-in admin's own sessions)."""

    logged_out: list[int]
    already_ended: list[int]
    unknown: list[int]
    spared: list[int]
    not_removed: dict[str, str] = Field(
        default_factory=dict,
        description="license-server sessions kept because the server's removal failed: id -> why",
    )


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the bad field, e.g. licenses.Case Management")
    message: str


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. invalid_request")
    message: str
    fields: list[FieldError] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """The shape of every error the API returns."""

    error: ErrorBody
