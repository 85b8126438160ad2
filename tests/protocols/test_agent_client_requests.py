"""What today's agent clients send, translated tolerantly (contract §3).

Shapes taken from what Claude Code 2.1 and Codex 0.17x send (captured against
a loopback server): Messages with ``system`` messages inside ``messages``,
adaptive thinking, ``context_management``, ``output_config``, server tools;
Responses with ``developer`` messages, ``namespace``, ``custom`` and hosted
tools, ``reasoning``/``include``/``store``/``prompt_cache_key``/
``client_metadata``. The replies come back under the client's own tool names,
whole and streamed, and the official SDK parses them.
"""

from __future__ import annotations

import json

import pytest
from openai.types.responses import Response as OpenAIResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.protocols.canonical import ProtocolError
from gateway.protocols.sse import SSEDecoder
from gateway.protocols.translate import StreamTranslator, prepare, translate_response, validate_request

CLAUDE_CODE = {
    "model": "gpt-4o-mini", "max_tokens": 32000, "stream": True,
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
               {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                                     {"type": "text", "text": "say hi", "cache_control": {"type": "ephemeral"}}]},
        {"role": "system", "content": "Available agent types: general-purpose"},
    ],
    "tools": [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object"},
               "cache_control": {"type": "ephemeral"}},
              {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
              {"type": "mcp_toolset", "mcp_server_name": "docs"}],
    "metadata": {"user_id": json.dumps({"device_id": "f" * 64, "account_uuid": "", "session_id": "s" * 36})},
    "thinking": {"type": "adaptive"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
}
NAMESPACE = {"type": "namespace", "name": "multi_agent_v1", "description": "sub-agents", "tools": [
    {"type": "function", "name": "spawn_agent", "strict": False,
     "parameters": {"type": "object", "properties": {"task": {"type": "string"}}}}]}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files. FREEFORM.",
               "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}}
