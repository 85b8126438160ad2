"""Today's Claude Code (``claude -p``) through the gateway, on every kind of node.

Claude Code is pointed at the gateway the way the README says
(``ANTHROPIC_BASE_URL``, ``ANTHROPIC_AUTH_TOKEN``, ``ANTHROPIC_MODEL`` and the
``ANTHROPIC_DEFAULT_*_MODEL`` variables). It streams ``/v1/messages?beta=true``
with its own beta headers, adaptive thinking, ``context_management``,
``output_config``, two dozen tools, ``cache_control`` blocks and, for model
ids that are not Claude's, ``system`` messages inside ``messages``. Each run
must exit 0 and print the model's answer, in a bounded number of requests,
each of them received by the node in its own protocol, key and model id and
billed exactly once.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.support.keys import TEST_KEY
from tests.clients.conftest import KINDS, CliGateway, NodeKind, Run, claude_command, run_cli

KIND_IDS = [kind.kind for kind in KINDS]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
AUTH = {"anthropic": ("x-api-key", "{key}"), "openai-chat": ("authorization", "Bearer {key}"),
        "openai-responses": ("authorization", "Bearer {key}"), "gemini": ("x-goog-api-key", "{key}")}
PATHS = {"anthropic": "/v1/messages", "openai-chat": "/v1/chat/completions", "openai-responses": "/v1/chat/completions",
         "gemini": "/v1beta/models/{model}:streamGenerateContent"}


def claude(cli: CliGateway, kind: NodeKind, prompt: str, home: Path, *extra: str) -> Run:
    return run_cli(cli, kind, claude_command(cli.url, TEST_KEY, kind.model, home, prompt, *extra))


def check_node_side(cli: CliGateway, kind: NodeKind, run: Run, max_requests: int,
                    paths: dict[str, str] = PATHS) -> None:
    """The node got the request its own way, and every upstream call was billed once, from real usage."""
    print(f"{kind.kind}: {run.requests} request(s)")  # the request counts the issue asks to report (-s)
    assert 1 <= run.requests <= max_requests, (run.requests, run.stdout, run.stderr)
    seen = cli.last(kind)
    header, template = AUTH[kind.kind]
    assert seen["headers"].get(header) == template.format(key=kind.api_key)
    assert TEST_KEY not in json.dumps(seen["headers"])  # the client's key never goes upstream
    assert seen["path"] == paths[kind.kind].format(model=kind.own_model)
    if kind.kind != "gemini":  # Gemini's model is in the path
        assert seen["body"]["model"] == kind.own_model
    ours = [r for r in run.records if r["node"] == cli.node(kind)]
    assert len(ours) == len(run.records) == run.requests, run.records
    assert all(r["status"] == 200 and not r["estimated"] and r["cost_usd"] for r in ours), ours


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_claude_code_answers_on_every_node_kind(cli_gateway: CliGateway, kind: NodeKind, tmp_path: Path) -> None:
    run = claude(cli_gateway, kind, "Reply with the word pelican", tmp_path)
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "Reply with the word pelican" in run.stdout  # the mock model echoes what the user typed
    check_node_side(cli_gateway, kind, run, max_requests=2)
    body = cli_gateway.last(kind)["body"]
    if kind.kind == "anthropic":  # passed through: Claude Code's own fields reach Anthropic untouched
        # Claude Code's thinking settings grow fields between releases (2.1.332 adds "display"): the type is
        # what identifies them; the whole object must arrive as a dict, untranslated
        assert body["thinking"]["type"] == "adaptive" and "context_management" in body
    elif kind.kind == "gemini":
        assert "Claude" in json.dumps(body["systemInstruction"])
    else:
        assert body["messages"][0]["role"] == "system" and "thinking" not in body


def test_claude_code_runs_its_read_tool_through_a_translated_node(cli_gateway: CliGateway, tmp_path: Path) -> None:
    """The node asks for Claude Code's own Read tool; Claude Code reads the file and sends the result back."""
    kind = KINDS[1]  # openai-chat: every request and reply translated
    notes = tmp_path / "work" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("the secret word is cormorant\n")
    prompt = 'call Read {"file_path": "' + str(notes) + '"}'
    run = claude(cli_gateway, kind, prompt, tmp_path, "--allowedTools", "Read")
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "The tool said:" in run.stdout and "cormorant" in run.stdout
    check_node_side(cli_gateway, kind, run, max_requests=3)
    messages = cli_gateway.last(kind)["body"]["messages"]
    call = messages[-2]["tool_calls"][0]
    assert call["function"]["name"] == "Read" and json.loads(call["function"]["arguments"]) == {"file_path": str(notes)}
    assert messages[-1]["role"] == "tool" and messages[-1]["tool_call_id"] == call["id"]
    assert "cormorant" in json.dumps(messages[-1]["content"])


