"""The HTTP API against a real ``licusage serve`` process, over plain HTTP (httpx)."""

from __future__ import annotations

import concurrent.futures
import json
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from licusage import accounts, actions, catalog, db, queries, sessions, tokens
from licusage.api.openapi import ENDPOINTS
from licusage.app import auth
from licusage.models import audit_t, holds_t
from licusage.sources.lmstat import import_lmstat, read_text
from licusage.sources.lmstat_info import import_lmstat_i
from tests.browser.conftest import start_server
from tests.helpers import fresh_pg_database
from tests.test_sources_lmstat import FIXTURES as FLEXLM_FIXTURES

CM, RO = "Case Management", "Reports Only"
CU, NU = catalog.CONCURRENT_USER, catalog.NAMED_USER
ADMIN, ADMIN_PASSWORD = "ada.admin", "admin-pass-1"
VIEWER, VIEWER_PASSWORD = "vic.viewer", "viewer-pass-1"
JSON = {"Content-Type": "application/json"}


class Api:
    """A served store: its base URL, an engine on it, and one token per scope."""

    def __init__(self, base: str, engine, tokens_: dict[str, str]) -> None:
        self.base = base
        self.engine = engine
        self.tokens = tokens_

    def client(self, scope: str | None = "sessions:write", **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[scope]}"} if scope else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60, **kwargs)


def _serve(stack: ExitStack, url: str, tmp_path_factory) -> Api:
    engine = db.connect(url)
    stack.callback(engine.dispose)
    catalog.add_pool(engine, CM, CU, 10)
    catalog.add_pool(engine, CM, NU, 5)
    catalog.add_pool(engine, RO, CU, 50)
    catalog.assign_named(engine, CM, "nora.named")
    accounts.add_account(engine, ADMIN, ADMIN_PASSWORD, "admin")
    accounts.add_account(engine, VIEWER, VIEWER_PASSWORD, "viewer")
    made = {scope: tokens.add_token(engine, f"test-{scope}", scope) for scope in tokens.SCOPES}
    log_dir = tmp_path_factory.mktemp("api-server")
    server = start_server(
        url,
        "--auth",
        "--cookie-secret",
        "x" * 40,
        log_dir=log_dir,
        ready_path="/api/v1/openapi.json",
    )
    stack.callback(server.stop)
    return Api(server.url.rstrip("/"), engine, made)


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Api]:
    """A served SQLite store (pools: CM concurrent 10, CM named 5, RO concurrent 50)."""
    with ExitStack() as stack:
        url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'store.sqlite'}"
        yield _serve(stack, url, tmp_path_factory)


@pytest.fixture(scope="module")
def pg_api(tmp_path_factory) -> Iterator[Api]:
    with ExitStack() as stack:
        url = stack.enter_context(fresh_pg_database())
        yield _serve(stack, url, tmp_path_factory)


def _checkout(client: httpx.Client, user: str, licenses: dict[str, str]) -> httpx.Response:
    return client.post("/api/v1/sessions", json={"user": user, "host": "ws1", "licenses": licenses})


def test_check_out_heartbeat_admin_logout_then_ended(api):
    with api.client() as app:
        response = _checkout(app, "hb.user", {CM: CU, RO: CU})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["granted"] == {CM: CU, RO: CU}
        assert body["denied"] == {}
        session_id = body["session_id"]
        assert response.headers["Location"] == f"/api/v1/sessions/{session_id}"
        beat = app.post(f"/api/v1/sessions/{session_id}/heartbeat")
        assert beat.status_code == 200
        assert beat.json() == {"state": "active"}
        # an admin logs it out on the dashboard: the dashboard's action
        result = actions.authorized_logout(api.engine, [session_id], ADMIN, "admin")
        assert result.logged_out == (session_id,)
        beat = app.post(f"/api/v1/sessions/{session_id}/heartbeat")
        assert beat.json() == {"state": "ended", "reason": "admin_logout", "by": ADMIN}
        # checking in afterwards is harmless
        end = app.delete(f"/api/v1/sessions/{session_id}")
        assert end.status_code == 200
        assert end.json() == {"session_id": session_id, "ended": False}


def test_check_in_ends_the_session_and_releases_its_licenses(api):
    with api.client() as app:
        session_id = _checkout(app, "in.user", {RO: CU}).json()["session_id"]
        end = app.delete(f"/api/v1/sessions/{session_id}")
        assert end.json() == {"session_id": session_id, "ended": True}
        assert queries.session_licenses(api.engine, [session_id]).empty
        beat = app.post(f"/api/v1/sessions/{session_id}/heartbeat").json()
        assert beat == {"state": "ended", "reason": "user_logout", "by": "in.user"}
        assert app.delete("/api/v1/sessions/2000000000").status_code == 404
        assert app.post("/api/v1/sessions/2000000000/heartbeat").status_code == 404


