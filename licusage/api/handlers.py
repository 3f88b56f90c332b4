"""Tornado request handlers of the HTTP API, registered beside the Panel app (same server).

Each handler checks the caller once (:meth:`ApiHandler.authenticate`: a bearer token, or a
dashboard sign-in cookie), validates its input with the pydantic models of
:mod:`licusage.api.schemas`, and calls one library function (``sessions.login``/``touch``/
``end``, ``queries.*``, ``actions.logout_sessions``) on a worker thread, so the server's event
loop (and the dashboard's websockets) never waits on the database.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Engine
from tornado.ioloop import IOLoop
from tornado.web import HTTPError, RequestHandler

from .. import actions, catalog, db, queries, sessions, tokens, validation
from ..durations import parse_duration
from ..errors import (
    InvalidInput,
    NotAnAppSession,
    PermissionDenied,
    StoreUnavailable,
    UnknownLicenseType,
    UnknownProduct,
)
from . import schemas
from .errors import ApiError, error_body, invalid, not_an_app_session, validation_error

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Caller:
    """Who calls: a token (``actor`` = ``token:NAME``) or a signed-in dashboard account."""

    actor: str
    scope: str
    kind: str  # "token" or "account"
    role: str | None = None


@dataclass
class ApiContext:
    """What the handlers share: the store, the sign-in cookie check, the worker threads."""

    url: str
    get_user: Callable[[RequestHandler], Any] | None = None
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=16, thread_name_prefix="api")
    )
    spec: dict[str, Any] = field(default_factory=dict)
    _registry: Any = None

    def engine(self) -> Engine:
        from ..app.main import get_engine

        return get_engine(self.url)

    def metrics_registry(self) -> Any:
        """The Prometheus registry reading this store (made on first use)."""
        if self._registry is None:
            from .. import metrics

            self._registry = metrics.registry(self.engine)
        return self._registry


class ApiHandler(RequestHandler):
    """Base handler: JSON errors of one shape, the caller check, work on worker threads."""

    ctx: ApiContext

    def initialize(self, context: ApiContext) -> None:
        self.ctx = context
        self._actor_hint = "anonymous"

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def check_xsrf_cookie(self) -> None:
        """Tokens are not ambient credentials; signed-in requests that act must be JSON
        (a cross-site form cannot send that without a CORS preflight, which is never granted):
        see :meth:`authenticate`."""

    # --- errors --------------------------------------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        codes = {404: "not_found", 405: "method_not_allowed", 400: "invalid_request"}
        code = codes.get(status_code, "internal" if status_code >= 500 else "invalid_request")
        message = self._reason if status_code < 500 else "internal error (see the server log)"
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(error_body(code, message)))

    def _answer_error(self, error: ApiError) -> None:
        self.set_status(error.status)
        if error.status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="licusage"')
        self.finish(json.dumps(error.body()))

    def _audit_refusal(self, error: ApiError) -> None:
        """An attempt to act that was refused (401/403) is audited as ``api_refused``."""
        try:
            with db.write(self.ctx.engine()) as conn:
                sessions.record_audit(
                    conn,
                    actor=self._actor_hint[: validation.MAX_USER_LENGTH],
                    action="api_refused",
                    origin=self.request.remote_ip,
                    detail={
                        "method": self.request.method,
                        "path": self.request.path[:500],
                        "status": error.status,
                        "code": error.code,
                    },
                )
        except Exception:  # the refusal is answered even when it cannot be recorded
            log.exception("could not audit a refused API request")

    # --- running -------------------------------------------------------------------------

    async def check(self, needed: str) -> Caller | None:
        """The caller if allowed scope `needed`; else answer the 401/403 (auditing an attempt
        to act) and return None."""
        acting = self.request.method in UNSAFE_METHODS
        loop = IOLoop.current()
        try:
            return await loop.run_in_executor(
                self.ctx.executor, self._mapped, self.authenticate, needed, acting
            )
        except ApiError as error:
            if acting and error.status in (401, 403):
                await loop.run_in_executor(self.ctx.executor, self._audit_refusal, error)
            self._answer_error(error)
            return None

    async def respond(
        self, needed: str, work: Callable[..., tuple[int, BaseModel]], *args: Any
    ) -> None:
        """Check the caller for scope `needed`, run `work(caller, *args)` on a worker thread,
        and answer its (status, model) as JSON, or the error as JSON."""
        caller = await self.check(needed)
        if caller is None:
            return
        try:
            status, body = await IOLoop.current().run_in_executor(
                self.ctx.executor, self._mapped, work, caller, *args
            )
        except ApiError as error:
            self._answer_error(error)
            return
        self.set_status(status)
        # a heartbeat of an active session answers just {"state": "active"}
        self.finish(body.model_dump_json(exclude_none=isinstance(body, schemas.HeartbeatResponse)))

    @staticmethod
    def _mapped(function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)`, the library's errors turned into :class:`ApiError`."""
        try:
            return function(*args)
        except ApiError:
            raise
        except ValidationError as error:
            raise validation_error(error) from None
        except PermissionDenied as error:
            raise ApiError(403, "forbidden", str(error)) from None
        except StoreUnavailable as error:
            raise ApiError(503, "store_unavailable", str(error)) from None
        except InvalidInput as error:
            raise ApiError(422, "invalid_request", str(error), [("body", str(error))]) from None

    def authenticate(self, needed: str, acting: bool) -> Caller:
        """The caller, if allowed scope `needed`; else :class:`ApiError` 401/403.

        A bearer token (``Authorization: Bearer lu_...``) is looked up by its hash; without
        one, a dashboard sign-in cookie (``licusage serve --auth``) names an account whose
        role gives the scope (admin: ``admin``, viewer: ``read``).
        """
        engine = self.ctx.engine()
        header = self.request.headers.get("Authorization")
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise ApiError(401, "invalid_token", "Authorization must be 'Bearer TOKEN'")
            info = tokens.verify_token(engine, value.strip())
            if info is None:
                raise ApiError(401, "invalid_token", "the token is unknown or revoked")
            caller = Caller(actor=f"token:{info.name}", scope=info.scope, kind="token")
        else:
            user = self._cookie_user()
            if not user:
                raise ApiError(
                    401,
                    "unauthenticated",
                    "send 'Authorization: Bearer TOKEN' (see 'licusage tokens add') "
                    "or sign in to the dashboard",
                )
            from ..app.identity import signed_in_role

            role = signed_in_role(engine, user)
            scope = tokens.ADMIN if actions.may_logout(role) else tokens.READ
            caller = Caller(actor=user, scope=scope, kind="account", role=role)
            self._actor_hint = user
            content_type = self.request.headers.get("Content-Type", "")
            if acting and content_type.split(";")[0].strip().lower() != JSON_TYPE:
                raise ApiError(
                    403,
                    "forbidden",
                    "requests signed in with the dashboard cookie must send "
                    "Content-Type: application/json to act",
                )
        self._actor_hint = caller.actor
        if not tokens.allows(caller.scope, needed):
            raise ApiError(
                403,
                "forbidden",
                f"this needs scope {needed!r}; {caller.actor} has {caller.scope!r}",
            )
        return caller

    def _cookie_user(self) -> str | None:
        if self.ctx.get_user is None:
            return None
        try:
            user = self.ctx.get_user(self)
        except Exception:
            log.exception("the sign-in cookie check failed")
            return None
        if isinstance(user, bytes):
            user = user.decode("utf-8", "replace")
        if not isinstance(user, str) or not user or user == "guest":
            return None
        return user

    # --- input ---------------------------------------------------------------------------

    def json_body(self) -> Any:
        """The request body as JSON (415 unless sent as application/json, 400 if malformed)."""
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != JSON_TYPE:
            raise ApiError(415, "unsupported_media_type", "send the body as application/json")
        try:
            return json.loads(self.request.body or b"")
        except (ValueError, UnicodeDecodeError) as error:
            raise ApiError(400, "invalid_json", f"the body is not JSON: {error}") from None

    def query_model(self, model: type[schemas.BaseModel], repeated: tuple[str, ...] = ()) -> Any:
        """The query string validated by `model` (parameters in `repeated` may repeat)."""
        values: dict[str, Any] = {}
        for name, raw in self.request.query_arguments.items():
            decoded = [item.decode("utf-8", "replace") for item in raw]
            values[name] = decoded if name in repeated else decoded[-1]
        try:
            return model.model_validate(values)
        except ValidationError as error:
            raise validation_error(error) from None