def test_claude_code_runs_parallel_reads_through_a_gemini_node(cli_gateway: CliGateway, tmp_path: Path) -> None:
    """Two calls in one turn: Gemini's calls carry no ids, the gateway makes them; Claude Code answers both
    and each result reaches the node as the function response of its own call."""
    kind = KINDS[3]  # gemini
    work = tmp_path / "work"
    work.mkdir(parents=True)
    (work / "a.txt").write_text("first word heron\n")
    (work / "b.txt").write_text("second word puffin\n")
    prompt = " and ".join('call Read {"file_path": "' + str(work / name) + '"}' for name in ("a.txt", "b.txt"))
    run = claude(cli_gateway, kind, prompt, tmp_path, "--allowedTools", "Read")
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "heron" in run.stdout and "puffin" in run.stdout
    check_node_side(cli_gateway, kind, run, max_requests=3)
    contents = cli_gateway.last(kind)["body"]["contents"]
    calls = [p["functionCall"] for p in contents[-2]["parts"] if "functionCall" in p]
    answers = [p["functionResponse"] for p in contents[-1]["parts"] if "functionResponse" in p]
    assert [c["args"]["file_path"] for c in calls] == [str(work / "a.txt"), str(work / "b.txt")]
    assert [a["name"] for a in answers] == ["Read", "Read"]
    assert "heron" in json.dumps(answers[0]) and "puffin" in json.dumps(answers[1])



def test_claude_code_reads_an_image_through_a_chat_node(cli_gateway: CliGateway, tmp_path: Path) -> None:
    """Read of an image returns an image in the tool result: a Chat tool message carries text only, so the
    image follows it in the same turn, and the answer comes back."""
    kind = KINDS[1]  # openai-chat
    image = tmp_path / "work" / "dot.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(base64.b64decode(PNG))
    run = claude(cli_gateway, kind, 'call Read {"file_path": "' + str(image) + '"}', tmp_path, "--allowedTools", "Read")
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "The tool said:" in run.stdout
    check_node_side(cli_gateway, kind, run, max_requests=3)
    call, result, images = cli_gateway.last(kind)["body"]["messages"][-3:]
    assert result["role"] == "tool" and result["tool_call_id"] == call["tool_calls"][0]["id"] and result["content"]
    assert images["role"] == "user" and images["content"][-1]["image_url"]["url"] == f"data:image/png;base64,{PNG}"


def test_claude_code_error_result_reaches_a_gemini_node_as_an_error(cli_gateway: CliGateway, tmp_path: Path) -> None:
    """Read of a missing file is an error result (is_error): Gemini hears it under ``error``."""
    kind = KINDS[3]  # gemini
    missing = tmp_path / "work" / "missing.txt"
    run = claude(cli_gateway, kind, 'call Read {"file_path": "' + str(missing) + '"}', tmp_path, "--allowedTools", "Read")
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "The tool said:" in run.stdout
    check_node_side(cli_gateway, kind, run, max_requests=3)
    (answer,) = [p["functionResponse"] for p in cli_gateway.last(kind)["body"]["contents"][-1]["parts"]
                 if "functionResponse" in p]
    assert answer["name"] == "Read" and set(answer["response"]) == {"error"}
