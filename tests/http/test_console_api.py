"""The console's server side: static files and their headers, management keys, /v1/keys, /v1/usage/summary.

The gateway runs in-process (conftest's ``start_gateway``) with an in-process
``mock`` node; clients are plain HTTP and the official SDKs.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from gateway.http import console as console_module
from gateway.http import keys as keys_module
from gateway.ledger.keys import MANAGEMENT_KEY_REFUSED
from tests.support.keys import TEST_KEY
from tests.conftest import base_config

ADMIN_TOKEN = "admin-token-for-console-tests-0123456789"
CONSOLE_DIR = Path(console_module.__file__).resolve().parent.parent / "console"
KEY_FIELDS = {"key_id", "name", "prefix", "kind", "created_at", "last_used_at", "models", "limit_usd", "spent_usd",
              "expires_at", "revoked", "limit_period", "window_spent_usd", "window_resets_at", "rpm", "tpm",
              "max_concurrent"}


# -- helpers ---------------------------------------------------------------------------------


def call(gateway: Any, method: str, path: str, body: Any = None, key: str | None = None,
         headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any, http.client.HTTPResponse]:
    port = int(gateway.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    all_headers = dict(headers or {})
    if key is not None:
        all_headers["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if data is not None:
        all_headers.setdefault("Content-Type", "application/json")
    conn.request(method, path, data, all_headers)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    try:
        parsed: Any = json.loads(payload) if payload else None
    except ValueError:
        parsed = payload
    return response.status, parsed, response


def admin(gateway: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, parsed, _ = call(gateway, method, path, body, key=ADMIN_TOKEN)
    return status, parsed


def management_key(gateway: Any, account: str = "test", **options: Any) -> dict[str, Any]:
    status, body = admin(gateway, "POST", f"/admin/accounts/{account}/keys",
                         {"name": "console", "kind": "management", **options})
    assert status == 201, body
    return body


def chat(gateway: Any, key: str, model: str = "gpt-4o-mini") -> Any:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Hello console"}], max_tokens=16)


def error_message(body: Any) -> str:
    return body["error"]["message"]


@pytest.fixture
def gateway(start_gateway: Any, tmp_path: Path) -> Any:
    nodes = [{"id": "mock-1", "provider": "mock",
              "models": ["gpt-4o-mini", "claude-sonnet-4-6", "text-embedding-3-small"]}]
    gw = start_gateway(base_config(tmp_path / "state", nodes, admin={"token": ADMIN_TOKEN}))
    status, body = admin(gw, "POST", "/admin/accounts", {"id": "other", "balance_usd": "5"})
    assert status == 201, body
    return gw


@pytest.fixture
def mk(gateway: Any) -> str:
    return management_key(gateway)["key"]


# -- the static console ------------------------------------------------------------------------


def check_security_headers(response: http.client.HTTPResponse) -> None:
    csp = response.getheader("Content-Security-Policy") or ""
    directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"] and directives["style-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"] and directives["object-src"] == ["'none'"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "*" not in csp
    assert response.getheader("X-Frame-Options") == "DENY"
    assert response.getheader("Referrer-Policy") == "no-referrer"
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("Set-Cookie") is None


@pytest.mark.parametrize("path, content_type", [
    ("/console", "text/html"), ("/console/", "text/html"),
    ("/console/static/console.js", "text/javascript"), ("/console/static/console.css", "text/css"),
    ("/console/static/favicon.svg", "image/svg+xml"),
])
def test_console_files_are_served_with_security_headers(gateway: Any, path: str, content_type: str) -> None:
    status, body, response = call(gateway, "GET", path)
    assert status == 200
    assert response.getheader("Content-Type").startswith(content_type)
    check_security_headers(response)
    name = "index.html" if path.rstrip("/") == "/console" else path.rsplit("/", 1)[1]
    assert (body if isinstance(body, bytes) else json.dumps(body).encode()) == (CONSOLE_DIR / name).read_bytes()
    etag = response.getheader("ETag")
    status, _, again = call(gateway, "GET", path, headers={"If-None-Match": etag})
    assert status == 304 and again.getheader("ETag") == etag
    status, head_body, head = call(gateway, "HEAD", path)
    assert status == 200 and not head_body and head.getheader("Content-Length") == str(len((CONSOLE_DIR / name).read_bytes()))


@pytest.mark.parametrize("path", ["/console/static/index.html", "/console/static/nope.js", "/console/static/..%2Fapp.py",
                                  "/console/static/%2e%2e", "/console/../gateway/app.py", "/console/static/"])
def test_only_the_listed_files_are_served(gateway: Any, path: str) -> None:
    status, body, response = call(gateway, "GET", path)
    assert status == 404
    assert isinstance(body, dict) and "error" in body


def test_unknown_console_file_answers_404_with_the_headers(gateway: Any) -> None:
    status, _, response = call(gateway, "GET", "/console/static/missing.js")
    assert status == 404
    check_security_headers(response)


def test_console_posts_are_refused(gateway: Any) -> None:
    status, _, _ = call(gateway, "POST", "/console", {"x": 1})
    assert status == 405


def test_page_has_no_inline_script_style_or_handlers() -> None:
    html = (CONSOLE_DIR / "index.html").read_text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S | re.I)
    assert scripts and all('src="/console/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"<style\b", html, re.I)
    assert not re.search(r"\sstyle\s*=", html, re.I)
    assert not re.search(r"\son[a-z]+\s*=", html, re.I)
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert ref.startswith("/console/static/") and ref.rsplit("/", 1)[1] in console_module.FILES


def test_script_never_writes_html_or_stores_the_key() -> None:
    js = (CONSOLE_DIR / "console.js").read_text()
    code = "\n".join(line for line in js.splitlines() if not line.lstrip().startswith("//"))
    code = code.replace('"http://www.w3.org/2000/svg"', "SVG_NAMESPACE")  # a namespace name, never fetched
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                   "localStorage", "sessionStorage", "document.cookie", "setAttribute(\"style\"", "http://",
                   "https://"):
        assert banned not in code, banned
    assert 'credentials: "omit"' in code


# -- management keys from the admin API ---------------------------------------------------------


def test_admin_creates_management_keys(gateway: Any) -> None:
    created = management_key(gateway)
    assert created["key"].startswith("mk-") and created["kind"] == "management"
    assert created["prefix"] == created["key"][:10]
    status, body = admin(gateway, "POST", "/admin/accounts/test/keys", {"name": "plain"})
    assert status == 201 and body["kind"] == "api" and body["key"].startswith("sk-")
    status, body = admin(gateway, "POST", "/admin/accounts/test/keys", {"name": "api", "kind": "api"})
    assert status == 201 and body["kind"] == "api"
    status, account = admin(gateway, "GET", "/admin/accounts/test")
    kinds = {k["key_id"]: k["kind"] for k in account["keys"]}
    assert kinds[created["key_id"]] == "management"


@pytest.mark.parametrize("body, param", [
    ({"name": "x", "kind": "root"}, "kind"),
    ({"name": "x", "kind": 1}, "kind"),
    ({"name": "x", "kind": "management", "models": ["gpt-4o-mini"]}, None),
    ({"name": "x", "kind": "management", "limit_usd": "1"}, None),
])
def test_admin_refuses_bad_kinds(gateway: Any, body: dict[str, Any], param: str | None) -> None:
    status, answer = admin(gateway, "POST", "/admin/accounts/test/keys", body)
    assert status == 400, answer
    assert answer["error"]["param"] == param


def test_admin_management_key_for_an_unknown_account_is_404(gateway: Any) -> None:
    status, _ = admin(gateway, "POST", "/admin/accounts/nobody/keys", {"name": "x", "kind": "management"})
    assert status == 404


# -- management keys cannot call models -----------------------------------------------------------


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "hi"}),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}),
])
def test_management_key_is_refused_on_openai_model_endpoints(gateway: Any, mk: str, path: str,
                                                              body: dict[str, Any]) -> None:
    before = call(gateway, "GET", "/v1/balance", key=TEST_KEY)[1]
    status, answer, _ = call(gateway, "POST", path, body, key=mk)
    assert status == 403, answer
    assert "management keys cannot call models" in error_message(answer)
    assert answer["error"]["type"] == "permission_error" and answer["error"]["code"] == "management_key"
    assert call(gateway, "GET", "/v1/balance", key=TEST_KEY)[1] == before  # nothing reserved or charged


@pytest.mark.parametrize("path, body", [
    ("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/messages/count_tokens", {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]}),
])
def test_management_key_is_refused_on_anthropic_endpoints(gateway: Any, mk: str, path: str,
                                                          body: dict[str, Any]) -> None:
    status, answer, _ = call(gateway, "POST", path, body, headers={"x-api-key": mk, "anthropic-version": "2023-06-01"})
    assert status == 403, answer
    assert answer["type"] == "error" and answer["error"]["type"] == "permission_error"
    assert "management keys cannot call models" in answer["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/gpt-4o-mini"])
def test_management_key_is_refused_on_models(gateway: Any, mk: str, path: str) -> None:
    status, answer, _ = call(gateway, "GET", path, key=mk)
    assert status == 403 and error_message(answer) == MANAGEMENT_KEY_REFUSED
    assert call(gateway, "GET", path, key=TEST_KEY)[0] == 200


def test_management_key_with_the_sdks_gets_a_clear_permission_error(gateway: Any, mk: str) -> None:
    with pytest.raises(openai.PermissionDeniedError, match="management keys cannot call models"):
        chat(gateway, mk)
    client = anthropic.Anthropic(base_url=gateway.url, api_key=mk, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError, match="management keys cannot call models"):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.PermissionDeniedError, match="management keys cannot call models"):
        openai.OpenAI(base_url=gateway.url + "/v1", api_key=mk, max_retries=0).models.list()


def test_management_key_reads_balance_and_usage(gateway: Any, mk: str) -> None:
    chat(gateway, TEST_KEY)
    status, balance, _ = call(gateway, "GET", "/v1/balance", key=mk)
    assert status == 200 and balance["account"] == "test" and set(balance) >= {"balance_usd", "reserved_usd",
                                                                               "available_usd"}
    status, usage, _ = call(gateway, "GET", "/v1/usage", key=mk)
    assert status == 200 and len(usage["data"]) == 1 and usage["data"][0]["model"] == "gpt-4o-mini"
    status, summary, _ = call(gateway, "GET", "/v1/usage/summary?bucket=hour", key=mk)
    assert status == 200 and summary["data"][0]["requests"] == 1


# -- /v1/keys: who may ------------------------------------------------------------------------------


def refusals(gateway: Any, key: str | None, headers: dict[str, str] | None = None) -> list[tuple[int, Any]]:
    out = []
    for method, path, body in (("GET", "/v1/keys", None), ("POST", "/v1/keys", {"name": "x"}),
                               ("DELETE", "/v1/keys/key_000000000000", None)):
        status, answer, response = call(gateway, method, path, body, key=key, headers=headers)
        assert response.getheader("Cache-Control") == "no-store"
        out.append((status, answer))
    return out


def test_keys_endpoints_need_a_key(gateway: Any) -> None:
    for status, answer in refusals(gateway, None):
        assert status == 401 and answer["error"]["type"] == "authentication_error"


def test_keys_endpoints_refuse_unknown_keys(gateway: Any) -> None:
    for status, answer in refusals(gateway, "mk-not-a-real-key-000000000000000000000000"):
        assert status == 401 and error_message(answer) == "invalid key"


def test_api_keys_cannot_manage_keys(gateway: Any) -> None:
    for status, answer in refusals(gateway, TEST_KEY):
        assert status == 403
        assert "API keys cannot manage keys" in error_message(answer)
        assert answer["error"]["code"] == "management_key_required"
    for status, _ in refusals(gateway, None, {"x-api-key": TEST_KEY}):
        assert status == 403


def test_revoked_and_expired_management_keys_are_refused(gateway: Any) -> None:
    revoked = management_key(gateway)
    assert admin(gateway, "DELETE", f"/admin/keys/{revoked['key_id']}")[0] == 200
    for status, answer in refusals(gateway, revoked["key"]):
        assert status == 401 and "revoked" in error_message(answer)
    expiring = management_key(gateway, expires_at=int(time.time()) + 1)
    time.sleep(1.2)
    for status, answer in refusals(gateway, expiring["key"]):
        assert status == 401 and "expired" in error_message(answer)


def test_cookies_are_not_credentials(gateway: Any, mk: str) -> None:
    """CSRF is impossible by construction: a cookie (what a cross-site form would carry) is never read."""
    for name in ("key", "session", "Authorization", "mk"):
        status, _, _ = call(gateway, "GET", "/v1/keys", headers={"Cookie": f"{name}={mk}"})
        assert status == 401
    status, _, response = call(gateway, "POST", "/v1/keys", raw=b"name=x", headers={
        "Cookie": f"key={mk}", "Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"})
    assert status == 401


def test_no_cross_origin_access_is_granted(gateway: Any, mk: str) -> None:
    status, _, response = call(gateway, "OPTIONS", "/v1/keys", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert status in (404, 405) and response.getheader("Access-Control-Allow-Origin") is None
    status, _, response = call(gateway, "GET", "/v1/keys", key=mk, headers={"Origin": "https://evil.example"})
    assert status == 200 and response.getheader("Access-Control-Allow-Origin") is None


# -- /v1/keys: what it does -------------------------------------------------------------------------


def test_list_shows_only_the_accounts_keys_without_secrets(gateway: Any) -> None:
    created = management_key(gateway)
    other = management_key(gateway, "other")
    status, listing, _ = call(gateway, "GET", "/v1/keys", key=created["key"])
    assert status == 200 and listing["account"] == "test" and listing["current_key_id"] == created["key_id"]
    ids = [k["key_id"] for k in listing["data"]]
    assert created["key_id"] in ids and other["key_id"] not in ids
    assert len(ids) == 2  # the config key and the management key
    for key in listing["data"]:
        assert set(key) == KEY_FIELDS
    text = json.dumps(listing)
    assert created["key"] not in text and TEST_KEY not in text and "hash" not in text
    kinds = {k["key_id"]: k["kind"] for k in listing["data"]}
    assert sorted(kinds.values()) == ["api", "management"]


def test_create_an_api_key_and_use_it(gateway: Any, mk: str) -> None:
    status, created, response = call(gateway, "POST", "/v1/keys", {"name": "laptop"}, key=mk)
    assert status == 201, created
    assert response.getheader("Cache-Control") == "no-store"
    assert created["key"].startswith("sk-") and created["kind"] == "api" and created["account"] == "test"
    assert created["name"] == "laptop" and created["models"] is None and created["limit_usd"] is None
    reply = chat(gateway, created["key"])
    assert reply.status_code == 200 and reply.parse().choices[0].message.content
    listing = call(gateway, "GET", "/v1/keys", key=mk)[1]
    row = next(k for k in listing["data"] if k["key_id"] == created["key_id"])
    assert row["last_used_at"] is not None and row["spent_usd"] != "0.000000"
    assert created["key"] not in json.dumps(listing)


def test_create_with_models_limit_and_expiry(gateway: Any, mk: str) -> None:
    expires = int(time.time()) + 3600
    status, created, _ = call(gateway, "POST", "/v1/keys", {"name": "ci", "models": ["Claude-Sonnet-4.6"],
                                                            "limit_usd": "0.50", "expires_at": expires}, key=mk)
    assert status == 201, created
    assert created["models"] == ["claude-sonnet-4-6"] and created["limit_usd"] == "0.500000"
    assert created["expires_at"] == expires
    with pytest.raises(openai.PermissionDeniedError):
        chat(gateway, created["key"], "gpt-4o-mini")
    assert chat(gateway, created["key"], "claude-sonnet-4-6").status_code == 200


@pytest.mark.parametrize("body, status, param", [
    ({"name": "x", "kind": "management"}, 403, "kind"),
    ({"name": "x", "kind": "other"}, 400, "kind"),
    ({"name": "x", "account": "other"}, 400, "account"),
    ({"name": ""}, 400, "name"),
    ({"name": "a\nb"}, 400, "name"),
    ({}, 400, "name"),
    ({"name": "x", "models": []}, 400, "models"),
    ({"name": "x", "models": ["no-such-model"]}, 400, "models[0]"),
    ({"name": "x", "limit_usd": "-1"}, 400, "limit_usd"),
    ({"name": "x", "limit_usd": 0.1}, 201, None),  # a JSON number is an exact decimal
    ({"name": "x", "expires_at": "tomorrow"}, 400, "expires_at"),
])
def test_create_validates_its_fields(gateway: Any, mk: str, body: dict[str, Any], status: int,
                                     param: str | None) -> None:
    got, answer, _ = call(gateway, "POST", "/v1/keys", body, key=mk)
    assert got == status, answer
    if status != 201:
        assert answer["error"]["param"] == param
    else:
        assert answer["kind"] == "api" and answer["limit_usd"] == "0.100000"


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"name": NaN}'])
def test_create_refuses_bad_json(gateway: Any, mk: str, raw: bytes) -> None:
    status, answer, _ = call(gateway, "POST", "/v1/keys", raw=raw, key=mk)
    assert status == 400, answer


def test_self_service_never_creates_management_keys(gateway: Any, mk: str) -> None:
    call(gateway, "POST", "/v1/keys", {"name": "x", "kind": "management"}, key=mk)
    listing = call(gateway, "GET", "/v1/keys", key=mk)[1]
    assert [k["kind"] for k in listing["data"]].count("management") == 1


def test_active_key_cap(gateway: Any, mk: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys_module, "MAX_ACTIVE_KEYS", 3)  # the config key + 2
    first = call(gateway, "POST", "/v1/keys", {"name": "a"}, key=mk)[1]
    assert call(gateway, "POST", "/v1/keys", {"name": "b"}, key=mk)[0] == 201
    status, answer, _ = call(gateway, "POST", "/v1/keys", {"name": "c"}, key=mk)
    assert status == 400 and "revoke some first" in error_message(answer)
    assert call(gateway, "DELETE", f"/v1/keys/{first['key_id']}", key=mk)[0] == 200
    assert call(gateway, "POST", "/v1/keys", {"name": "c"}, key=mk)[0] == 201


def test_revoke_own_key(gateway: Any, mk: str) -> None:
    created = call(gateway, "POST", "/v1/keys", {"name": "temp"}, key=mk)[1]
    assert chat(gateway, created["key"]).status_code == 200
    status, answer, response = call(gateway, "DELETE", f"/v1/keys/{created['key_id']}", key=mk)
    assert status == 200 and answer == {"key_id": created["key_id"], "revoked": True, "signed_out": False}
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        chat(gateway, created["key"])
    assert call(gateway, "DELETE", f"/v1/keys/{created['key_id']}", key=mk)[0] == 200  # idempotent
    row = next(k for k in call(gateway, "GET", "/v1/keys", key=mk)[1]["data"] if k["key_id"] == created["key_id"])
    assert row["revoked"] is True


def test_revoking_another_accounts_key_is_404(gateway: Any, mk: str) -> None:
    status, theirs = admin(gateway, "POST", "/admin/accounts/other/keys", {"name": "theirs"})
    assert status == 201
    their_mk = management_key(gateway, "other")
    for key_id in (theirs["key_id"], their_mk["key_id"], "key_ffffffffffff", "x" * 300):
        status, answer, _ = call(gateway, "DELETE", f"/v1/keys/{key_id}", key=mk)
        assert status == 404, answer
    assert chat(gateway, theirs["key"]).status_code == 200  # untouched
    assert call(gateway, "GET", "/v1/keys", key=their_mk["key"])[0] == 200


def test_revoking_the_signed_in_management_key_signs_out(gateway: Any) -> None:
    created = management_key(gateway)
    spare = management_key(gateway)
    status, answer, _ = call(gateway, "DELETE", f"/v1/keys/{created['key_id']}", key=created["key"])
    assert status == 200 and answer["signed_out"] is True
    assert call(gateway, "GET", "/v1/keys", key=created["key"])[0] == 401
    assert call(gateway, "GET", "/v1/keys", key=spare["key"])[0] == 200


def test_keys_paths_refuse_other_methods(gateway: Any, mk: str) -> None:
    assert call(gateway, "DELETE", "/v1/keys", key=mk)[0] == 405
    assert call(gateway, "PUT", "/v1/keys", {"name": "x"}, key=mk)[0] == 405
    assert call(gateway, "GET", "/v1/keys/key_000000000000", key=mk)[0] == 405


# -- /v1/usage/summary --------------------------------------------------------------------------------


def test_usage_summary_groups_by_bucket_and_model(gateway: Any, mk: str) -> None:
    for model in ("gpt-4o-mini", "gpt-4o-mini", "claude-sonnet-4-6"):
        chat(gateway, TEST_KEY, model)
    for bucket, width in (("hour", 3600), ("day", 86400)):
        status, summary, response = call(gateway, "GET", f"/v1/usage/summary?bucket={bucket}", key=mk)
        assert status == 200 and summary["bucket"] == bucket and summary["bucket_seconds"] == width
        assert response.getheader("Cache-Control") == "no-store"
        assert summary["first_bucket"] % width == 0
        rows = {row["model"]: row for row in summary["data"]}
        assert rows["gpt-4o-mini"]["requests"] == 2 and rows["claude-sonnet-4-6"]["requests"] == 1
        usage = call(gateway, "GET", "/v1/usage", key=mk)[1]["data"]
        for model, row in rows.items():
            mine = [r for r in usage if r["model"] == model]
            assert row["start"] % width == 0
            assert row["input_tokens"] == sum(r["input_tokens"] for r in mine)
            assert row["output_tokens"] == sum(r["output_tokens"] for r in mine)
            nano = sum(round(float(r["cost_usd"]) * 1e9) for r in mine)
            assert round(float(row["cost_usd"]) * 1e9) == nano
    # an API key may read it too, and a window after the requests is empty
    status, later, _ = call(gateway, "GET", f"/v1/usage/summary?bucket=hour&since={int(time.time()) + 5}",
                            key=TEST_KEY)
    assert status == 200 and later["data"] == []
    # the other account sees nothing of this one
    other = management_key(gateway, "other")
    assert call(gateway, "GET", "/v1/usage/summary", key=other["key"])[1]["data"] == []


@pytest.mark.parametrize("query, param", [
    ("bucket=week", "bucket"), ("since=yesterday", "since"), ("since=0", "since"), ("bucket=hour&limit=5", "limit"),
])
def test_usage_summary_validates_its_query(gateway: Any, mk: str, query: str, param: str) -> None:
    status, answer, _ = call(gateway, "GET", f"/v1/usage/summary?{query}", key=mk)
    assert status == 400 and answer["error"]["param"] == param


def test_usage_summary_needs_a_key(gateway: Any) -> None:
    assert call(gateway, "GET", "/v1/usage/summary")[0] == 401
    assert call(gateway, "GET", "/v1/usage/summary", key="sk-nope")[0] == 401
