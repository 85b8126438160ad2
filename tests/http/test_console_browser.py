"""The console end to end in a real browser: Debian's headless Chromium driven by Playwright (sync API).

Sign in with a management key, read the balance, create an API key, call a
model with it through the official OpenAI SDK, see the request in the usage
table after a refresh, revoke the key, and see the next call refused with 401.

Needs ``pip install playwright`` and ``apt-get install chromium`` (``.ci/run``
does both); ``playwright install`` is never used: the test launches
``/usr/bin/chromium``. Skipped where either is missing.

Screenshots of the main pages go to a temp folder (printed, and kept by
pytest under its basetemp). The overview is also copied to
``docs/console.png`` for the README when that file is missing or
``INFERMESH_UPDATE_SCREENSHOTS=1`` is set, so that a plain test run does not
rewrite a tracked file.
"""

from __future__ import annotations

import asyncio
import http.client
import inspect
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest

from gateway.cli.render import usd  # the admin CLI's rule for amounts, which the console follows

from tests.support.keys import TEST_KEY
from tests.conftest import ROOT, base_config
from tests.support.http import request

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN_TOKEN = "admin-token-for-console-browser-test-0123"
DOCS_SCREENSHOT = ROOT / "docs" / "console.png"

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed")

# USD per 1M tokens in base_config -> nano-dollars per token (x 1000): input, output.
RATES = {"gpt-4o-mini": (150, 600), "claude-sonnet-4-6": (3000, 15000)}


