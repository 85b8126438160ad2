"""Today's Gemini CLI (``gemini -p``, headless) through the gateway, on every kind of node.

Gemini CLI is pointed at the gateway the way the README says: ``GOOGLE_GEMINI_BASE_URL``
and ``GEMINI_API_KEY``, the API-key auth type in ``~/.gemini/settings.json``,
and the workspace in ``~/.gemini/trustedFolders.json``. It streams
``/v1beta/models/{model}:streamGenerateContent?alt=sse`` with the key in
``x-goog-api-key``, a long system instruction, ``thinkingConfig`` and its own
function declarations (``parametersJsonSchema``). Each run must exit 0 and
print the model's answer, in a bounded number of requests, each received by
the node in its own protocol, key and model id and billed exactly once. The
demo-config run (an in-process ``mock`` node) is in ``test_demo_config_cli.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.keys import TEST_KEY
from tests.clients.conftest import KINDS, CliGateway, NodeKind, Run, gemini_command, run_cli
from tests.clients.test_claude_code_cli import check_node_side

KIND_IDS = [kind.kind for kind in KINDS]
PATHS = {"anthropic": "/v1/messages", "openai-chat": "/v1/chat/completions", "openai-responses": "/v1/chat/completions",
         "gemini": "/v1beta/models/{model}:streamGenerateContent"}


def gemini(cli: CliGateway, kind: NodeKind, prompt: str, home: Path) -> Run:
    return run_cli(cli, kind, gemini_command(cli.url, TEST_KEY, kind.model, home, prompt))


def _declarations(kind: NodeKind, body: dict) -> set[str]:
    if kind.kind == "gemini":
        return {d["name"] for tool in body["tools"] for d in tool["functionDeclarations"]}
    if kind.kind == "anthropic":
        return {t["name"] for t in body["tools"]}
    return {t["function"]["name"] for t in body["tools"]}


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_gemini_cli_answers_on_every_node_kind(cli_gateway: CliGateway, kind: NodeKind, tmp_path: Path) -> None:
    run = gemini(cli_gateway, kind, "Reply with the word pelican", tmp_path)
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "Reply with the word pelican" in run.stdout  # the mock model echoes what the user typed
    check_node_side(cli_gateway, kind, run, max_requests=2, paths=PATHS)
    seen = cli_gateway.last(kind)
    body = seen["body"]
    assert {"read_file", "list_directory", "glob"} <= _declarations(kind, body)  # headless: read-only tools
    if kind.kind == "gemini":  # passed through: Gemini CLI's own fields reach Gemini untouched
        assert seen["query"] == "alt=sse" and "thinkingConfig" in body["generationConfig"]
        assert "Gemini CLI" in json.dumps(body["systemInstruction"])
    elif kind.kind == "anthropic":
        assert "Gemini CLI" in json.dumps(body["system"]) and body["stream"] is True
    else:
        assert body["messages"][0]["role"] == "system" and body["stream"] is True


@pytest.mark.parametrize("kind", [KINDS[0], KINDS[3]], ids=["anthropic", "gemini"])
def test_gemini_cli_reads_a_file_with_its_own_tool(cli_gateway: CliGateway, kind: NodeKind, tmp_path: Path) -> None:
    """The node asks for Gemini CLI's read_file; the CLI runs it and sends the result back (ids kept)."""
    (tmp_path / "work").mkdir(parents=True)
    (tmp_path / "work" / "notes.txt").write_text("the secret word is cormorant\n")
    run = gemini(cli_gateway, kind, 'call read_file {"file_path": "notes.txt"}', tmp_path)
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "The tool said:" in run.stdout and "cormorant" in run.stdout
    check_node_side(cli_gateway, kind, run, max_requests=3, paths=PATHS)
    body = cli_gateway.last(kind)["body"]
    if kind.kind == "anthropic":  # translated both ways: the tool_use id came back as the functionResponse id
        (call,) = [b for b in body["messages"][-2]["content"] if b["type"] == "tool_use"]
        (result,) = [b for b in body["messages"][-1]["content"] if b["type"] == "tool_result"]
        assert call["name"] == "read_file" and result["tool_use_id"] == call["id"]
        assert "cormorant" in json.dumps(result["content"])
    else:
        answer = body["contents"][-1]["parts"][0]["functionResponse"]
        assert answer["name"] == "read_file" and "cormorant" in json.dumps(answer["response"])
