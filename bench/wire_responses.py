"""OpenAI's Responses wire: ``POST /v1/responses``, whole or streamed.

Requests are checked as the real API checks them: ``Authorization: Bearer``,
unknown parameters rejected (``Unknown parameter: 'fallback_models'.``),
input items well formed, and every ``function_call_output`` answering a
``function_call`` earlier in the input (the gateway keeps no server state, so
the call must be replayed).

Replies: a ``response`` object with ``message`` / ``function_call`` output
items and usage, or the event stream ``response.created``,
``response.in_progress``, per item ``response.output_item.added`` ...
``response.output_item.done`` (text: ``content_part.added``,
``output_text.delta``..., ``output_text.done``, ``content_part.done``; call:
``function_call_arguments.delta``..., ``.done``), then ``response.completed``
(or ``response.incomplete``). Every event carries ``sequence_number``.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import orjson

from bench.wire_common import Reply, dumps, json_reply, short_hash, sse
from gateway.upstream.mock_script import ANY_TOOL, Script, ToolCall, write_script

FIELDS = frozenset({"model", "input", "instructions", "max_output_tokens", "stream", "tools", "tool_choice",
                    "parallel_tool_calls", "temperature", "top_p", "store", "text", "reasoning", "metadata",
                    "user", "safety_identifier", "previous_response_id", "include", "truncation", "service_tier",
                    "stream_options", "prompt_cache_key", "background", "max_tool_calls", "top_logprobs",
                    "conversation", "prompt", "client_metadata"})
ITEM_TYPES = frozenset({"message", "function_call", "function_call_output", "custom_tool_call",
                        "custom_tool_call_output", "reasoning"})
OUTPUTS = frozenset({"function_call_output", "custom_tool_call_output"})


def error_body(status: int, message: str | None = None, param: str | None = None, code: str | None = None) -> bytes:
    kinds = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
             429: "rate_limit_error"}
    return dumps({"error": {"message": message or f"mock upstream error {status}",
                            "type": kinds.get(status, "server_error"), "param": param, "code": code}})


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> Reply:
    return Reply(error_body(status, message, param, code), status=status)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p.get("text") or "" for p in content or () if isinstance(p, dict)
                    and p.get("type") in ("input_text", "output_text"))


def _last_text(content: Any) -> str:
    """The last text part: what the user typed (Codex sends its context as earlier parts and items)."""
    if isinstance(content, str):
        return content
    texts = [p.get("text") or "" for p in content or () if isinstance(p, dict) and p.get("type") == "input_text"]
    return texts[-1] if texts else ""


def _check(body: dict[str, Any], headers: Mapping[str, str]) -> Reply | None:
    if not headers.get("authorization", "").startswith("Bearer "):
        return _error(401, "You didn't provide an API key.")
    extra = sorted(set(body) - FIELDS)
    if extra:
        return _error(400, f"Unknown parameter: '{extra[0]}'.", extra[0], "unknown_parameter")
    if not isinstance(body.get("model"), str):
        return _error(400, "Missing required parameter: 'model'.", "model", "missing_required_parameter")
    items = body.get("input")
    if isinstance(items, str):
        return None
    if not isinstance(items, list):
        return _error(400, "Invalid type for 'input'.", "input", "invalid_type")
    calls: set[str] = set()
    for i, item in enumerate(items):
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind not in ITEM_TYPES:
            return _error(400, f"Invalid value: '{kind}'.", f"input[{i}].type", "invalid_value")
        if kind == "message":
            if item.get("role") not in ("user", "assistant", "system", "developer"):
                return _error(400, "Invalid value for 'role'.", f"input[{i}].role", "invalid_value")
            if not isinstance(item.get("content"), (str, list)):
                return _error(400, "Missing required parameter: 'content'.", f"input[{i}].content")
        elif kind in ("function_call", "custom_tool_call"):
            keys = ("call_id", "name", "arguments" if kind == "function_call" else "input")
            if not all(isinstance(item.get(k), str) for k in keys):
                return _error(400, f"{kind} items need {', '.join(keys)} strings", f"input[{i}]")
            calls.add(item["call_id"])
        elif kind in OUTPUTS:
            if item.get("call_id") not in calls:
                return _error(400, f"No tool call found for function call output with call_id {item.get('call_id')}.",
                              "input")
            if not isinstance(item.get("output"), (str, list)):
                return _error(400, "Invalid type for 'output'.", f"input[{i}].output", "invalid_type")
    for i, tool in enumerate(body.get("tools") or ()):
        if tool.get("type") == "function" and not tool.get("name"):
            return _error(400, "Missing required parameter: 'tools[0].name'.", f"tools[{i}].name")
    return None


def script_for(body: dict[str, Any], tokens: int) -> Script:
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    texts = [body.get("instructions") or ""]
    last_user = ""
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            texts.append(_text(item.get("content")))
            if item.get("role") == "user":
                last_user = _last_text(item.get("content"))
        elif kind in OUTPUTS:
            texts.append(_text(item.get("output")))
    trailing = []  # the outputs that end the input: every result of the last (parallel) calls
    for item in reversed(items):
        if item.get("type") not in OUTPUTS:
            break
        trailing.insert(0, _text(item.get("output")))
    tool_result = " ".join(trailing) if trailing else None
    tools = [{"name": t["name"], "parameters": t.get("parameters")} for t in body.get("tools") or ()
             if t.get("type") in ("function", "custom")]
    choice = body.get("tool_choice")
    forced = ANY_TOOL if choice == "required" else choice.get("name") if isinstance(choice, dict) else None
    return write_script(" ".join(t for t in texts if t), last_user, tools, tool_result,
                        body.get("max_output_tokens"), tokens, forced)


def _usage(script: Script) -> dict[str, Any]:
    return {"input_tokens": script.input_tokens, "input_tokens_details": {"cached_tokens": script.cache_read},
            "output_tokens": script.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": script.input_tokens + script.output_tokens}


def _response(body: dict[str, Any], rid: str, created: int, status: str, output: list[dict[str, Any]],
              usage: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": rid, "object": "response", "created_at": created, "status": status, "background": False,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "model": body["model"], "output": output, "parallel_tool_calls": True, "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None}, "service_tier": "default",
            "store": body.get("store", True), "temperature": 1.0, "text": {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [], "top_p": 1.0,
            "truncation": "disabled", "usage": usage, "user": None, "metadata": {}}


def _call_item(call: ToolCall, item_id: str, custom: bool) -> dict[str, Any]:
    """A function call, or for a custom (free-form) tool a custom_tool_call carrying the raw input text."""
    if not custom:
        return {"id": item_id, "type": "function_call", "status": "completed", "arguments": call.arguments,
                "call_id": call.id, "name": call.name}
    arguments = orjson.loads(call.arguments)
    text = arguments.get("input") if isinstance(arguments.get("input"), str) else call.arguments
    return {"id": item_id, "type": "custom_tool_call", "status": "completed", "call_id": call.id, "name": call.name,
            "input": text}


def handle(path: str, query: str, body: dict[str, Any], tokens: int, headers: Mapping[str, str]) -> Reply:
    problem = _check(body, headers)
    if problem is not None:
        return problem
    script = script_for(body, tokens)
    suffix = short_hash(str(body.get("input")) + script.text)
    rid, created = "resp_mock" + suffix, int(time.time())
    status = "incomplete" if script.finish == "length" else "completed"
    custom = {t["name"] for t in body.get("tools") or () if t.get("type") == "custom"}
    output = [_call_item(call, f"fc_mock{n}{suffix}", call.name in custom) for n, call in enumerate(script.tool_calls)]
    if not output:
        output = [{"id": "msg_mock" + suffix, "type": "message", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": script.text}]}]
    if not body.get("stream"):
        return json_reply(_response(body, rid, created, status, output, _usage(script)))

    frames: list[bytes] = []

    def event(payload: dict[str, Any]) -> None:
        payload["sequence_number"] = len(frames)
        frames.append(sse(payload, payload["type"]))

    opening = _response(body, rid, created, "in_progress", [], None)
    event({"type": "response.created", "response": opening})
    event({"type": "response.in_progress", "response": opening})
    for index, item in enumerate(output):
        common = {"item_id": item["id"], "output_index": index}
        if item["type"] == "function_call":
            event({"type": "response.output_item.added", "output_index": index,
                   "item": {**item, "status": "in_progress", "arguments": ""}})
            cut = len(item["arguments"]) // 2
            for piece in (item["arguments"][:cut], item["arguments"][cut:]):
                event({"type": "response.function_call_arguments.delta", **common, "delta": piece})
            event({"type": "response.function_call_arguments.done", **common, "name": item["name"],
                   "arguments": item["arguments"]})
        elif item["type"] == "custom_tool_call":
            event({"type": "response.output_item.added", "output_index": index,
                   "item": {**item, "status": "in_progress", "input": ""}})
            event({"type": "response.custom_tool_call_input.delta", **common, "delta": item["input"]})
            event({"type": "response.custom_tool_call_input.done", **common, "input": item["input"]})
        else:
            event({"type": "response.output_item.added", "output_index": index,
                   "item": {**item, "status": "in_progress", "content": []}})
            part = {**common, "content_index": 0}
            event({"type": "response.content_part.added", **part,
                   "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}})
            for token in script.tokens:
                event({"type": "response.output_text.delta", **part, "delta": token, "logprobs": []})
            event({"type": "response.output_text.done", **part, "text": script.text, "logprobs": []})
            event({"type": "response.content_part.done", **part, "part": item["content"][0]})
        event({"type": "response.output_item.done", "output_index": index, "item": item})
    final = "response.completed" if status == "completed" else "response.incomplete"
    event({"type": final, "response": _response(body, rid, created, status, output, _usage(script))})
    return Reply(frames=frames)