def admin(gateway: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    reply = request(int(gateway.url.rsplit(":", 1)[1]), method, path, body, key=ADMIN_TOKEN)
    return reply.status, reply.json()


def seed_history(gateway: Any, days: int = 12) -> None:
    """Two weeks of earlier requests on the config key, through the ledger's reserve/settle, so the chart has a shape.

    Works with the embedded (synchronous) ledger and with an async ledger backend alike.
    """

    async def settled(value: Any) -> Any:
        return await value if inspect.isawaitable(value) else value

    async def seed() -> None:
        ledger = gateway.services.ledger
        _, key = await settled(ledger.authenticate(TEST_KEY))
        now = time.time()
        for day in range(days, 0, -1):
            for n in range(1 + (day * 7) % 5):
                model = "gpt-4o-mini" if (day + n) % 3 else "claude-sonnet-4-6"
                tokens_in, tokens_out = 400 + 137 * ((day * 5 + n) % 9), 120 + 61 * ((day + 3 * n) % 7)
                cost = tokens_in * RATES[model][0] + tokens_out * RATES[model][1]
                reservation = await settled(ledger.reserve(key, cost))
                await settled(ledger.settle(reservation, cost, {
                    "request_id": f"seed-{day}-{n}", "model": model, "node": "mock-1", "input_tokens": tokens_in,
                    "output_tokens": tokens_out, "cached_tokens": 0, "estimated": False, "status": 200,
                    "latency_ms": 40.0, "ttft_ms": 10.0, "endpoint": "chat", "stream": False,
                    "created_at": now - day * 86400 + n * 1800}))

    asyncio.run_coroutine_threadsafe(seed(), gateway._loop).result(30)


@pytest.fixture
def gateway(start_gateway: Any, tmp_path: Path) -> Any:
    nodes = [{"id": "mock-1", "provider": "mock", "models": ["gpt-4o-mini", "claude-sonnet-4-6",
                                                             "text-embedding-3-small"]}]
    return start_gateway(base_config(tmp_path / "state", nodes, admin={"token": ADMIN_TOKEN}))


@pytest.fixture
def browser() -> Any:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def test_console_end_to_end(gateway: Any, browser: Any, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    seed_history(gateway)
    status, mk = admin(gateway, "POST", "/admin/accounts/test/keys", {"name": "console", "kind": "management"})
    assert status == 201 and mk["key"].startswith("mk-")

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(10_000)
    problems: list[str] = []
    urls: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: urls.append(r.url))

    # -- sign in: an API key is turned away with an explanation, the management key gets in
    page.goto(gateway.url + "/console")
    page.screenshot(path=str(shots / "signin.png"))
    page.fill("#signin-key", TEST_KEY)
    page.click("#signin-button")
    sync_api.expect(page.locator("#signin-error")).to_have_text(
        "That is an API key (sk-). Sign in with your account's management key (mk-).")  # said once, not twice
    assert problems == ["console error: Failed to load resource: the server responded with a status of 403 "
                        "(Forbidden)"]  # Chromium logs the refused /v1/keys call; nothing else
    problems.clear()
    page.fill("#signin-key", mk["key"])
    page.click("#signin-button")
    sync_api.expect(page.locator("#app")).to_be_visible()
    assert page.input_value("#signin-key") == ""  # the key is not left in the form
    sync_api.expect(page.locator("#account-id")).to_have_text("test")

    # -- the balance is the account's
    balance = json.loads(page.evaluate("""async (k) => JSON.stringify(await (await fetch('/v1/balance',
        {headers: {Authorization: 'Bearer ' + k}})).json())""", mk["key"]))
    sync_api.expect(page.locator("#balance")).to_have_text(usd(balance["balance_usd"]))  # e.g. $99.99871
    sync_api.expect(page.locator("#available")).to_have_text(usd(balance["available_usd"]))
    sync_api.expect(page.locator("#reserved")).to_have_text("$0.00")

    # -- create an API key with a daily limit and rate limits; its plaintext is shown once
    page.click("[data-tab=keys]")
    page.fill("#create-name", "browser key")
    page.fill("#create-limit", "5")
    page.select_option("#create-period", "day")
    page.fill("#create-rpm", "30")
    page.fill("#create-concurrent", "2")
    page.click("#create-button")
    sync_api.expect(page.locator("#new-key")).to_be_visible()
    new_key = page.input_value("#new-key-value")
    assert new_key.startswith("sk-") and len(new_key) > 40
    row = page.locator("#keys-table tbody tr", has_text="browser key")
    sync_api.expect(row).to_have_count(1)
    sync_api.expect(row).to_contain_text(new_key[:10])
    sync_api.expect(row.locator(".pill")).to_have_text("active")
    sync_api.expect(row).to_contain_text("$0.00 of $5.00")
    sync_api.expect(row).to_contain_text("today")
    sync_api.expect(row).to_contain_text("30 req/min · 2 at once")
    # the signed-in management key shows when it was used (signing in used it)
    sync_api.expect(page.locator("#keys-table tbody tr", has_text="console").locator("td").nth(1)).not_to_have_text(
        "never")
    # at 1280 px the table fits its card: no horizontal scrolling, every Revoke button inside the card
    fits = page.evaluate("""() => {
        const wrap = document.querySelector('#keys-table').closest('.table-wrap');
        const card = wrap.closest('.card').getBoundingClientRect();
        const buttons = Array.from(document.querySelectorAll('#keys-table button.revoke'));
        return {scroll: wrap.scrollWidth - wrap.clientWidth, buttons: buttons.length,
                inside: buttons.every((b) => b.getBoundingClientRect().right <= card.right)};
    }""")
    assert fits == {"scroll": 0, "buttons": 3, "inside": True}, fits
    page.screenshot(path=str(shots / "keys.png"), full_page=True)

    # -- use it from Python through the gateway
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=new_key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello from the console test"}], max_tokens=20)
    assert raw.status_code == 200 and raw.parse().choices[0].message.content
    request_id = raw.headers["x-request-id"]

    # -- the request shows up in usage after a refresh, on the key's row too
    page.click("[data-tab=overview]")
    sync_api.expect(page.locator(f'#usage-table tr[data-request-id="{request_id}"]')).to_have_count(0)
    page.click("#refresh")
    usage_row = page.locator(f'#usage-table tr[data-request-id="{request_id}"]')
    sync_api.expect(usage_row).to_have_count(1)
    sync_api.expect(usage_row).to_contain_text("gpt-4o-mini")
    sync_api.expect(usage_row).to_contain_text("browser key")
    sync_api.expect(usage_row).to_contain_text("200")
    assert page.locator("#chart svg rect.bar").count() >= 10
    sync_api.expect(page.locator("#chart-legend li")).to_have_count(2)
    page.select_option("#chart-metric", "tokens")
    assert page.locator("#chart svg rect.bar").count() >= 10
    page.select_option("#chart-metric", "cost")
    page.screenshot(path=str(shots / "overview.png"), full_page=True)
    page.screenshot(path=str(shots / "overview-top.png"))  # the viewport: what the README shows

    # -- prices and quick start come from the gateway itself
    page.click("[data-tab=pricing]")
    sync_api.expect(page.locator("#pricing-table tbody tr")).to_have_count(3)
    sync_api.expect(page.locator("#pricing-table")).to_contain_text("claude-sonnet-4-6")
    claude_row = page.locator("#pricing-table tbody tr", has_text="claude-sonnet-4-6")
    sync_api.expect(claude_row).to_contain_text("$3.75")  # the cache write prices
    sync_api.expect(claude_row).to_contain_text("$6.00")
    prices = page.locator("#pricing-table tbody td.num").all_text_contents()
    assert prices and all(p == "—" or re.fullmatch(r"\$\d+\.\d{2,6}", p) for p in prices), prices
    assert "$0.60" in prices and "$3.00" in prices  # not $0.6, $3.0
    page.screenshot(path=str(shots / "pricing.png"), full_page=True)
    page.click("[data-tab=quickstart]")
    sync_api.expect(page.locator("#qs-openai")).to_contain_text(f'base_url="{gateway.url}/v1"')
    sync_api.expect(page.locator("#qs-openai")).to_contain_text(new_key)
    sync_api.expect(page.locator("#qs-anthropic")).to_contain_text(f'base_url="{gateway.url}"')
    sync_api.expect(page.locator("#qs-curl")).to_contain_text(f"{gateway.url}/v1/chat/completions")
    claude = json.loads(page.text_content("#qs-claude") or "{}")
    assert claude["env"]["ANTHROPIC_BASE_URL"] == gateway.url and claude["env"]["ANTHROPIC_AUTH_TOKEN"] == new_key
    page.screenshot(path=str(shots / "quickstart.png"), full_page=True)

    # -- revoke it (two clicks), then the next request with it is refused
    page.click("[data-tab=keys]")
    row.locator("button.revoke").click()
    sync_api.expect(row.locator("button.revoke")).to_have_text("Confirm revoke")
    row.locator("button.revoke").click()
    sync_api.expect(row.locator(".pill")).to_have_text("revoked")
    sync_api.expect(row.locator("button.revoke")).to_have_count(0)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}])
    assert refused.value.status_code == 401 and "revoked" in str(refused.value)

    # -- signing out forgets everything
    page.click("#signout")
    sync_api.expect(page.locator("#signin")).to_be_visible()
    assert page.locator("#usage-table tbody tr").count() == 0 and page.text_content("#balance") == ""

    # -- nothing leaked, nothing fetched from elsewhere, no CSP violation or script error
    assert problems == []
    origin = urlsplit(gateway.url).netloc
    assert urls and all(urlsplit(u).netloc == origin for u in urls), urls
    assert not any("mk-" in u or "sk-" in u for u in urls), urls
    assert page.context.cookies() == []

    print(f"\nconsole screenshots: {shots}")
    if not DOCS_SCREENSHOT.exists() or os.environ.get("INFERMESH_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shots / "overview-top.png", DOCS_SCREENSHOT)
