"""Today's Codex (``codex exec``) through the gateway, on every kind of node.

Codex is pointed at the gateway the way the README says: a model provider in
``~/.codex/config.toml`` with the gateway's ``base_url``, ``wire_api =
"responses"`` (the only wire Codex speaks now) and ``env_key``. It streams
``/v1/responses`` with ``developer`` messages, ``reasoning``, ``include``,
``store``, ``prompt_cache_key``, ``client_metadata``, function tools, a
``namespace`` of functions, a hosted ``web_search`` tool and, for some
models, a free-form ``custom`` tool. Each run must exit 0 and print the
model's answer, in a bounded number of requests (Codex retries failures five
times), each received by the node in its own protocol, key and model id and
billed exactly once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.keys import TEST_KEY
from tests.clients.conftest import KINDS, CliGateway, NodeKind, Run, codex_command, run_cli
from tests.clients.test_claude_code_cli import check_node_side

KIND_IDS = [kind.kind for kind in KINDS]
PATHS = {"anthropic": "/v1/messages", "openai-chat": "/v1/chat/completions", "openai-responses": "/v1/responses",
         "gemini": "/v1beta/models/{model}:streamGenerateContent"}


def codex(cli: CliGateway, kind: NodeKind, prompt: str, home: Path) -> Run:
    return run_cli(cli, kind, codex_command(cli.url, TEST_KEY, kind.model, home, prompt))


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_codex_answers_on_every_node_kind(cli_gateway: CliGateway, kind: NodeKind, tmp_path: Path) -> None:
    run = codex(cli_gateway, kind, "Reply with the word pelican", tmp_path)
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "Reply with the word pelican" in run.stdout  # the mock model echoes what the user typed
    check_node_side(cli_gateway, kind, run, max_requests=2, paths=PATHS)
    body = cli_gateway.last(kind)["body"]
    if kind.kind == "openai-responses":  # passed through: hosted tools and Codex's fields reach OpenAI untouched
        assert {"namespace", "web_search"} <= {tool["type"] for tool in body["tools"]}
        assert body["include"] == ["reasoning.encrypted_content"]
        return
    if kind.kind == "gemini":
        names = {d["name"] for tool in body["tools"] for d in tool["functionDeclarations"]}
    else:
        names = {t.get("name") or t["function"]["name"] for t in body["tools"]}
    # For gpt-5.5 Codex offers its custom apply_patch (and tool_search); for other models, a namespace of
    # sub-agent functions. Either way: translated to functions, hosted tools dropped.
    special = "apply_patch" if kind.model == "gpt-5.5" else "multi_agent_v1__spawn_agent"
    assert {"exec_command", special} <= names and not names & {"web_search", "tool_search"}


def test_codex_runs_parallel_shell_commands_through_a_translated_node(cli_gateway: CliGateway,
                                                                       tmp_path: Path) -> None:
    """The node asks for Codex's own exec_command tool twice in one turn; Codex runs both and sends both
    outputs back, each as the result of its own call."""
    kind = KINDS[0]  # anthropic: every request and reply translated between Responses and Messages
    work = tmp_path / "work"
    work.mkdir(parents=True)
    (work / "a.txt").write_text("first word heron\n")
    (work / "b.txt").write_text("second word puffin\n")
    run = codex(cli_gateway, kind, 'call exec_command {"cmd": "cat a.txt"} and call exec_command {"cmd": "cat b.txt"}',
                tmp_path)
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "The tool said:" in run.stdout and "heron" in run.stdout and "puffin" in run.stdout
    check_node_side(cli_gateway, kind, run, max_requests=3, paths=PATHS)
    messages = cli_gateway.last(kind)["body"]["messages"]
    calls = [b for b in messages[-2]["content"] if b["type"] == "tool_use"]
    assert [c["input"] for c in calls] == [{"cmd": "cat a.txt"}, {"cmd": "cat b.txt"}]
    assert all(c["name"] == "exec_command" for c in calls)
    results = [b for b in messages[-1]["content"] if b["type"] == "tool_result"]
    assert [r["tool_use_id"] for r in results] == [c["id"] for c in calls]
    assert "heron" in json.dumps(results[0]["content"]) and "puffin" in json.dumps(results[1]["content"])


def test_codex_applies_a_patch_with_its_free_form_tool_through_a_translated_node(cli_gateway: CliGateway,
                                                                                  tmp_path: Path) -> None:
    """Codex's custom apply_patch tool is a one-string function on a Chat node; the call comes back as a
    custom_tool_call whose raw patch text Codex applies."""
    kind = KINDS[1]  # openai-chat
    patch = "*** Begin Patch\\n*** Add File: hello.txt\\n+hello from the gateway\\n*** End Patch\\n"
    run = codex(cli_gateway, kind, 'call apply_patch {"input": "' + patch + '"}', tmp_path)
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert (tmp_path / "work" / "hello.txt").read_text() == "hello from the gateway\n"
    assert "The tool said:" in run.stdout
    check_node_side(cli_gateway, kind, run, max_requests=3, paths=PATHS)
    messages = cli_gateway.last(kind)["body"]["messages"]
    call = messages[-2]["tool_calls"][0]
    assert call["function"]["name"] == "apply_patch" and json.loads(call["function"]["arguments"])["input"].startswith(
        "*** Begin Patch\n*** Add File: hello.txt")
    assert messages[-1]["role"] == "tool" and messages[-1]["tool_call_id"] == call["id"]