def test_denials_say_why_with_the_rules_of_login(api):
    with api.client() as app:
        body = _checkout(app, "not.named", {CM: NU}).json()
        assert body == {"session_id": None, "granted": {}, "denied": {CM: "not_named"}}
        mixed = _checkout(app, "nora.named", {CM: NU, RO: CU})
        assert mixed.status_code == 201
        assert mixed.json()["granted"] == {CM: NU, RO: CU}


def _race(api: Api, product: str, license_type: str, users: int) -> list[dict]:
    def one(i: int) -> dict:
        with api.client() as app:
            response = _checkout(app, f"racer{i:02d}", {product: license_type})
            assert response.status_code in (200, 201), response.text
            return response.json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=users) as pool:
        return list(pool.map(one, range(users)))


def _holders(engine, product: str, license_type: str) -> int:
    pool = catalog.read_catalog(engine).pool(product, license_type)
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count(sa.distinct(holds_t.c.user_name))).where(
                holds_t.c.pool_id == pool.id, holds_t.c.released_at.is_(None)
            )
        ).scalar_one()


def _check_race(api: Api) -> None:
    catalog.add_pool(api.engine, "Race", CU, 10)
    results = _race(api, "Race", CU, 64)
    granted = [r for r in results if r["granted"]]
    denied = [r for r in results if r["denied"]]
    assert len(granted) == 10
    assert len(denied) == 54
    assert all(r["denied"] == {"Race": "pool_full"} for r in denied)
    assert _holders(api.engine, "Race", CU) == 10


def test_64_concurrent_check_outs_into_10_seats_sqlite(api):
    _check_race(api)


@pytest.mark.postgres
def test_64_concurrent_check_outs_into_10_seats_postgres(pg_api):
    _check_race(pg_api)


def test_sessions_are_listed_with_the_dashboards_filter_and_keyset_pages(api):
    with api.client() as app:
        for i in range(7):
            _checkout(app, f"pager.{i}", {CM: CU} if i % 2 else {RO: CU})
    expected = queries.session_usage(api.engine, user="pager", license_types={CM: [CU]})
    seen: list[int] = []
    cursor = None
    with api.client("read") as reader:
        while True:
            params = [("user", "PAGER"), ("license", f"{CM}={CU}"), ("limit", "2")]
            if cursor:
                params.append(("cursor", cursor))
            page = reader.get("/api/v1/sessions", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            assert len(body["sessions"]) <= 2
            seen += [s["session_id"] for s in body["sessions"]]
            for record in body["sessions"]:
                assert record["licenses"][CM] == CU
                assert record["user"].startswith("pager.")
            cursor = body["next_cursor"]
            if cursor is None:
                break
    assert seen == expected["session_id"].tolist()
    assert len(seen) == 3
    with api.client("read") as reader:
        bad = reader.get("/api/v1/sessions", params={"cursor": "nonsense", "idle_over": "5"})
        assert bad.status_code == 422
        assert {f["field"] for f in bad.json()["error"]["fields"]} == {"idle_over"}
        bad = reader.get("/api/v1/sessions", params={"cursor": "bm9wZQ"})
        assert [f["field"] for f in bad.json()["error"]["fields"]] == ["cursor"]
        unknown = reader.get("/api/v1/sessions", params={"license": "Nope=Any"})
        assert unknown.status_code == 422


def test_pools_and_audit_are_read(api):
    with api.client("read") as reader:
        pools = reader.get("/api/v1/pools").json()["pools"]
        frame = queries.pool_usage(api.engine)
        assert [(p["product"], p["license_type"], p["seats"], p["in_use"]) for p in pools] == [
            (r.product, r.license_type, r.seats, r.in_use) for r in frame.itertuples()
        ]
        assert {(p["next_seats"], p["next_seats_at"]) for p in pools} == {(None, None)}
        listing = (
            "Feature  Version  #licenses  Expires  Vendor\nkernel  1.0  4  31-dec-2030  acme\n"
        )
        import_lmstat_i(api.engine, listing, server="api-lic", timezone="UTC")
        pools = reader.get("/api/v1/pools").json()["pools"]
        kernel = next(p for p in pools if p["product"] == "kernel")
        assert (kernel["seats"], kernel["next_seats"]) == (4, 0)
        assert kernel["next_seats_at"].startswith("2031-01-01T00:00:00")
        audit = reader.get("/api/v1/audit", params={"limit": 5})
        assert audit.status_code == 200
        assert len(audit.json()["events"]) <= 5


def test_a_license_servers_session_is_not_the_applications_to_end_or_touch(api):
    snapshot = FLEXLM_FIXTURES / "lmstat-1.txt"
    import_lmstat(api.engine, read_text(str(snapshot)), server="api-lic1", source=str(snapshot))
    served = queries.session_usage(api.engine, source="api-lic1")
    session_id = int(served["session_id"].iloc[0])
    try:
        with api.client() as app:
            for answer in (
                app.delete(f"/api/v1/sessions/{session_id}"),
                app.post(f"/api/v1/sessions/{session_id}/heartbeat"),
            ):
                assert answer.status_code == 409, answer.text
                error = answer.json()["error"]
                assert error["code"] == "not_an_app_session"
                assert error["fields"][0]["field"] == "session_id"
                assert "license server 'api-lic1'" in error["message"]
        after = queries.session_usage(api.engine, source="api-lic1")
        pd.testing.assert_frame_equal(
            after[["session_id", "last_activity"]], served[["session_id", "last_activity"]]
        )
    finally:  # the server checks everything in: the module's other tests see no such sessions
        empty = FLEXLM_FIXTURES / "lmstat-empty.txt"
        import_lmstat(api.engine, read_text(str(empty)), server="api-lic1", source=str(empty))


def test_admin_logout_by_ids_and_by_filter_is_audited_with_the_caller(api):
    with api.client() as app:
        ids = [_checkout(app, f"bulk.{i}", {RO: CU}).json()["session_id"] for i in range(2)]
        other = _checkout(app, "filtered.one", {CM: CU}).json()["session_id"]
    with api.client("admin") as admin:
        result = admin.post("/api/v1/logout", json={"session_ids": [*ids, 2_000_000_000]})
        assert result.json() == {
            "logged_out": ids,
            "already_ended": [],
            "unknown": [2_000_000_000],
            "spared": [],
            "not_removed": {},
        }
        by_filter = admin.post("/api/v1/logout", json={"filter": {"user": "filtered.one"}})
        assert by_filter.json()["logged_out"] == [other]
        both = admin.post("/api/v1/logout", json={"session_ids": [1], "filter": {}})
        assert both.status_code == 422
    events = queries.audit_log(api.engine, actor="token:test-admin")
    assert {*ids, other} <= set(events["session_id"].dropna().astype(int))
    assert set(events["origin"]) == {"127.0.0.1"}


def _refusals(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_t.c.actor, audit_t.c.detail).where(audit_t.c.action == "api_refused")
        ).all()
    return [{"actor": r.actor, **json.loads(r.detail)} for r in rows]