def _session_id(raw: str) -> int:
    try:
        return sessions.check_session_id(int(raw))
    except (ValueError, InvalidInput):
        raise invalid("session_id", f"{raw!r} is not a session id (an integer)") from None


def _licenses_field_error(
    engine: Engine, licenses: dict[str, str], error: InvalidInput
) -> ApiError:
    """Name the product whose name or license type the catalogue does not know."""
    known = catalog.read_catalog(engine)
    for product, license_type in licenses.items():
        try:
            known.type_id(product, license_type)
        except InvalidInput as bad:
            return invalid(f"licenses.{product}", str(bad))
    return invalid("licenses", str(error))


class SessionsHandler(ApiHandler):
    """``POST /api/v1/sessions`` (check out) and ``GET /api/v1/sessions`` (list, paged)."""

    async def post(self) -> None:
        await self.respond(tokens.SESSIONS_WRITE, self._checkout)

    def _checkout(self, caller: Caller) -> tuple[int, BaseModel]:
        request = schemas.CheckoutRequest.model_validate(self.json_body())
        engine = self.ctx.engine()
        try:
            result = sessions.login(engine, request.user, request.licenses, host=request.host)
        except (UnknownProduct, UnknownLicenseType) as error:
            raise _licenses_field_error(engine, request.licenses, error) from None
        except InvalidInput as error:
            raise invalid("user", str(error)) from None
        body = schemas.CheckoutResponse(
            session_id=result.session_id,
            granted=result.granted,
            denied=result.denied,  # type: ignore[arg-type]
        )
        if result.session_id is not None:
            self.set_header("Location", f"/api/v1/sessions/{result.session_id}")
            return 201, body
        return 200, body

    async def get(self) -> None:
        await self.respond(tokens.READ, self._list)

    def _list(self, caller: Caller) -> tuple[int, BaseModel]:
        query = self.query_model(schemas.SessionQuery, repeated=("license",))
        after = _decode_cursor(query.cursor) if query.cursor else None
        frame = queries.session_usage_after(
            self.ctx.engine(), session_filter(query), after=after, limit=query.limit + 1
        )
        more = len(frame) > query.limit
        frame = frame.iloc[: query.limit]
        records = session_records(frame)
        next_cursor = None
        if more and records:
            last = records[-1]
            next_cursor = _encode_cursor(last.last_activity, last.session_id)
        return 200, schemas.SessionPage(sessions=records, next_cursor=next_cursor)


