"""The HTTP API under ``/api/v1/``, served by ``licusage serve`` in the same process and port.

Tornado request handlers registered beside the Panel app (Bokeh's ``extra_patterns``), with
pydantic models for validation and the OpenAPI document. See ``docs/api-http.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tornado.ioloop import IOLoop
from tornado.web import RequestHandler

from .. import __version__, metrics, tokens
from .handlers import (
    ApiContext,
    ApiHandler,
    AuditHandler,
    HeartbeatHandler,
    LogoutHandler,
    NotFoundHandler,
    PoolsHandler,
    SessionHandler,
    SessionsHandler,
)
from .openapi import build_spec, render_page

PREFIX = "/api/v1"


class OpenApiHandler(ApiHandler):
    """``GET /api/v1/openapi.json``: the OpenAPI document (public, like any API reference)."""

    def get(self) -> None:
        self.finish(json.dumps(self.ctx.spec))


class DocsHandler(ApiHandler):
    """``GET /api/v1/docs``: the document rendered as a self-contained HTML page."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.finish(render_page(self.ctx.spec))


class MetricsHandler(ApiHandler):
    """``GET /metrics``: Prometheus text exposition of the store (see :mod:`licusage.metrics`).

    As open as the dashboard: without sign-in anyone who reaches the server may scrape; with
    ``--auth`` the scraper needs a token of scope ``read`` (Prometheus ``authorization``).
    """

    async def get(self) -> None:
        if self.ctx.get_user is not None and await self.check(tokens.READ) is None:
            return
        body, content_type = await IOLoop.current().run_in_executor(
            self.ctx.executor, metrics.exposition, self.ctx.metrics_registry()
        )
        self.set_header("Content-Type", content_type)
        self.finish(body)


def routes(
    url: str, get_user: Callable[[RequestHandler], Any] | None = None
) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """The API's Tornado routes for the store at `url`; `get_user` is the dashboard's sign-in
    cookie check (an auth provider's ``get_user``), or None when the server has no sign-in."""
    context = ApiContext(url=url, get_user=get_user, spec=build_spec(__version__))
    args = {"context": context}
    return [
        (rf"{PREFIX}/sessions", SessionsHandler, args),
        (rf"{PREFIX}/sessions/([^/]+)", SessionHandler, args),
        (rf"{PREFIX}/sessions/([^/]+)/heartbeat", HeartbeatHandler, args),
        (rf"{PREFIX}/pools", PoolsHandler, args),
        (rf"{PREFIX}/audit", AuditHandler, args),
        (rf"{PREFIX}/logout", LogoutHandler, args),
        (rf"{PREFIX}/openapi.json", OpenApiHandler, args),
        (rf"{PREFIX}/docs/?", DocsHandler, args),
        (r"/api/.*", NotFoundHandler, args),
        (r"/metrics", MetricsHandler, args),
    ]
