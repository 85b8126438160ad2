"""What every handler shares: request ids, the gateway's headers, errors in the protocol's shape."""

from __future__ import annotations

import os
from typing import Any

import ujson
from tornado.web import HTTPError, RequestHandler

from gateway import redact
from gateway.errors import ErrorKind, GatewayError, error_body
from gateway.services import Services

_STATUS_KINDS = {400: ErrorKind.INVALID_REQUEST, 401: ErrorKind.AUTHENTICATION, 403: ErrorKind.PERMISSION,
                 404: ErrorKind.NOT_FOUND, 405: ErrorKind.METHOD_NOT_ALLOWED, 413: ErrorKind.PAYLOAD_TOO_LARGE,
                 503: ErrorKind.OVERLOADED}


def new_request_id() -> str:
    return os.urandom(12).hex()


def api_key_from(handler: RequestHandler) -> str | None:
    """``x-api-key`` wins over ``Authorization: Bearer`` when both are present (contract §3)."""
    headers = handler.request.headers
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


def gemini_api_key(handler: RequestHandler) -> str | None:
    """Gemini clients: ``x-goog-api-key`` (what the google-genai SDK and Gemini CLI send), then
    ``?key=``, then the gateway's own ``x-api-key`` / ``Authorization: Bearer``."""
    key = handler.request.headers.get("x-goog-api-key")
    if key:
        return key.strip()
    key = handler.get_query_argument("key", None)
    if key:
        return key.strip()
    return api_key_from(handler)


def wants_google_shape(handler: RequestHandler) -> bool:
    """A Gemini client on a path shared with OpenAI's (``GET /v1/models``): it sends its key Google's way."""
    return "x-goog-api-key" in handler.request.headers or handler.get_query_argument("key", None) is not None


class BaseHandler(RequestHandler):
    protocol = "chat"  # error shape: "messages" answers Anthropic-style, anything else OpenAI-style

    def initialize(self, services: Services, **kwargs: Any) -> None:
        self.services = services
        # Tornado sets default headers before initialize(): replace that id with the one the pipeline records.
        self.request_id = new_request_id()
        self.set_header("x-request-id", self.request_id)

    def set_default_headers(self) -> None:
        self.set_header("x-request-id", getattr(self, "request_id", "") or new_request_id())
        self.set_header("x-infermesh-node", "gateway")

    def check_xsrf_cookie(self) -> None:
        """API clients send no cookies; nothing here is cookie-authenticated."""

    def send_json(self, status: int, payload: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(ujson.dumps(payload, escape_forward_slashes=False))

    def send_error_json(self, error: GatewayError) -> None:
        if error.retry_after_s is not None:
            self.set_header("Retry-After", str(error.retry_after_s))
        for name, value in (error.headers or {}).items():
            self.set_header(name, value)
        self.set_status(error.kind.status)
        self.set_header("Content-Type", "application/json")
        self.finish(redact.current().bytes(error_body(self.protocol, error)))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado's own errors (405, 404, bad framing) in the protocol's JSON shape, never HTML."""
        kind = _STATUS_KINDS.get(status_code, ErrorKind.INTERNAL)
        if kind is ErrorKind.INTERNAL:  # an exception escaped a handler: Tornado has logged its traceback
            self.services.internal_errors += 1
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, HTTPError) and exc.log_message else {
            404: "no such endpoint", 405: f"method {self.request.method} is not allowed here"}.get(
            status_code, "internal error")
        self.set_header("Content-Type", "application/json")
        self.finish(error_body(self.protocol, GatewayError(kind, message)))


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        self.protocol = "messages" if self.request.path.startswith("/v1/messages") else "chat"
        self.send_error_json(GatewayError(ErrorKind.NOT_FOUND, f"no such endpoint: {self.request.path}"))