CODEX = {
    "model": "gpt-4o-mini", "stream": True, "tool_choice": "auto", "parallel_tool_calls": True, "store": False,
    "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k",
    "client_metadata": {"session_id": "s"}, "text": {"verbosity": "low"}, "instructions": "",
    "input": [
        {"type": "message", "id": "msg_1", "role": "developer", "content": [{"type": "input_text", "text": "Be Codex."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix it"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"},
        {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": "*** Begin Patch\n"},
        {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done!"},
        {"type": "function_call", "call_id": "call_s", "name": "spawn_agent", "namespace": "multi_agent_v1",
         "arguments": "{\"task\": \"x\"}"},
        {"type": "function_call_output", "call_id": "call_s", "output": [
            {"type": "input_text", "text": "agent 7"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]},
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "q"}},
    ],
    "tools": [{"type": "function", "name": "exec_command", "strict": False,
               "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
              NAMESPACE, APPLY_PATCH, {"type": "web_search", "external_web_access": False},
              {"type": "tool_search", "execution": "client", "parameters": {"type": "object"}}],
}


def test_claude_code_request_for_a_chat_node() -> None:
    validate_request("messages", CLAUDE_CODE)
    prepared = prepare("messages", CLAUDE_CODE, {"chat"})
    body = prepared.body_for("chat", "own-model")
    system = body["messages"][0]
    assert system["role"] == "system"
    assert "You are Claude Code." in system["content"] and system["content"].endswith("general-purpose")
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert [t["function"]["name"] for t in body["tools"]] == ["Read"]
    assert prepared.request.dropped_tools == ["web_search_20250305", "mcp_toolset"]
    for field in ("thinking", "context_management", "output_config", "metadata", "user"):
        assert field not in body  # no meaning on Chat; the long user_id is not an OpenAI end-user id
    assert body["model"] == "own-model"


@pytest.mark.parametrize("node", ["chat", "messages", "gemini"])
def test_codex_request_for_every_translating_node(node: str) -> None:
    validate_request("responses", CODEX)
    prepared = prepare("responses", CODEX, {node})
    body = json.dumps(prepared.body_for(node, "own-model"))
    for name in ("exec_command", "multi_agent_v1__spawn_agent", "apply_patch"):
        assert name in body
    for gone in ("web_search", "tool_search", "encrypted_content", "prompt_cache_key", "client_metadata"):
        assert gone not in body
    assert "lark grammar" in body and "Be Codex." in body
    assert prepared.request.dropped_tools == ["web_search", "tool_search"]


def test_codex_history_replays_custom_and_namespaced_calls_on_chat() -> None:
    body = prepare("responses", CODEX, {"chat"}).body_for("chat", "m")
    calls = [m for m in body["messages"] if m.get("tool_calls")]
    names = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for m in calls for c in m["tool_calls"]]
    assert names == [("apply_patch", {"input": "*** Begin Patch\n"}), ("multi_agent_v1__spawn_agent", {"task": "x"})]
    results = [m for m in body["messages"] if m["role"] == "tool"]
    assert [r["tool_call_id"] for r in results] == ["call_p", "call_s"] and results[0]["content"] == "Done!"
    after = body["messages"][body["messages"].index(results[-1]) + 1]  # the image the tool returned follows
    assert after["role"] == "user" and after["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_untranslatable_everywhere_is_refused_but_one_servable_protocol_is_enough() -> None:
    body = {"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}], "stop": ["END"]}
    with pytest.raises(ProtocolError) as caught:
        prepare("chat", {"messages": [{"role": "user", "content": "x"}], "stop": ["END"]}, {"responses"})
    assert caught.value.param == "stop"
    prepared = prepare("responses", body, {"responses", "chat"})  # the pass-through node can take it
    assert prepared.body_for("chat", "m")["model"] == "m"
    with pytest.raises(ProtocolError) as caught:
        prepare("responses", {**body, "tools": [{"type": "teleport"}]}, {"chat"})
    assert caught.value.param == "tools[0].type"


CHAT_REPLY = {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [{
    "index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "multi_agent_v1__spawn_agent", "arguments": "{\"task\": \"t\"}"}},
        {"id": "call_2", "type": "function",
         "function": {"name": "apply_patch", "arguments": json.dumps({"input": "*** Begin Patch\n+x\n"})}},
        {"id": "call_3", "type": "function", "function": {"name": "exec_command", "arguments": "{\"cmd\": \"ls\"}"}},
    ]}}], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}


def _expected_calls(output: list) -> None:
    spawn, patch, shell = output
    assert (spawn.type, spawn.name, spawn.call_id) == ("function_call", "spawn_agent", "call_1")
    assert spawn.namespace == "multi_agent_v1" if hasattr(spawn, "namespace") else spawn.model_extra["namespace"]
    assert (patch.type, patch.name, patch.call_id, patch.input) == ("custom_tool_call", "apply_patch", "call_2",
                                                                    "*** Begin Patch\n+x\n")
    assert (shell.type, shell.name, shell.arguments) == ("function_call", "exec_command", "{\"cmd\": \"ls\"}")


def test_parallel_calls_come_back_under_the_clients_tool_names() -> None:
    tools = prepare("responses", CODEX, {"chat"}).request.client_tools
    body, usage = translate_response("chat", CHAT_REPLY, "responses", "gpt-4o-mini", "r1", tools)
    _expected_calls(OpenAIResponse.model_validate(body).output)
    assert usage.output_tokens == 7


def _chat_stream() -> bytes:
    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).encode() + b"\n\n"
    out = chunk({"role": "assistant"})
    for index, call in enumerate(CHAT_REPLY["choices"][0]["message"]["tool_calls"]):  # type: ignore[index]
        out += chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                      "function": {"name": call["function"]["name"], "arguments": ""}}]})
        arguments = call["function"]["arguments"]
        for piece in (arguments[:5], arguments[5:]):
            out += chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    out += chunk({}, "tool_calls")
    out += b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                   "choices": [], "usage": CHAT_REPLY["usage"]}).encode() + b"\n\n"
    return out + b"data: [DONE]\n\n"


def test_streamed_calls_come_back_under_the_clients_tool_names() -> None:
    tools = prepare("responses", CODEX, {"chat"}).request.client_tools
    translator = StreamTranslator("chat", "responses", "gpt-4o-mini", "r1", True, client_tools=tools)
    raw = translator.feed(_chat_stream()) + translator.finish()
    adapter: TypeAdapter = TypeAdapter(ResponseStreamEvent)
    events = [adapter.validate_python(json.loads(e.data)) for e in SSEDecoder().feed(raw)]
    types = [e.type for e in events]
    assert "response.custom_tool_call_input.done" in types
    assert not any(e.type == "response.function_call_arguments.delta" and e.item_id.endswith("_1") for e in events)
    done = events[-1]
    assert done.type == "response.completed"
    _expected_calls(done.response.output)
    patch_done = [e for e in events if e.type == "response.custom_tool_call_input.done"][0]
    assert patch_done.input == "*** Begin Patch\n+x\n"
