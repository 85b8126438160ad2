"""Anthropic's wire, as ``api.anthropic.com`` speaks it: ``POST /v1/messages`` and
``POST /v1/messages/count_tokens``.

Requests are checked the way the real API checks them, so translator bugs
surface as 400s: ``x-api-key`` and ``anthropic-version`` headers, no unknown
top-level fields, ``max_tokens`` present, known block types, every
``tool_result`` answering a ``tool_use`` of the assistant turn just before it,
and replayed ``thinking`` blocks carrying the signature this mock issued.

Replies: a ``message`` object, or the SSE sequence ``message_start``,
``ping``, per block ``content_block_start`` / ``content_block_delta``
(``thinking_delta`` + ``signature_delta``, ``text_delta``,
``input_json_delta``) / ``content_block_stop``, then ``message_delta`` (stop
reason, cumulative usage) and ``message_stop``. A request with ``thinking``
enabled gets a thinking block first, with a deterministic signature.

``count_tokens`` answers ``{"input_tokens": N}`` with N =
``estimate_tokens(json of [system, messages, tools])``: deliberately not the
gateway's own estimate rule, so a test can tell which one answered.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from bench.wire_common import Reply, dumps, json_reply, short_hash, sse
from gateway.upstream.mock_script import ANY_TOOL, Script, ToolCall, estimate_tokens, write_script

MESSAGES_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
    "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers",
    "context_management", "output_format", "output_config",
})
COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers",
                          "context_management", "output_format", "output_config"})
BLOCK_TYPES = frozenset({"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking",
                         "search_result", "server_tool_use", "web_search_tool_result"})
STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error"}


def error_body(status: int, message: str | None = None) -> bytes:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return dumps({"type": "error", "error": {"type": kind, "message": message or f"mock upstream error {status}"},
                  "request_id": "req_mock"})


def _error(status: int, message: str) -> Reply:
    return Reply(error_body(status, message), status=status)


def signature_for(thinking: str) -> str:
    """What this mock signs a thinking text with; a replayed block must carry it unchanged."""
    return "sig_" + short_hash("signed:" + thinking) + short_hash(thinking[::-1])


# --- request checks ----------------------------------------------------------


def _check_headers(headers: Mapping[str, str]) -> Reply | None:
    if not headers.get("x-api-key"):
        return _error(401, "x-api-key header is required")
    if headers.get("authorization"):
        return _error(400, "send the API key in x-api-key, not Authorization")  # the gateway must not leak it
    if not headers.get("anthropic-version"):
        return _error(400, "anthropic-version: header is required")
    return None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    out = []
    for block in content or ():
        if isinstance(block, dict) and block.get("type") == "text":
            out.append(block.get("text") or "")
    return " ".join(out)


def _last_text(content: Any) -> str:
    """The last text block: what the user typed, after the context Claude Code puts before it."""
    if isinstance(content, str):
        return content
    texts = [b.get("text") or "" for b in content or () if isinstance(b, dict) and b.get("type") == "text"]
    return texts[-1] if texts else ""


def _system_text(system: Any) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    return " ".join(block.get("text") or "" for block in system if isinstance(block, dict))


def _check_body(body: dict[str, Any], allowed: frozenset[str], need_max_tokens: bool) -> Reply | None:
    extra = sorted(set(body) - allowed)
    if extra:
        return _error(400, f"{extra[0]}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _error(400, "model: Field required")
    if need_max_tokens and not isinstance(body.get("max_tokens"), int):
        return _error(400, "max_tokens: Field required")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list) or any(not isinstance(b, dict) or b.get("type") != "text" for b in system):
            return _error(400, "system: Input should be a valid string or a list of text blocks")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "messages: Field required")
    signatures_ok = True
    previous_tool_ids: set[str] = set()
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in ("user", "assistant"):
            return _error(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = msg.get("content")
        if isinstance(content, str):
            previous_tool_ids = set()
            continue
        if not isinstance(content, list):
            return _error(400, f"messages.{i}.content: Input should be a valid list")
        tool_ids: set[str] = set()
        for j, block in enumerate(content):
            kind = block.get("type") if isinstance(block, dict) else None
            where = f"messages.{i}.content.{j}"
            if kind not in BLOCK_TYPES:
                return _error(400, f"{where}.type: Input tag {kind!r} found using 'type' does not match any of the "
                                   "expected tags")
            if kind == "text" and not isinstance(block.get("text"), str):
                return _error(400, f"{where}.text: Field required")
            if kind == "tool_use":
                if role != "assistant" or not isinstance(block.get("input"), dict) or not block.get("id"):
                    return _error(400, f"{where}: tool_use blocks need an id and an object input, in assistant turns")
                tool_ids.add(block["id"])
            if kind == "tool_result":
                if role != "user" or block.get("tool_use_id") not in previous_tool_ids:
                    return _error(400, f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                                       f"{block.get('tool_use_id')}. Each `tool_result` block must have a "
                                       "corresponding `tool_use` block in the previous message.")
            if kind == "thinking":
                if role != "assistant" or block.get("signature") != signature_for(block.get("thinking") or ""):
                    signatures_ok = False
        previous_tool_ids = tool_ids
    if not signatures_ok:
        return _error(400, "Invalid `signature` in `thinking` block")
    for i, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict) or not tool.get("name"):
            return _error(400, f"tools.{i}.name: Field required")
        if tool.get("type") in (None, "custom") and not isinstance(tool.get("input_schema"), dict):
            return _error(400, f"tools.{i}.custom.input_schema: Field required")
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, (int, float)) or not 0 <= temperature <= 1):
        return _error(400, "temperature: range: 0..1")
    return None


# --- what to say -------------------------------------------------------------


def script_for(body: dict[str, Any], tokens: int) -> Script:
    messages = body.get("messages") or []
    texts = [_system_text(body.get("system"))]
    for msg in messages:
        content = msg.get("content")
        texts.append(_text_of(content))
        for block in content if isinstance(content, list) else ():
            if block.get("type") == "tool_result":
                texts.append(_text_of(block.get("content")))
    last_user = next((_last_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    tool_result = None
    last = messages[-1]
    if last.get("role") == "user" and isinstance(last.get("content"), list):
        results = [b for b in last["content"] if b.get("type") == "tool_result"]
        if results:  # parallel calls: every result of the turn
            tool_result = " ".join(_text_of(b.get("content")) for b in results)
    tools = [{"name": t["name"], "parameters": t.get("input_schema")} for t in body.get("tools") or ()
             if t.get("type") in (None, "custom")]
    choice = body.get("tool_choice") or {}
    forced = choice.get("name") if choice.get("type") == "tool" else ANY_TOOL if choice.get("type") == "any" else None
    return write_script(" ".join(t for t in texts if t), last_user, tools, tool_result, body.get("max_tokens"),
                        tokens, forced)


def _thinking_text(body: dict[str, Any]) -> str | None:
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        return "Let me think about this step by step."
    return None


def _usage(script: Script, output: int) -> dict[str, Any]:
    """Anthropic's ``input_tokens`` excludes the cache reads and writes, which it reports apart."""
    write = script.cache_write
    return {"input_tokens": script.input_tokens - script.cache_read - write,
            "cache_creation_input_tokens": write, "cache_read_input_tokens": script.cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": write - script.cache_write_1h,
                               "ephemeral_1h_input_tokens": script.cache_write_1h},
            "output_tokens": output, "service_tier": "standard"}