def session_filter(spec: schemas.SessionFilterModel) -> queries.SessionFilter:
    """The dashboard's :class:`~licusage.queries.SessionFilter` of the API's filter."""
    license_types: dict[str, list[str]] = {}
    for value in spec.license:
        product, _, license_type = value.partition("=")
        types = license_types.setdefault(product.strip(), [])
        if license_type.strip() not in types:
            types.append(license_type.strip())
    return queries.SessionFilter(
        user=spec.user,
        license_types=license_types or None,
        idle_over=parse_duration(spec.idle_over) if spec.idle_over else None,
        host=spec.host or None,
        source=spec.source or None,
    )


def session_records(frame: pd.DataFrame) -> list[schemas.SessionRecord]:
    """API records of :func:`licusage.queries.session_usage` rows."""
    products = list(frame.columns[len(queries.BASE_COLUMNS) :])
    records = []
    for row in frame.itertuples(index=False, name=None):
        values = dict(zip(frame.columns, row, strict=True))
        records.append(
            schemas.SessionRecord(
                session_id=int(values["session_id"]),
                user=str(values["user"]),
                host=None if pd.isna(values["host"]) else str(values["host"]),
                started_at=values["started_at"].to_pydatetime(),
                last_activity=values["last_activity"].to_pydatetime(),
                idle_seconds=max(values["idle"].total_seconds(), 0.0),
                source=str(values["source"]),
                licenses={p: str(values[p]) for p in products if not pd.isna(values[p])},
            )
        )
    return records


