"""Error bodies in each client protocol's shape: the one place an error is rendered.

Whether the gateway raised the error itself (``gateway/errors.py``: a kind, hence
a status, and a message) or an upstream answered one in its own shape (OpenAI,
Anthropic, Gemini's ``google.rpc.Status``, a JSON list around one of those, or
plain text from a proxy), the client gets its own SDK's shape with the message
kept, and an error *type* that its SDK maps to the right exception class. The
type is chosen from the HTTP status because that is what the SDKs key their
exceptions on, so a 502 has the same type whether it ends a request or a stream.

Each client protocol names a shape in ``_SHAPES``: OpenAI's
``{"error": {message, type, param, code}}``, Anthropic's
``{"type": "error", "error": {type, message}}`` and Google's
``{"error": {code, message, status}}``. A new client protocol adds one entry.
"""

from __future__ import annotations

from typing import Callable

import orjson

from gateway.protocols.names import Protocol
from gateway.protocols.sse import encode_event

# The longest non-JSON upstream body quoted back to the client.
_MAX_TEXT = 1000

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "overloaded_error",
    504: "timeout_error",
}

# Upstream OpenAI-shaped types that carry more meaning than the status alone
# (OpenAI's own "insufficient_quota", "server_error", ...); anything else
# (Anthropic's "overloaded_error" on a 529) is re-derived from the status.
_OPENAI_PASS_TYPES = frozenset({
    "invalid_request_error", "authentication_error", "permission_error", "not_found_error", "conflict_error",
    "rate_limit_error", "server_error", "insufficient_quota", "tokens", "requests", "invalid_api_key",
})

# The error types of anthropic.types.shared.ErrorType, plus the API's own "request_too_large" (413).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ANTHROPIC_TYPE_SET = frozenset(_ANTHROPIC_TYPES.values()) | {"api_error"}

# google.rpc.Code names by HTTP status, as the Gemini API pairs them.
_GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",  # the gateway's balance: Google reports quota exhaustion this way
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def openai_type(status: int) -> str:
    if status in _OPENAI_TYPES:
        return _OPENAI_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def anthropic_type(status: int) -> str:
    if status in _ANTHROPIC_TYPES:
        return _ANTHROPIC_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def google_status(status: int) -> str:
    if status in _GOOGLE_STATUSES:
        return _GOOGLE_STATUSES[status]
    return "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"


def openai_error(status: int, message: str, code: object = None, param: object = None,
                 upstream_type: str | None = None) -> dict:
    """``{"error": {message, type, param, code}}`` as the OpenAI SDK expects."""
    kind = upstream_type if upstream_type in _OPENAI_PASS_TYPES else openai_type(status)
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def anthropic_error(status: int, message: str, code: object = None, param: object = None,
                    upstream_type: str | None = None) -> dict:
    """``{"type": "error", "error": {type, message}}`` as the Anthropic SDK expects."""
    kind = upstream_type if upstream_type in _ANTHROPIC_TYPE_SET else anthropic_type(status)
    return {"type": "error", "error": {"type": kind, "message": message}}


def google_error(status: int, message: str, code: object = None, param: object = None,
                 upstream_type: str | None = None) -> dict:
    """``{"error": {code, message, status}}``: a ``google.rpc.Status``, as the google-genai SDK expects."""
    return {"error": {"code": status, "message": message, "status": google_status(status)}}


Shape = Callable[[int, str, object, object, "str | None"], dict]

# Client protocol -> its error shape; every protocol not listed speaks OpenAI's.
_SHAPES: dict[Protocol, Shape] = {Protocol.MESSAGES: anthropic_error, Protocol.COUNT_TOKENS: anthropic_error,
                                   Protocol.GEMINI: google_error, Protocol.GEMINI_EMBED: google_error,
                                   Protocol.GEMINI_EMBEDDINGS: google_error}


def error_json(protocol: Protocol, status: int, message: str, *, code: object = None, param: object = None,
               upstream_type: str | None = None) -> dict:
    """The client protocol's error JSON. ``upstream_type``: the type an upstream named, kept when the
    client's SDK knows it."""
    return _SHAPES.get(protocol, openai_error)(status, message, code, param, upstream_type)


def error_body(protocol: Protocol, status: int, message: str, *, code: object = None, param: object = None) -> bytes:
    """:func:`error_json` as the bytes of a response body."""
    return orjson.dumps(error_json(protocol, status, message, code=code, param=param))


def stream_error_event(protocol: Protocol, status: int, message: str) -> tuple[str | None, dict]:
    """(SSE event name, payload) of the event that ends a stream which failed after it started.

    Anthropic streams send ``event: error`` with the error body; the Responses API sends
    ``event: error`` with ``{type, code, message, param}``; Chat Completions streams send the
    error body as a plain ``data:`` line.
    """
    if protocol == Protocol.RESPONSES:
        return "error", {"type": "error", "code": openai_type(status), "message": message, "param": None}
    payload = error_json(protocol, status, message)
    return ("error" if protocol == Protocol.MESSAGES else None), payload


def stream_error_frame(protocol: Protocol, status: int, message: str) -> bytes:
    """:func:`stream_error_event` framed as SSE (never end a stream silently)."""
    event, payload = stream_error_event(protocol, status, message)
    return encode_event(orjson.dumps(payload), event)


def parse_upstream_error(status: int, body: bytes) -> tuple[str, str | None, object, object]:
    """(message, upstream type, code, param) from an upstream error body of any shape."""
    try:
        obj = orjson.loads(body) if body else None
    except ValueError:
        obj = None
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        obj = obj[0]  # Gemini's streaming endpoints wrap the Status in a list
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict):
            message = err.get("message")
            if isinstance(message, str) and message:
                kind = err.get("type")
                # Gemini: {"code": 400, "message", "status": "INVALID_ARGUMENT"}
                code = err.get("code") if isinstance(kind, str) else err.get("status", err.get("code"))
                return message, kind if isinstance(kind, str) else None, code, err.get("param")
        if isinstance(err, str) and err:
            return err, None, None, None
        message = obj.get("message") or obj.get("detail")
        if isinstance(message, str) and message:
            return message, None, None, None
    text = body.decode("utf-8", "replace").strip()[:_MAX_TEXT]
    return text or f"upstream returned HTTP {status}", None, None, None
