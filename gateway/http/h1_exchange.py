"""One request and its response on a client connection: the ``request.connection`` of a ``RequestHandler``.

``gateway/http/h1.py`` parses the bytes and owns the socket; an ``Exchange``
is what Tornado's web layer sees of one request. It implements Tornado's
``httputil.HTTPConnection`` (``write_headers``, ``write``, ``finish``, the close
callback, the body size limit), frames the response (``Content-Length`` or
chunked, keep-alive or close per HTTP/1.0 and 1.1), and hands the parser's
events (head, body bytes, end) to the Tornado delegate in order, waiting
whenever the delegate returns an unfinished awaitable (a streamed-body
handler still in ``prepare``).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from tornado import httputil
from tornado.iostream import StreamClosedError

if TYPE_CHECKING:
    from gateway.http.h1 import H1Connection

HEAD, BODY, END = 0, 1, 2  # parser events, in the order an exchange receives them


class Context:
    """What ``HTTPServerRequest`` reads from ``connection.context``."""

    __slots__ = ("remote_ip", "protocol")

    def __init__(self, remote_ip: str | None) -> None:
        self.remote_ip = remote_ip
        self.protocol = "http"


def closed_future() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_exception(StreamClosedError())
    future.exception()  # retrieved: nobody may await it, and that is no error
    return future


class Exchange(httputil.HTTPConnection):
    """One request and its response: the ``request.connection`` a ``RequestHandler`` writes to.

    Parser events reach the Tornado delegate in order; when the delegate returns
    an unfinished awaitable (a streamed-body handler still in ``prepare``, or a
    ``data_received`` that wants the caller to wait) the next events wait for it.
    """

    def __init__(self, conn: H1Connection) -> None:
        self.conn = conn
        self.context = conn.context
        self.url = b""
        self.head_bytes = 0
        self.header_list: list[tuple[bytes, bytes]] = []
        self.delegate: httputil.HTTPMessageDelegate | None = None
        self.method = ""
        self.version_11 = True
        self.keep_alive = True
        self.expect_continue = False
        self.max_body_size = conn.server.max_body_size
        self.body_size = 0
        self.read_done = False  # the parser saw the end of the request
        self.delivered_done = False  # the delegate was told (``finish``)
        self.started = False  # the response's head was written
        self.write_done = False  # the response was finished
        self.chunked = False
        self.disconnect = False
        self._events: deque[tuple[int, bytes]] = deque()
        self._waiting = False
        self._close_callback: Callable[[], None] | None = None

    # -- parser side ---------------------------------------------------------

    def push(self, kind: int, data: bytes = b"") -> None:
        """Queue a parser event (headers, body bytes, end); delivered now if this exchange is current."""
        self._events.append((kind, data))
        if not self._waiting and self.conn.current is self:
            self.pump()

    def pump(self) -> None:
        """Deliver queued events to the delegate until one returns an unfinished awaitable."""
        events = self._events
        while events and not self._waiting:
            kind, data = events.popleft()
            if self.write_done:  # answered already (e.g. a 413): the rest of the body goes nowhere
                continue
            result = self._deliver(kind, data)
            if result is not None:
                future = asyncio.ensure_future(result)
                if not future.done():
                    self._waiting = True
                    future.add_done_callback(self._resume)
                    continue
            if self.expect_continue:
                self._send_continue()

    def _deliver(self, kind: int, data: bytes) -> Awaitable[None] | None:
        delegate = self.delegate
        assert delegate is not None
        if kind == HEAD:
            try:
                headers = self._headers()
            except httputil.HTTPInputError:  # its message quotes the value, which may be a key
                self.conn.refuse(400, "malformed HTTP request: invalid header")
                return None
            return delegate.headers_received(self._start_line(), headers)
        if kind == BODY:
            self.body_size += len(data)
            if self.body_size > self.max_body_size:
                self.conn.refuse(413, "the request body is too large")
                return None
            return delegate.data_received(data)
        self.delivered_done = True
        delegate.finish()
        if self.write_done:
            self.delegate = None  # exchange -> delegate -> request -> exchange: broken here, not by the GC
        return None

    def _resume(self, future: asyncio.Future[Any]) -> None:
        self._waiting = False
        if not future.cancelled():
            future.exception()  # a failure was the handler's to log; its answer says the rest
        if self.expect_continue:  # the handler has prepared: the client may send its body now
            self._send_continue()
        if self.conn.current is self and not self.conn.closed:
            self.pump()

    def _send_continue(self) -> None:
        self.expect_continue = False
        if not self.started:
            self.conn.transport_write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _start_line(self) -> httputil.RequestStartLine:
        return httputil.RequestStartLine(self.method, self.url.decode("latin1"),
                                         "HTTP/1.1" if self.version_11 else "HTTP/1.0")

    def _headers(self) -> httputil.HTTPHeaders:
        """The request's headers as Tornado's ``HTTPHeaders``.

        llhttp has already refused a name that is not a token and a value with
        control characters, so a header seen once is set as it is; ``add``
        (which checks both again with regexes, ~3 % of a bare relay's request)
        only joins a repeated header, as Tornado's parser would.
        """
        headers = httputil.HTTPHeaders()
        seen: set[bytes] = set()
        for name, value in self.header_list:
            text = value.strip(b" \t").decode("latin1")
            lower = name.lower()
            if lower in seen:
                headers.add(name.decode("latin1"), text)
            else:
                seen.add(lower)
                headers[name.decode("latin1")] = text
        if self.version_11 and headers.get("Expect", "").lower() == "100-continue":
            self.expect_continue = True
        return headers

    # -- httputil.HTTPConnection: the handler's side -------------------------

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        self._close_callback = callback

    def set_max_body_size(self, max_body_size: int) -> None:
        self.max_body_size = max_body_size

    def set_body_timeout(self, timeout: float) -> None:
        """Accepted for Tornado's interface; idle connections are swept by the server instead."""

    @property
    def socket(self) -> socket.socket | None:
        sock: socket.socket | None = self.conn.transport.get_extra_info("socket")
        return sock

    def write_headers(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                      headers: httputil.HTTPHeaders, chunk: bytes | None = None) -> asyncio.Future[None]:
        assert isinstance(start_line, httputil.ResponseStartLine)
        if self.conn.closed:
            return closed_future()
        self.started = True
        code = start_line.code
        bodiless = self.method == "HEAD" or code in (204, 304) or code < 200
        self.chunked = self.version_11 and not bodiless and "Content-Length" not in headers
        if not self.keep_alive or (not self.version_11 and not bodiless and "Content-Length" not in headers):
            self.disconnect = True  # HTTP/1.0 without a length: the body ends when the connection does
        lines = [f"HTTP/1.1 {code} {start_line.reason}"]
        lines.extend(f"{name}: {value}" for name, value in headers.get_all())
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
        if self.disconnect and self.version_11:
            lines.append("Connection: close")
        elif self.keep_alive and not self.version_11:
            lines.append("Connection: Keep-Alive")
        head = "\r\n".join(lines)
        if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1:
            raise ValueError("CR or LF inside a response header")  # Tornado's own check, kept
        data = head.encode("latin1") + b"\r\n\r\n"
        if chunk and not bodiless:
            data += self._frame(chunk)
        return self.conn.write(data)

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        if self.conn.closed:
            return closed_future()
        if self.method == "HEAD":
            return self.conn.write(b"")
        return self.conn.write(self._frame(chunk))

    def _frame(self, chunk: bytes) -> bytes:
        if self.chunked and chunk:  # an empty chunk would end the body
            return b"%x\r\n%b\r\n" % (len(chunk), chunk)
        return chunk

    def finish(self) -> None:
        if self.write_done:
            return
        self.write_done = True
        self._close_callback = None
        if self.chunked and not self.conn.closed:
            self.conn.transport_write(b"0\r\n\r\n")
        if not self.read_done:  # the rest of the request would have to be read first: close instead
            self.disconnect = True
        if self.delivered_done:
            self.delegate = None  # exchange -> delegate -> request -> exchange: broken here, not by the GC
        self.conn.finished(self)

    # -- connection lost -------------------------------------------------------

    def lost(self) -> None:
        """The client went away: tell whoever is waiting for this exchange, once."""
        if self.write_done or self.delegate is None:
            return
        if not self.delivered_done:
            self.delegate.on_connection_close()  # still reading: the message delegate is told
        callback, self._close_callback = self._close_callback, None
        if callback is not None:
            callback()
        self.delegate = None
