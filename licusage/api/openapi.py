"""The OpenAPI 3.1 document of the HTTP API, built from the same pydantic models the handlers
validate with, and a self-contained HTML page that renders it (no script, no CDN)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import schemas

REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Endpoint:
    """One operation of the API, as documented."""

    method: str
    path: str
    summary: str
    scope: str | None
    response: type[BaseModel]
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = (401, 403, 422, 503)


ID = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "integer"}}

ENDPOINTS = (
    Endpoint(
        "post",
        "/api/v1/sessions",
        "Check licenses out: start a session of a user (same rules as sessions.login). "
        "201 with the session, or 200 with session_id null when every license was denied.",
        "sessions:write",
        schemas.CheckoutResponse,
        request=schemas.CheckoutRequest,
        status=201,
        errors=(400, 401, 403, 415, 422, 503),
    ),
    Endpoint(
        "get",
        "/api/v1/sessions",
        "Active sessions matching the dashboard's filter, oldest last activity first, "
        "keyset-paged (pass next_cursor as cursor).",
        "read",
        schemas.SessionPage,
        query=schemas.SessionQuery,
    ),
    Endpoint(
        "post",
        "/api/v1/sessions/{session_id}/heartbeat",
        "Record activity. Answers state 'ended' (with reason and by) once the session has "
        "ended, e.g. after an admin logged it out: then close the user's window.",
        "sessions:write",
        schemas.HeartbeatResponse,
        errors=(401, 403, 404, 409, 422, 503),
    ),
    Endpoint(
        "delete",
        "/api/v1/sessions/{session_id}",
        "Check in: end the session, releasing its licenses (ended false: it had ended).",
        "sessions:write",
        schemas.EndResponse,
        errors=(401, 403, 404, 409, 422, 503),
    ),
    Endpoint("get", "/api/v1/pools", "Seats in use and owned per pool.", "read", schemas.PoolList),
    Endpoint(
        "get",
        "/api/v1/audit",
        "Audit events, newest first.",
        "read",
        schemas.AuditList,
        query=schemas.AuditQuery,
    ),
    Endpoint(
        "post",
        "/api/v1/logout",
        "Log sessions out (by id, or every active one matching a filter), audited with the "
        "caller as actor. Admin only; a refused attempt is audited too.",
        "admin",
        schemas.LogoutResponse,
        request=schemas.LogoutRequest,
        errors=(400, 401, 403, 415, 422, 503),
    ),
)

ERROR_TEXT = {
    400: "Malformed JSON (invalid_json)",
    401: "No credentials, or an unknown or revoked token (unauthenticated, invalid_token)",
    403: "The token's scope or the account's role does not allow this (forbidden)",
    404: "No such session (not_found)",
    409: "A license server's session: it ends on the server or by a logout (not_an_app_session)",
    415: "The body is not application/json (unsupported_media_type)",
    422: "A field is invalid: each one is named in error.fields (invalid_request)",
    503: "The store cannot be reached (store_unavailable)",
}


def _parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema["properties"].items():
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if prop.get("type") == "array":
            parameter["explode"] = True
            parameter["description"] = "repeat the parameter for several values"
        parameters.append(parameter)
    return parameters


def build_spec(version: str) -> dict[str, Any]:
    """The OpenAPI document of the API (served at ``/api/v1/openapi.json``)."""
    models: set[type[BaseModel]] = {schemas.ErrorResponse}
    for endpoint in ENDPOINTS:
        models.add(endpoint.response)
        if endpoint.request is not None:
            models.add(endpoint.request)
    ordered = sorted(models, key=lambda m: m.__name__)
    _, definitions = models_json_schema(
        [(model, "validation") for model in ordered], ref_template=REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "operationId": f"{endpoint.method}_{endpoint.path}".replace("/", "_")
            .replace("{", "")
            .replace("}", ""),
            "security": [{"bearer": []}, {"dashboardCookie": []}],
            "x-scope": endpoint.scope,
            "responses": {
                str(endpoint.status): {
                    "description": "OK",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": REF.format(model=endpoint.response.__name__)}
                        }
                    },
                },
                **{
                    str(code): {
                        "description": ERROR_TEXT[code],
                        "content": {
                            "application/json": {
                                "schema": {"$ref": REF.format(model="ErrorResponse")}
                            }
                        },
                    }
                    for code in endpoint.errors
                },
            },
        }
        parameters = [ID] if "{session_id}" in endpoint.path else []
        if endpoint.query is not None:
            parameters += _parameters(endpoint.query)
        if parameters:
            operation["parameters"] = parameters
        if endpoint.request is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": REF.format(model=endpoint.request.__name__)}
                    }
                },
            }
        paths.setdefault(endpoint.path, {})[endpoint.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "licusage HTTP API",
            "version": version,
            "description": "Check licenses out and in, heartbeat, read sessions, pools and the "
            "audit log, log sessions out. Authenticate with 'Authorization: Bearer TOKEN' "
            "(licusage tokens add NAME --scope sessions:write|read|admin) or a dashboard "
            "sign-in cookie. Errors: {'error': {'code', 'message', 'fields': [{'field', "
            "'message'}]}}.",
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "dashboardCookie": {"type": "apiKey", "in": "cookie", "name": "user"},
            },
        },
    }


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
 body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
        color: #1d2430; background: #f6f7f9; }}
 header {{ background: #0072b5; color: white; padding: 14px 24px; font-size: 22px; }}
 main {{ max-width: 980px; margin: 0 auto; padding: 12px 24px 40px; }}
 section {{ background: white; border-radius: 6px; padding: 10px 18px; margin: 14px 0;
           box-shadow: 0 1px 4px rgba(0,0,0,.1); }}
 .method {{ display: inline-block; min-width: 64px; font-weight: 700; text-transform: uppercase;
           font-family: ui-monospace, monospace; }}
 .path {{ font-family: ui-monospace, monospace; font-size: 16px; }}
 .scope {{ float: right; font-size: 13px; color: #555; }}
 pre {{ background: #f0f2f5; padding: 8px; overflow-x: auto; font-size: 13px; }}
 table {{ border-collapse: collapse; font-size: 14px; }}
 td, th {{ border-bottom: 1px solid #e3e6ea; padding: 3px 10px 3px 0; text-align: left; }}
 details summary {{ cursor: pointer; }}
</style></head>
<body><header>{title}</header><main>
<p>{description}</p>
<p>The machine-readable document: <a href="openapi.json">openapi.json</a>.</p>
{operations}
<h2>Schemas</h2>
{schemas}
</main></body></html>
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def render_page(spec: dict[str, Any]) -> str:
    """The API's documentation page: every operation, its parameters, body and answers, and
    every schema, drawn from `spec` on the server (all text escaped)."""
    operations = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            rows = "".join(
                f"<tr><td><code>{_esc(p['name'])}</code></td><td>{_esc(p['in'])}</td>"
                f"<td>{'required' if p.get('required') else ''}</td>"
                f"<td><code>{_esc(json.dumps(p['schema']))}</code></td></tr>"
                for p in op.get("parameters", [])
            )
            params = (
                f"<table><tr><th>Parameter</th><th>In</th><th></th><th>Schema</th></tr>{rows}</table>"
                if rows
                else ""
            )
            body = ""
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                body = (
                    f"<p>Body: <code>{_esc(ref.rsplit('/', 1)[-1])}</code> (application/json)</p>"
                )
            answers = "".join(
                f"<tr><td>{_esc(code)}</td><td>{_esc(answer['description'])}</td>"
                f"<td><code>{_esc(answer['content']['application/json']['schema']['$ref'].rsplit('/', 1)[-1])}</code></td></tr>"
                for code, answer in op["responses"].items()
            )
            operations.append(
                f'<section id="{_esc(op["operationId"])}"><span class="scope">scope: '
                f'{_esc(op.get("x-scope"))}</span><span class="method">{_esc(method)}</span> '
                f'<span class="path">{_esc(path)}</span><p>{_esc(op["summary"])}</p>{params}'
                f"{body}<table><tr><th>Status</th><th>Meaning</th><th>Body</th></tr>{answers}"
                "</table></section>"
            )
    schema_parts = [
        f'<details id="schema-{_esc(name)}"><summary><code>{_esc(name)}</code></summary>'
        f"<pre>{_esc(json.dumps(schema, indent=2))}</pre></details>"
        for name, schema in spec["components"]["schemas"].items()
    ]
    return PAGE.format(
        title=_esc(spec["info"]["title"]),
        description=_esc(spec["info"]["description"]),
        operations="\n".join(operations),
        schemas="\n".join(schema_parts),
    )
