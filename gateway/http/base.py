"""What every handler shares: request ids, the gateway's headers, errors in the protocol's shape.

Errors follow Tornado's own idiom: a handler raises ``GatewayError`` (or lets a
ledger exception through), or calls ``fail`` where raising is not possible, and
``write_error`` renders it in the handler's client protocol (``self.protocol``)
through ``protocols/error_bodies.py``. Tornado's own errors (404, 405, bad
framing) and unexpected exceptions (500) go the same way, never as HTML.
"""

from __future__ import annotations

import itertools
import os
import time
from types import TracebackType
from typing import Any

import orjson
import tornado
from tornado.httputil import HTTPHeaders, format_timestamp
from tornado.iostream import StreamClosedError
from tornado.web import HTTPError, RequestHandler

from gateway import redact
from gateway.errors import ErrorKind, GatewayError, ledger_error
from gateway.ledger.errors import LedgerError
from gateway.protocols.error_bodies import error_body
from gateway.protocols.names import Protocol
from gateway.services import Services


_SERVER = f"TornadoServer/{tornado.version}"


class _HttpDate:
    """The ``Date`` header's value, formatted at most once a second."""

    def __init__(self) -> None:
        self.second = 0
        self.text = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self.second:
            self.second, self.text = now, format_timestamp(now)
        return self.text


_http_date = _HttpDate()


class _RequestIds:
    """Request ids: 24 hex digits, a random per-process prefix and a counter.

    Unique, not secret (they are echoed in ``x-request-id`` and logged), so no
    ``getrandom`` syscall per request; each process, ``--workers`` forks
    included, draws its own prefix.
    """

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._next = itertools.count(int.from_bytes(os.urandom(3), "big")).__next__

    def new(self) -> str:
        return f"{self._prefix}{self._next() & 0xFFFFFFFFFFFF:012x}"


new_request_id = _RequestIds().new


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
    protocol = Protocol.CHAT  # error shape: MESSAGES Anthropic's, GEMINI Google's, anything else OpenAI's

    def initialize(self, services: Services, **kwargs: Any) -> None:
        self.services = services

    def clear(self) -> None:
        """Tornado's ``clear`` (run when a handler is made, and again before an error answer), cheaper.

        Tornado formats the ``Date`` header for every response (``email.utils``,
        9 µs, -2.5 % instructions per request without it) and validates each
        default header with a regex; here the date is formatted once a second and
        the constant headers are set as they are. The attributes are the ones
        Tornado's own ``clear`` sets (tornado is pinned below 7, for
        ``upstream/curl_pool.py`` already). The request id is drawn once, on the
        first call, so an error answer keeps it.
        """
        request_id = self.__dict__.get("request_id")
        if request_id is None:
            request_id = self.request_id = new_request_id()
        self._headers = HTTPHeaders({"Server": _SERVER, "Content-Type": "text/html; charset=UTF-8",
                                     "Date": _http_date(), "X-Request-Id": request_id,
                                     "X-Infermesh-Node": "gateway"})
        self.set_default_headers()  # handlers' own (the console's security headers, no-store on admin)
        self._write_buffer: list[bytes] = []
        self._status_code = 200
        self._reason = "OK"

    def check_xsrf_cookie(self) -> None:
        """API clients send no cookies; nothing here is cookie-authenticated."""

    def send_json(self, status: int, payload: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(payload))

    def fail(self, error: GatewayError) -> None:
        """Answer ``error`` now, where raising it is not possible (``prepare`` of a streamed body, a callback)."""
        self.send_error(error.kind.status, error=error)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Render the error in this handler's protocol: the one place HTTP error answers are written."""
        error = kwargs.get("error")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, StreamClosedError):  # the client left (e.g. inside its body): no one to answer
            return
        if error is None and isinstance(exc, GatewayError):
            error = exc
        elif error is None and isinstance(exc, LedgerError):
            error = ledger_error(exc)
        if error is not None:  # raised on purpose: its kind decides the status
            status_code = error.kind.status
            self.set_status(status_code)
            if error.retry_after_s is not None:
                self.set_header("Retry-After", str(error.retry_after_s))
            for name, value in (error.headers or {}).items():
                self.set_header(name, value)
            message, code, param = error.message, error.code, error.param
        else:  # Tornado's own (404, 405, bad framing) or an unexpected exception (500): status as Tornado chose
            if status_code >= 500:  # an exception escaped a handler: Tornado has logged its traceback
                self.services.internal_errors += 1
            message, code, param = _tornado_message(status_code, exc, self.request.method), None, None
        self.set_header("Content-Type", "application/json")
        self.finish(redact.current().bytes(error_body(self.protocol, status_code, message, code=code, param=param)))

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:
        """Errors answered on purpose are not faults: the access log has them; nor is a client that left.
        Anything else is logged."""
        if isinstance(value, (GatewayError, LedgerError, StreamClosedError)) and not isinstance(value, HTTPError):
            return
        super().log_exception(typ, value, tb)


def _tornado_message(status_code: int, exc: BaseException | None, method: str | None) -> str:
    if isinstance(exc, HTTPError) and exc.log_message:
        return exc.log_message
    return {404: "no such endpoint", 405: f"method {method} is not allowed here"}.get(status_code, "internal error")


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        self.protocol = Protocol.MESSAGES if self.request.path.startswith("/v1/messages") else Protocol.CHAT
        raise GatewayError(ErrorKind.NOT_FOUND, f"no such endpoint: {self.request.path}")
