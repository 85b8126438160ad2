"""One enum of error kinds, rendered in each client protocol's own shape.

Every failure the gateway reports is a ``GatewayError`` carrying an
``ErrorKind``; the kind alone decides the HTTP status and the type names each
protocol uses, so a new error path cannot invent an inconsistent status.
"""

from __future__ import annotations

from enum import Enum

import ujson

from gateway.protocols.error_bodies import GEMINI_CLIENTS, gemini_error


class ErrorKind(Enum):
    # value: (HTTP status, OpenAI error type, Anthropic error type)
    INVALID_REQUEST = (400, "invalid_request_error", "invalid_request_error")
    AUTHENTICATION = (401, "authentication_error", "authentication_error")
    INSUFFICIENT_BALANCE = (402, "insufficient_quota", "billing_error")
    PERMISSION = (403, "permission_error", "permission_error")
    NOT_FOUND = (404, "not_found_error", "not_found_error")
    METHOD_NOT_ALLOWED = (405, "invalid_request_error", "invalid_request_error")
    PAYLOAD_TOO_LARGE = (413, "invalid_request_error", "request_too_large")
    RATE_LIMITED = (429, "rate_limit_error", "rate_limit_error")
    UPSTREAM_FAILED = (502, "upstream_error", "api_error")
    OVERLOADED = (503, "overloaded_error", "overloaded_error")
    UPSTREAM_TIMEOUT = (504, "timeout_error", "timeout_error")
    INTERNAL = (500, "server_error", "api_error")

    @property
    def status(self) -> int:
        return self.value[0]


class GatewayError(Exception):
    """An error answered to the client; ``param`` names the request field at fault.

    ``headers`` are sent with the error answer (e.g. a 429's ``x-ratelimit-*``).
    """

    headers: dict[str, str] | None = None

    def __init__(self, kind: ErrorKind, message: str, param: str | None = None,
                 code: str | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s


def error_body(protocol: str, error: GatewayError) -> bytes:
    """The JSON error body for a protocol: Anthropic's for ``messages``, Google's for the Gemini
    endpoints, OpenAI's otherwise."""
    status, openai_type, anthropic_type = error.kind.value
    if protocol in GEMINI_CLIENTS:
        return ujson.dumps(gemini_error(error.message, status)).encode()
    if protocol == "messages":
        return ujson.dumps({"type": "error", "error": {"type": anthropic_type, "message": error.message}}).encode()
    return ujson.dumps({"error": {"message": error.message, "type": openai_type, "param": error.param,
                                  "code": error.code}}).encode()


def stream_error_frame(protocol: str, error: GatewayError) -> bytes:
    """The SSE frame that ends a stream which failed after it started (never end silently)."""
    body = error_body(protocol, error)
    if protocol == "messages":
        return b"event: error\ndata: " + body + b"\n\n"
    if protocol == "responses":
        _, openai_type, _ = error.kind.value
        event = {"type": "error", "code": openai_type, "message": error.message, "param": None}
        return b"event: error\ndata: " + ujson.dumps(event).encode() + b"\n\n"
    return b"data: " + body + b"\n\n"