def _output_tokens(script: Script, thinking: str | None) -> int:
    return script.output_tokens + (estimate_tokens(thinking) if thinking else 0)


def _message_id(script: Script) -> str:
    return "msg_mock" + short_hash(str(script.input_tokens) + script.text)


def _tool_id(call: ToolCall) -> str:
    return "toolu_" + call.id.removeprefix("call_")


# --- handlers ----------------------------------------------------------------


def messages(path: str, query: str, body: dict[str, Any], tokens: int, headers: Mapping[str, str]) -> Reply:
    problem = _check_headers(headers) or _check_body(body, MESSAGES_FIELDS, need_max_tokens=True)
    if problem is not None:
        return problem
    script = script_for(body, tokens)
    thinking = _thinking_text(body)
    if body.get("stream"):
        return Reply(frames=_stream(script, body["model"], thinking))
    content: list[dict[str, Any]] = []
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": signature_for(thinking)})
    if script.text:
        content.append({"type": "text", "text": script.text})
    for call in script.tool_calls:
        content.append({"type": "tool_use", "id": _tool_id(call), "name": call.name,
                        "input": orjson.loads(call.arguments)})
    return json_reply({"id": _message_id(script), "type": "message", "role": "assistant", "model": body["model"],
                       "content": content, "stop_reason": STOP[script.finish], "stop_sequence": None,
                       "usage": _usage(script, _output_tokens(script, thinking))})


def _stream(script: Script, model: str, thinking: str | None) -> list[bytes]:
    frames = [sse({"type": "message_start", "message": {
        "id": _message_id(script), "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": _usage(script, 1)}}, "message_start")]
    index = 0

    def block(start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        nonlocal index
        frames.append(sse({"type": "content_block_start", "index": index, "content_block": start},
                          "content_block_start"))
        if index == 0:
            frames.append(sse({"type": "ping"}, "ping"))
        for delta in deltas:
            frames.append(sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"))
        frames.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        index += 1

    if thinking:
        words = thinking.split(" ")
        pieces = [words[0]] + [" " + w for w in words[1:]]
        block({"type": "thinking", "thinking": "", "signature": ""},
              [{"type": "thinking_delta", "thinking": p} for p in pieces]
              + [{"type": "signature_delta", "signature": signature_for(thinking)}])
    if script.tokens:
        block({"type": "text", "text": ""}, [{"type": "text_delta", "text": t} for t in script.tokens])
    for call in script.tool_calls:
        arguments = call.arguments
        cut = len(arguments) // 2  # the JSON arrives in fragments, as real models send it
        block({"type": "tool_use", "id": _tool_id(call), "name": call.name, "input": {}},
              [{"type": "input_json_delta", "partial_json": ""},
               {"type": "input_json_delta", "partial_json": arguments[:cut]},
               {"type": "input_json_delta", "partial_json": arguments[cut:]}])
    frames.append(sse({"type": "message_delta",
                       "delta": {"stop_reason": STOP[script.finish], "stop_sequence": None},
                       "usage": {"output_tokens": _output_tokens(script, thinking)}}, "message_delta"))
    frames.append(sse({"type": "message_stop"}, "message_stop"))
    return frames


def count_tokens(path: str, query: str, body: dict[str, Any], tokens: int, headers: Mapping[str, str]) -> Reply:
    problem = _check_headers(headers) or _check_body(body, COUNT_FIELDS, need_max_tokens=False)
    if problem is not None:
        return problem
    counted = [body.get("system"), body.get("messages"), body.get("tools")]
    return json_reply({"input_tokens": max(1, estimate_tokens(dumps(counted).decode()))})
