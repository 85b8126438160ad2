"""Error bodies in each client protocol's shape, from any upstream's error.

Upstreams answer errors in their own shape (OpenAI, Anthropic, Gemini's
``google.rpc.Status``, a JSON list around one of those, or plain text from a
proxy). Clients must get their own SDK's shape with the upstream's message
text kept, and an error *type* that their SDK maps to the right exception
class; the type is chosen from the HTTP status because that is what both
SDKs key their exceptions on.
"""

from __future__ import annotations

import ujson

# Client endpoints that answer errors in Google's shape.
GEMINI_CLIENTS = frozenset({"gemini", "gemini_embeddings"})

# The longest non-JSON upstream body quoted back to the client.
_MAX_TEXT = 1000

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

# Exactly the error types of anthropic.types.shared.ErrorObject.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ANTHROPIC_TYPE_SET = frozenset(_ANTHROPIC_TYPES.values()) | {"api_error"}


def openai_type(status: int) -> str:
    if status in _OPENAI_TYPES:
        return _OPENAI_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def anthropic_type(status: int) -> str:
    if status in _ANTHROPIC_TYPES:
        return _ANTHROPIC_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def openai_error(message: str, status: int, code: object = None, param: object = None,
                 error_type: str | None = None) -> dict:
    """``{"error": {message, type, param, code}}`` as the OpenAI SDK expects."""
    return {"error": {"message": message, "type": error_type or openai_type(status),
                      "param": param, "code": code}}


def anthropic_error(message: str, status: int, error_type: str | None = None) -> dict:
    """``{"type": "error", "error": {type, message}}`` as the Anthropic SDK expects."""
    if error_type not in _ANTHROPIC_TYPE_SET:
        error_type = anthropic_type(status)
    return {"type": "error", "error": {"type": error_type, "message": message}}


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


def google_status(status: int) -> str:
    if status in _GOOGLE_STATUSES:
        return _GOOGLE_STATUSES[status]
    return "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"


def gemini_error(message: str, status: int) -> dict:
    """``{"error": {code, message, status}}``: a ``google.rpc.Status``, as the google-genai SDK expects."""
    return {"error": {"code": status, "message": message, "status": google_status(status)}}


def parse_upstream_error(status: int, body: bytes) -> tuple[str, str | None, object, object]:
    """(message, upstream type, code, param) from an upstream error body of any shape."""
    try:
        obj = ujson.loads(body) if body else None
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


def client_error(client: str, status: int, message: str, upstream_type: str | None = None,
                 code: object = None, param: object = None) -> dict:
    """The client protocol's error JSON."""
    if client == "messages":
        return anthropic_error(message, status, upstream_type)
    if client in GEMINI_CLIENTS:
        return gemini_error(message, status)
    return openai_error(message, status, code, param,
                        upstream_type if upstream_type in _OPENAI_PASS_TYPES else None)


# Upstream OpenAI-shaped types that carry more meaning than the status alone
# (OpenAI's own "insufficient_quota", "server_error", ...); anything else
# (Anthropic's "overloaded_error") is re-derived from the status.
_OPENAI_PASS_TYPES = frozenset(_OPENAI_TYPES.values()) | {
    "server_error", "insufficient_quota", "tokens", "requests", "invalid_api_key",
}
