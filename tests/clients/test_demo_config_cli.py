"""Claude Code, Codex and Gemini CLI on the demo config (``conf/gateway.yaml``, in-process ``mock`` nodes) finish at once.

The mock model calls a tool only when asked by name; before, it called the
first tool offered, and Claude Code's first tool starts a sub-agent: 79
requests and $0.62 of the demo's $5 for ``say hi``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from tests.clients.conftest import Command, claude_command, codex_command, execute, gemini_command, usage_records
from tests.http.test_demo_config import DEMO_KEY, demo_config


@pytest.mark.parametrize(("cli", "model"), [(claude_command, "claude-sonnet-4-6"), (codex_command, "gpt-4o-mini"),
                                            (gemini_command, "gpt-4o-mini")],
                         ids=["claude-code", "codex", "gemini-cli"])
def test_agent_cli_on_the_demo_config_says_hi_in_one_request(start_gateway, tmp_path: Path,
                                                             cli: Callable[..., Command], model: str) -> None:
    gateway = start_gateway(demo_config(tmp_path))
    proc = execute(cli(gateway.url, DEMO_KEY, model, tmp_path / "home", "say hi"))
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "say hi" in proc.stdout
    records = usage_records(gateway.url, DEMO_KEY)
    print(f"demo config, {cli.__name__}: {len(records)} request(s)")
    assert 1 <= len(records) <= 2 and all(r["status"] == 200 for r in records), records