def _encode_cursor(last_activity: datetime, session_id: int) -> str:
    raw = json.dumps([last_activity.isoformat(), session_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, session_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if isinstance(session_id, bool) or not isinstance(session_id, int):
            raise ValueError("bad id")
        return datetime.fromisoformat(at), session_id
    except (ValueError, TypeError, binascii.Error):
        raise invalid("cursor", "not a cursor this API returned") from None


class SessionHandler(ApiHandler):
    """``DELETE /api/v1/sessions/{id}``: check in (end the session, releasing its licenses)."""

    async def delete(self, raw_id: str) -> None:
        await self.respond(tokens.SESSIONS_WRITE, self._end, raw_id)

    def _end(self, caller: Caller, raw_id: str) -> tuple[int, BaseModel]:
        session_id = _session_id(raw_id)
        try:
            ended = sessions.end(self.ctx.engine(), session_id)
        except NotAnAppSession as error:
            raise not_an_app_session(error) from None
        except InvalidInput:
            raise ApiError(404, "not_found", f"no session with id {session_id}") from None
        return 200, schemas.EndResponse(session_id=session_id, ended=ended)


class HeartbeatHandler(ApiHandler):
    """``POST /api/v1/sessions/{id}/heartbeat``: record activity; tells when it has ended."""

    async def post(self, raw_id: str) -> None:
        await self.respond(tokens.SESSIONS_WRITE, self._beat, raw_id)

    def _beat(self, caller: Caller, raw_id: str) -> tuple[int, BaseModel]:
        session_id = _session_id(raw_id)
        engine = self.ctx.engine()
        try:
            if sessions.touch(engine, session_id):
                return 200, schemas.HeartbeatResponse(state="active")
        except NotAnAppSession as error:
            raise not_an_app_session(error) from None
        found = queries.sessions_by_id(engine, [session_id])
        if found.empty:
            raise ApiError(404, "not_found", f"no session with id {session_id}")
        row = found.iloc[0]
        return 200, schemas.HeartbeatResponse(
            state="ended",
            reason=None if pd.isna(row["end_reason"]) else str(row["end_reason"]),
            by=None if pd.isna(row["ended_by"]) else str(row["ended_by"]),
        )


def _when(value: Any) -> datetime | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).to_pydatetime()


_POOL_TIMES = frozenset({"expires_at", "next_seats_at"})


class PoolsHandler(ApiHandler):
    """``GET /api/v1/pools``: seats in use and owned per pool."""

    async def get(self) -> None:
        await self.respond(tokens.READ, self._pools)

    def _pools(self, caller: Caller) -> tuple[int, BaseModel]:
        frame = queries.pool_usage(self.ctx.engine())
        pools = [
            schemas.PoolRecord.model_validate(
                {
                    k: _when(v) if k in _POOL_TIMES else (None if pd.isna(v) else v)
                    for k, v in record.items()
                }
            )
            for record in frame.to_dict("records")
        ]
        return 200, schemas.PoolList(pools=pools)


class AuditHandler(ApiHandler):
    """``GET /api/v1/audit``: audit events, newest first."""

    async def get(self) -> None:
        await self.respond(tokens.READ, self._audit)

    def _audit(self, caller: Caller) -> tuple[int, BaseModel]:
        query = self.query_model(schemas.AuditQuery)
        frame = queries.audit_log(
            self.ctx.engine(),
            start=query.start,
            end=query.end,
            actor=query.actor,
            limit=query.limit,
        )
        events = []
        for record in frame.to_dict("records"):
            values = {
                str(key): (None if not isinstance(value, str) and pd.isna(value) else value)
                for key, value in record.items()
            }
            values["at"] = _when(record["at"])
            if values["session_id"] is not None:
                values["session_id"] = int(values["session_id"])
            events.append(schemas.AuditRecord.model_validate(values))
        return 200, schemas.AuditList(events=events)


class LogoutHandler(ApiHandler):
    """``POST /api/v1/logout``: an admin logs sessions out (by id, or all matching a filter)."""

    async def post(self) -> None:
        await self.respond(tokens.ADMIN, self._logout)

    def _logout(self, caller: Caller) -> tuple[int, BaseModel]:
        request = schemas.LogoutRequest.model_validate(self.json_body())
        engine = self.ctx.engine()
        if request.filter is not None:
            try:
                matching = queries.session_usage(engine, session_filter(request.filter))
            except (UnknownProduct, UnknownLicenseType) as error:
                raise invalid("filter.license", str(error)) from None
            ids = [int(i) for i in matching["session_id"]]
        else:
            ids = list(request.session_ids or [])
        origin = self.request.remote_ip
        if caller.kind == "account":  # a person: their own sessions are spared, as on the page
            result = actions.authorized_logout(
                engine, ids, caller.actor, caller.role or "", origin=origin
            )
        else:
            result = actions.logout_sessions(engine, ids, caller.actor, origin=origin)
        return 200, schemas.LogoutResponse(
            logged_out=list(result.logged_out),
            already_ended=list(result.already_ended),
            unknown=list(result.unknown),
            spared=list(result.spared),
            not_removed={str(i): why for i, why in result.not_removed.items()},
        )


class NotFoundHandler(ApiHandler):
    """Anything else under ``/api/``: a JSON 404."""

    def prepare(self) -> None:
        raise HTTPError(404, reason=f"no API endpoint {self.request.path}")
