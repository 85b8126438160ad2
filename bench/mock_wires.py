"""The wire formats ``mock_upstream.py`` speaks, one route table for all of them.

Each handler takes the request path, query, parsed JSON body and the number
of output tokens to produce, and returns a ``Reply``: a whole JSON body, or
the SSE frames of a stream. What the model says comes from
``gateway.upstream.mock_script`` so every wire answers alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import ujson

from gateway.upstream import mock as openai_wire
from gateway.upstream.mock_script import DEFAULT_TOKENS

__all__ = ["DEFAULT_TOKENS", "Reply", "route", "error_body"]


@dataclass
class Reply:
    body: bytes = b""
    frames: list[bytes] | None = None  # set for streams


Handler = Callable[[str, str, dict[str, Any], int], Reply]


def chat_completions(path: str, query: str, body: dict[str, Any], tokens: int) -> Reply:
    script = openai_wire.script_from_chat(body, tokens)
    model = body.get("model", "")
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return Reply(frames=openai_wire.chat_stream(script, model, "chatcmpl-mock", include_usage))
    return Reply(openai_wire.chat_response(script, model, "chatcmpl-mock"))


def embeddings(path: str, query: str, body: dict[str, Any], tokens: int) -> Reply:
    return Reply(openai_wire.embeddings_response(body, body.get("model", ""), 8))


def models(path: str, query: str, body: dict[str, Any], tokens: int) -> Reply:
    return Reply(b'{"object":"list","data":[{"id":"mock-model","object":"model","created":0,"owned_by":"mock"}]}')


_EXACT: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/chat/completions"): chat_completions,
    ("POST", "/v1/embeddings"): embeddings,
    ("GET", "/v1/models"): models,
}


def route(method: str, path: str) -> Handler | None:
    return _EXACT.get((method, path))


def error_body(path: str, status: int) -> bytes:
    """An error in the shape the wire's real provider uses."""
    kinds = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             429: "rate_limit_error"}
    kind = kinds.get(status, "server_error")
    message = f"mock upstream error {status}"
    return ujson.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}}).encode()
