"""``python gateway.py admin ...`` end to end against a running gateway process, and the start-up checks.

Each CLI call is a real subprocess, as an operator types it; the gateway is
``gateway.py`` itself (``gateway_process``), so the default ``--url`` is read from
the same config file the gateway serves.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from gateway.cli.render import parse_time, usd
from gateway.cli.startup import demo_key_refusal, is_loopback
from gateway.config import parse_config
from gateway.ledger.embedded import EmbeddedBackend
from tests.conftest import ROOT
from tests.ops.conftest import DEMO_KEY, demo_config

TOKEN = "admin-cli-test-token"


def admin(*args: str, token: str | None = TOKEN, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "INFERMESH_ADMIN_TOKEN"}
    if token is not None:
        env["INFERMESH_ADMIN_TOKEN"] = token
    return subprocess.run([sys.executable, str(ROOT / "gateway.py"), "admin", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=30)


@pytest.fixture
def gateway(gateway_process: Any, tmp_path: Path) -> Any:
    config = demo_config(tmp_path)
    config["admin"] = {"token": TOKEN}
    config["logging"] = {"access_log": False}
    return gateway_process(config)


def test_a_first_day_with_the_admin_cli(gateway: Any) -> None:
    url = ("--url", gateway.url)
    created = admin("accounts", "create", "team", "--balance", "20", *url)
    assert created.returncode == 0 and created.stdout.strip() == "created account team with $20.00"

    topped = admin("accounts", "credit", "team", "5.5", "--reference", "invoice-1", *url)
    assert topped.returncode == 0, topped.stderr
    assert topped.stdout.strip() == "credited $5.50 to team; balance now $25.50"
    again = admin("accounts", "credit", "team", "5.5", "--reference", "invoice-1", "--json", *url)
    assert again.returncode == 0 and json.loads(again.stdout)["applied"] is False
    assert json.loads(again.stdout)["balance_usd"] == "25.500000"

    made = admin("keys", "create", "team", "--name", "alice", "--json", *url)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["key"].startswith("sk-") and key["name"] == "alice"
    human = admin("keys", "create", "team", "--name", "bob", *url)
    assert human.stdout.startswith("sk-") and "only time the key is shown" in human.stdout
    limited = admin("keys", "create", "team", "--name", "carol", "--limit-usd", "20", "--period", "day",
                    "--rpm", "60", "--tpm", "100000", "--max-concurrent", "4", "--json", *url)
    assert limited.returncode == 0, limited.stderr
    assert json.loads(limited.stdout)["limit_period"] == "day" and json.loads(limited.stdout)["rpm"] == 60
    refused = admin("keys", "create", "team", "--name", "dave", "--period", "day", *url)
    assert refused.returncode == 1 and "'limit_period' needs 'limit_usd'" in refused.stderr

    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key["key"], max_retries=0)
    sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5)

    listing = admin("accounts", "list", *url)
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["account", "balance", "reserved", "available", "active", "keys"]
    team = next(line.split() for line in lines if line.startswith("team"))
    assert team[-1] == "3" and team[1].startswith("$25.49")  # one cheap request spent

    shown = admin("accounts", "show", "team", *url)
    assert shown.returncode == 0 and key["key_id"] in shown.stdout and "alice" in shown.stdout
    carol = next(line for line in shown.stdout.splitlines() if " carol " in line)
    assert "$20.00/day" in carol and "60 rpm, 100000 tpm, 4 concurrent" in carol
    assert key["key"] not in shown.stdout  # the plaintext is never shown again

    usage = admin("usage", "--account", "team", "--csv", *url)
    rows = list(csv.DictReader(io.StringIO(usage.stdout)))
    assert len(rows) == 1 and rows[0]["key_id"] == key["key_id"] and rows[0]["model"] == "gpt-4o-mini"
    table = admin("usage", "--account", "team", "--since", "2000-01-01", *url)
    assert "gpt-4o-mini" in table.stdout and "1 record(s)" in table.stdout
    none_yet = admin("usage", "--account", "team", "--until", "2000-01-01", *url)
    assert "(none)" in none_yet.stdout

    revoked = admin("keys", "revoke", key["key_id"], *url)
    assert revoked.returncode == 0 and revoked.stdout.strip() == f"revoked {key['key_id']}"
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_errors_exit_1_with_the_apis_message(gateway: Any) -> None:
    url = ("--url", gateway.url)
    missing = admin("accounts", "show", "ghost", *url)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip() == "error: no account 'ghost' (HTTP 404)"
    bad = admin("accounts", "credit", "demo", "-3", "--reference", "r", *url)
    assert bad.returncode != 0  # argparse or the API refuses a negative amount, never a traceback
    assert "Traceback" not in bad.stderr
    wrong = admin("accounts", "list", *url, token="not-the-token")
    assert wrong.returncode == 1 and "missing or invalid admin token" in wrong.stderr
    assert "not-the-token" not in wrong.stderr
    no_token = admin("accounts", "list", *url, token=None)
    assert no_token.returncode == 1 and "INFERMESH_ADMIN_TOKEN" in no_token.stderr
    bad_time = admin("usage", "--since", "yesterday", *url)
    assert bad_time.returncode == 1 and "--since" in bad_time.stderr


def test_url_defaults_to_the_configs_listen_address(gateway: Any, tmp_path: Path) -> None:
    config = yaml.safe_load(gateway.config_path.read_text())
    config["listen"]["port"] = gateway.port  # the file the operator wrote names the port it serves on
    path = tmp_path / "ops.yaml"
    path.write_text(yaml.safe_dump(config))
    listing = admin("accounts", "list", "--config", str(path), "--json")
    assert listing.returncode == 0, listing.stderr
    assert [a["id"] for a in json.loads(listing.stdout)["data"]] == ["demo"]
    before = admin("--config", str(path), "--json", "accounts", "show", "demo")  # options before the command too
    assert before.returncode == 0 and json.loads(before.stdout)["id"] == "demo"


def test_admin_api_off_and_gateway_down(gateway_process: Any, tmp_path: Path) -> None:
    off = gateway_process(demo_config(tmp_path))  # no admin token: the admin API answers 404
    result = admin("accounts", "list", "--url", off.url)
    assert result.returncode == 1 and "admin.token" in result.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    down = admin("accounts", "list", "--url", f"http://127.0.0.1:{free}")
    assert down.returncode == 1 and "cannot reach the gateway" in down.stderr and "Traceback" not in down.stderr


# -- start-up checks ---------------------------------------------------------------------------


def run_gateway(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "gateway.py"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=30)


def test_refuses_a_public_address_while_the_demo_key_works(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(demo_config(tmp_path)))
    result = run_gateway("--config", str(path), "--host", "0.0.0.0", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "--allow-demo-key" in result.stderr
    assert DEMO_KEY in result.stderr


def test_demo_key_check_asks_the_ledger_not_the_yaml(tmp_path: Path) -> None:
    asyncio.run(_demo_key_check(tmp_path))


async def _demo_key_check(tmp_path: Path) -> None:
    """Deleting the demo account from the YAML does not revoke the key the ledger holds; revoking does."""
    ledger = EmbeddedBackend.open(str(tmp_path / "state"), parse_config(demo_config(tmp_path), {}).accounts)
    try:
        assert await demo_key_refusal(ledger, False, "0.0.0.0", allowed=False)  # YAML no longer has it
        assert await demo_key_refusal(ledger, False, "0.0.0.0", allowed=True) is None
        assert await demo_key_refusal(ledger, False, "127.0.0.1", allowed=False) is None
        demo_key_id = (await ledger.account("demo"))["keys"][0]["key_id"]
        await ledger.revoke_key(demo_key_id)
        assert await demo_key_refusal(ledger, True, "10.0.0.5", allowed=False) is None
    finally:
        await ledger.close()


def test_loopback_names() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com"))


def test_port_in_use_and_unreadable_config_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(demo_config(tmp_path)))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_gateway("--config", str(path), "--port", str(port), cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.strip() == (f"cannot listen on 127.0.0.1:{port}: the port is already in use "
                                         f"(another gateway?); stop it or choose another port with --port")
        shared = demo_config(tmp_path)  # --workers checks the port before forking (and before Redis)
        shared["state"].update(backend="redis", redis_url="redis://127.0.0.1:1/0")
        (tmp_path / "workers.yaml").write_text(yaml.safe_dump(shared))
        workers = run_gateway("--config", str(tmp_path / "workers.yaml"), "--workers", "2", "--port", str(port),
                              cwd=tmp_path)
    assert workers.returncode == 1 and workers.stdout == ""
    assert workers.stderr.strip().startswith(f"cannot listen on 127.0.0.1:{port}: the port is already in use")
    missing = run_gateway("--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "nope.yaml: cannot read: No such file or directory" in missing.stderr


def test_version() -> None:
    from gateway.version import __version__
    result = run_gateway("--version", cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == f"Infer Mesh {__version__}"


def test_example_config_with_one_provider_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(OPENAI_API_KEY="sk-test", INFERMESH_ADMIN_TOKEN="t")
    result = subprocess.run([sys.executable, str(ROOT / "gateway.py"), "--check-config",
                             str(ROOT / "conf" / "example.yaml")], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout
    left_out = [line for line in result.stdout.splitlines() if "left out" in line and "nodes[" in line]
    assert len(left_out) == 4 and any("ANTHROPIC_API_KEY is not set" in line for line in left_out)
    assert result.stdout.splitlines()[-1].endswith("ok (1 nodes, 3 models)")


def test_money_and_time_for_people() -> None:
    assert [usd(x) for x in ("5", "4.999870960", "0", "0.6", "-0.25", None)] == \
        ["$5.00", "$4.999871", "$0.00", "$0.60", "-$0.25", "-"]
    assert parse_time("1970-01-02") == 86400 and parse_time("1970-01-01T01:00:00+01:00") == 0
    assert parse_time("86400") == 86400