def test_no_token_a_wrong_scope_or_a_revoked_token_is_refused_and_attempts_audited(api):
    before = len(_refusals(api.engine))
    with api.client(None) as anonymous:
        response = anonymous.post("/api/v1/logout", json={"session_ids": [1]})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"
        assert anonymous.get("/api/v1/pools").status_code == 401  # reading: refused, not audited
        bad = anonymous.get("/api/v1/pools", headers={"Authorization": "Basic abc"})
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "invalid_token"
    with api.client("read") as reader:
        refused = reader.post("/api/v1/logout", json={"session_ids": [1]})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
        assert reader.post("/api/v1/sessions/1/heartbeat").status_code == 403
    with api.client("sessions:write") as app:
        assert app.get("/api/v1/sessions").status_code == 403
    token = tokens.add_token(api.engine, "short-lived", "sessions:write")
    assert tokens.revoke_token(api.engine, "short-lived")
    with httpx.Client(base_url=api.base, headers={"Authorization": f"Bearer {token}"}) as gone:
        revoked = _checkout(gone, "x", {RO: CU})
        assert revoked.status_code == 401
        assert revoked.json()["error"]["code"] == "invalid_token"
    new = _refusals(api.engine)[before:]
    assert [(r["actor"], r["status"], r["path"]) for r in new] == [
        ("anonymous", 401, "/api/v1/logout"),
        ("token:test-read", 403, "/api/v1/logout"),
        ("token:test-read", 403, "/api/v1/sessions/1/heartbeat"),
        ("anonymous", 401, "/api/v1/sessions"),
    ]


def test_every_bad_field_is_named(api):
    with api.client() as app:
        response = app.post(
            "/api/v1/sessions",
            json={"user": "", "host": 5, "licenses": {CM: 3}, "extra": True},
        )
        assert response.status_code == 422
        fields = {f["field"] for f in response.json()["error"]["fields"]}
        assert fields == {"user", "host", f"licenses.{CM}", "extra"}
        unknown = _checkout(app, "someone", {CM: "Floating"})
        assert [f["field"] for f in unknown.json()["error"]["fields"]] == [f"licenses.{CM}"]
        unknown = _checkout(app, "someone", {"Nope": CU})
        assert [f["field"] for f in unknown.json()["error"]["fields"]] == ["licenses.Nope"]
        not_json = app.post("/api/v1/sessions", content=b"{", headers=JSON)
        assert not_json.status_code == 400
        assert not_json.json()["error"]["code"] == "invalid_json"
        form = app.post("/api/v1/sessions", data={"user": "x"})
        assert form.status_code == 415
        bad_id = app.post("/api/v1/sessions/abc/heartbeat")
        assert bad_id.status_code == 422
        assert bad_id.json()["error"]["fields"][0]["field"] == "session_id"
        assert app.get("/api/v1/nowhere").json()["error"]["code"] == "not_found"


