"""The wire formats ``mock_upstream.py`` speaks, one route table for all of them.

Each handler takes the request path, query, parsed JSON body, the number of
output tokens to produce and the (lower-cased) request headers, and returns a
``Reply``: a whole JSON body (with its status), or the SSE frames of a stream.
What the model says comes from ``gateway.upstream.mock_script`` so every wire
answers alike.

Wires (paths after the node's ``/n/<name>`` prefix):

* OpenAI: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``GET /v1/models``
  (rendered by ``gateway/upstream/mock.py``) and ``POST /v1/responses``
  (``wire_responses.py``);
* Anthropic: ``POST /v1/messages``, ``POST /v1/messages/count_tokens``
  (``wire_anthropic.py``);
* Gemini: ``POST /v1beta/models/{model}:generateContent``,
  ``:streamGenerateContent[?alt=sse]``, ``:batchEmbedContents`` (``wire_gemini.py``).

The Anthropic, Gemini and Responses wires check requests the way the real
APIs do (auth headers, unknown fields, tool results answering tool calls) and
answer errors in their own shapes, so translation bugs fail loudly.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from bench import wire_anthropic, wire_gemini, wire_responses
from bench.wire_common import Handler, Reply
from gateway.upstream import mock as openai_wire
from gateway.upstream.mock_script import DEFAULT_TOKENS

__all__ = ["DEFAULT_TOKENS", "Handler", "Reply", "route", "error_body"]


def chat_completions(path: str, query: str, body: dict[str, Any], tokens: int,
                     headers: Mapping[str, str] | None = None) -> Reply:
    script = openai_wire.script_from_chat(body, tokens)
    model = body.get("model", "")
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return Reply(frames=openai_wire.chat_stream(script, model, "chatcmpl-mock", include_usage))
    return Reply(openai_wire.chat_response(script, model, "chatcmpl-mock"))


def embeddings(path: str, query: str, body: dict[str, Any], tokens: int,
               headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(openai_wire.embeddings_response(body, body.get("model", ""), 8))


def models(path: str, query: str, body: dict[str, Any], tokens: int,
           headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(b'{"object":"list","data":[{"id":"mock-model","object":"model","created":0,"owned_by":"mock"}]}')


_EXACT: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/chat/completions"): chat_completions,
    ("POST", "/v1/embeddings"): embeddings,
    ("GET", "/v1/models"): models,
    ("POST", "/v1/responses"): wire_responses.handle,
    ("POST", "/v1/messages"): wire_anthropic.messages,
    ("POST", "/v1/messages/count_tokens"): wire_anthropic.count_tokens,
}


def route(method: str, path: str) -> Handler | None:
    handler = _EXACT.get((method, path))
    if handler is None and method == "POST" and wire_gemini.matches(path):
        return wire_gemini.handle
    return handler


def error_body(path: str, status: int) -> bytes:
    """An error in the shape the wire's real provider uses."""
    if path.startswith("/v1/messages"):
        return wire_anthropic.error_body(status)
    if path.startswith("/v1beta/"):
        return wire_gemini.error_body(status)
    kinds = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             429: "rate_limit_error"}
    kind = kinds.get(status, "server_error")
    message = f"mock upstream error {status}"
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})
