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

from bench.wire_common import Reply, dumps, json_reply, short_hash, sse
from gateway.upstream.mock_script import ANY_TOOL, Script, write_script

FIELDS = frozenset({"model", "input", "instructions", "max_output_tokens", "stream", "tools", "tool_choice",
                    "parallel_tool_calls", "temperature", "top_p", "store", "text", "reasoning", "metadata",
                    "user", "safety_identifier", "previous_response_id", "include", "truncation", "service_tier",
                    "stream_options", "prompt_cache_key", "background", "max_tool_calls", "top_logprobs",
                    "conversation", "prompt", "client_metadata"})
ITEM_TYPES = frozenset({"message", "function_call", "function_call_output", "reasoning"})


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
        elif kind == "function_call":
            if not all(isinstance(item.get(k), str) for k in ("call_id", "name", "arguments")):
                return _error(400, "function_call items need call_id, name and arguments strings", f"input[{i}]")
            calls.add(item["call_id"])
        elif kind == "function_call_output":
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
        elif kind == "function_call_output":
            texts.append(_text(item.get("output")))
    last = items[-1] if items else {}
    tool_result = _text(last.get("output")) if last.get("type") == "function_call_output" else None
    tools = [{"name": t["name"], "parameters": t.get("parameters")} for t in body.get("tools") or ()
             if t.get("type") == "function"]
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


def handle(path: str, query: str, body: dict[str, Any], tokens: int, headers: Mapping[str, str]) -> Reply:
    problem = _check(body, headers)
    if problem is not None:
        return problem
    script = script_for(body, tokens)
    suffix = short_hash(str(body.get("input")) + script.text)
    rid, created = "resp_mock" + suffix, int(time.time())
    status = "incomplete" if script.finish == "length" else "completed"
    if script.tool_call is not None:
        call = script.tool_call
        item: dict[str, Any] = {"id": "fc_mock" + suffix, "type": "function_call", "status": "completed",
                                "arguments": call.arguments, "call_id": call.id, "name": call.name}
    else:
        item = {"id": "msg_mock" + suffix, "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": script.text}]}
    if not body.get("stream"):
        return json_reply(_response(body, rid, created, status, [item], _usage(script)))

    frames: list[bytes] = []

    def event(payload: dict[str, Any]) -> None:
        payload["sequence_number"] = len(frames)
        frames.append(sse(payload, payload["type"]))

    opening = _response(body, rid, created, "in_progress", [], None)
    event({"type": "response.created", "response": opening})
    event({"type": "response.in_progress", "response": opening})
    if item["type"] == "function_call":
        event({"type": "response.output_item.added", "output_index": 0,
               "item": {**item, "status": "in_progress", "arguments": ""}})
        cut = len(item["arguments"]) // 2
        for piece in (item["arguments"][:cut], item["arguments"][cut:]):
            event({"type": "response.function_call_arguments.delta", "item_id": item["id"], "output_index": 0,
                   "delta": piece})
        event({"type": "response.function_call_arguments.done", "item_id": item["id"], "output_index": 0,
               "name": item["name"], "arguments": item["arguments"]})
    else:
        event({"type": "response.output_item.added", "output_index": 0,
               "item": {**item, "status": "in_progress", "content": []}})
        common = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        event({"type": "response.content_part.added", **common,
               "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}})
        for token in script.tokens:
            event({"type": "response.output_text.delta", **common, "delta": token, "logprobs": []})
        event({"type": "response.output_text.done", **common, "text": script.text, "logprobs": []})
        event({"type": "response.content_part.done", **common, "part": item["content"][0]})
    event({"type": "response.output_item.done", "output_index": 0, "item": item})
    final = "response.completed" if status == "completed" else "response.incomplete"
    event({"type": final, "response": _response(body, rid, created, status, [item], _usage(script))})
    return Reply(frames=frames)