@contextmanager
def _sign_in(api: Api, user: str, password: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base, timeout=60) as client:
        form = client.get("/login")
        token = re.search(r'name="_xsrf" value="([^"]+)"', form.text)
        assert token is not None, form.text[:500]
        response = client.post(
            "/login",
            data={"_xsrf": token.group(1), "username": user, "password": password, "next": "/"},
        )
        assert response.status_code in (200, 302), response.text
        assert auth.COOKIE_NAME in client.cookies
        yield client


def test_dashboard_accounts_use_the_api_with_their_sign_in_cookie(api):
    with api.client() as app:
        session_id = _checkout(app, "cookie.target", {RO: CU}).json()["session_id"]
    with _sign_in(api, VIEWER, VIEWER_PASSWORD) as viewer:
        assert viewer.get("/api/v1/pools").status_code == 200
        refused = viewer.post("/api/v1/logout", json={"session_ids": [session_id]})
        assert refused.status_code == 403
    with _sign_in(api, ADMIN, ADMIN_PASSWORD) as admin:
        # a cross-site form cannot send JSON: without it, a signed-in request may not act
        form = admin.post("/api/v1/logout", data={"session_ids": str(session_id)})
        assert form.status_code == 403
        done = admin.post("/api/v1/logout", json={"session_ids": [session_id]})
        assert done.json()["logged_out"] == [session_id]
    assert queries.sessions_by_id(api.engine, [session_id])["ended_by"].tolist() == [ADMIN]
    refusals = [r for r in _refusals(api.engine) if r["actor"] in (VIEWER, ADMIN)]
    assert [(r["actor"], r["status"]) for r in refusals] == [(VIEWER, 403), (ADMIN, 403)]


def test_the_openapi_document_and_its_page(api):
    with httpx.Client(base_url=api.base) as anyone:
        spec = anyone.get("/api/v1/openapi.json").json()
        page = anyone.get("/api/v1/docs")
    assert spec["openapi"].startswith("3.")
    for endpoint in ENDPOINTS:
        assert endpoint.method in spec["paths"][endpoint.path]
    schema = spec["components"]["schemas"]["CheckoutRequest"]
    assert set(schema["required"]) == {"user"}
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    text = page.text
    assert "/api/v1/sessions/{session_id}/heartbeat" in text
    assert "<script" not in text
    assert "https://" not in text
    assert "http://" not in text


def test_a_session_checked_out_by_the_api_is_the_same_as_by_the_library(api):
    with api.client() as app:
        session_id = _checkout(app, "same.user", {CM: CU}).json()["session_id"]
    frame = queries.sessions_by_id(api.engine, [session_id])
    assert frame["user"].tolist() == ["same.user"]
    assert frame["host"].tolist() == ["ws1"]
    assert sessions.touch(api.engine, session_id)


def test_metrics_need_a_read_token_when_the_server_has_sign_in(api):
    with httpx.Client(base_url=api.base, timeout=60) as anyone:
        assert anyone.get("/metrics").status_code == 401
    with api.client("read") as reader:
        response = reader.get("/metrics")
        assert response.status_code == 200
        assert "licusage_seats_in_use{" in response.text
    with api.client("sessions:write") as app:
        assert app.get("/metrics").status_code == 403


def test_the_python_client(api):
    from licusage.client import ApiError, Client

    with Client(api.base, api.tokens["sessions:write"]) as app:
        checkout = app.check_out("client.user", {RO: CU}, host="ws9")
        assert checkout.granted == {RO: CU}
        assert app.heartbeat(checkout.session_id) == {"state": "active"}
        with pytest.raises(ApiError) as raised:
            app.check_out("", {RO: CU})
        assert raised.value.status == 422
        assert "user" in raised.value.fields
        with pytest.raises(ApiError, match="403 forbidden"):
            app.pools()
    with Client(api.base, api.tokens["admin"]) as admin:
        assert any(s["session_id"] == checkout.session_id for s in admin.sessions(user="client."))
        assert admin.logout([checkout.session_id])["logged_out"] == [checkout.session_id]
        assert {p["product"] for p in admin.pools()} >= {CM, RO}
    with Client(api.base, api.tokens["sessions:write"]) as app:
        assert app.heartbeat(checkout.session_id)["state"] == "ended"
        assert app.check_in(checkout.session_id) is False
