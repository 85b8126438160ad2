"""The client-facing HTTP/1.1 server: an asyncio protocol and llhttp, serving the ``tornado.web`` application.

Why not Tornado's ``HTTPServer``: per request, its ``HTTP1Connection`` reads the
head with a regex over an ``IOStream`` buffer, parses every header line in
Python, creates a read buffer (zeroed) for every ``recv``, and adds and removes
the socket from the event loop on every read; together about 190 µs of a bare
Tornado + curl relay's ~630 µs per request on the bench machine, against
~320 µs for the same relay on an asyncio protocol (bench/README.md). So the
socket is an asyncio transport (registered once, written directly), the
bytes are parsed by llhttp (Node's HTTP parser, through ``httptools``: strict
about framing, so request smuggling through conflicting lengths is refused),
and each request is handed to the unchanged ``tornado.web.Application``
through Tornado's own server interfaces: ``HTTPServerConnectionDelegate``
(``start_request``) and an ``httputil.HTTPConnection`` per request (the
``request.connection`` of every ``RequestHandler``). Handlers, routing, error
rendering and ``@stream_request_body`` work as they did.

What it keeps from Tornado's HTTP/1 server, on purpose:

* keep-alive per HTTP/1.0 and 1.1 rules; pipelined requests answered in order;
* a response without ``Content-Length`` is sent chunked (SSE streams);
* ``Expect: 100-continue`` answered once the handler has prepared;
* the body size limit (``set_max_body_size``), lifted per request by handlers
  that count the body themselves (``gateway/http/body.py``);
* a response finished before its request was read closes the connection;
* idle connections closed after ``idle_timeout_s`` (also a head that never ends);
* the write future resolves when the bytes are in the kernel: a relay that
  awaits it gets backpressure from a slow client.

And what it does differently: framing errors, a head over 64 KiB and a body
over the limit get a JSON error (OpenAI's shape, as for an unknown path)
instead of a bare ``400``; ``TCP_NODELAY`` is on for the connection's life.
A request asking to switch protocols (``Upgrade``) is answered over HTTP/1.1
when it has no body, and refused with a 400 when it has one: llhttp stops
parsing at such a head, so its body cannot be read as HTTP/1.1.

This module owns the socket and the parser; ``h1_exchange.py`` is one request
and its response as the web layer sees it.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Awaitable, Iterable, cast

import httptools
from tornado import httputil
from tornado.iostream import StreamClosedError

from gateway.http.h1_exchange import BODY, END, HEAD, Context, Exchange
from gateway.protocols.error_bodies import error_body
from gateway.protocols.names import Protocol

MAXHEAD_BYTES = 64 * 1024  # Tornado's default max_header_size
_PAUSE_BYTES = 64 * 1024  # pipelined input buffered while a response is under way, before reading pauses
_SWEEP_S = 10.0
_REASONS = {400: "Bad Request", 413: "Payload Too Large", 431: "Request Header Fields Too Large"}


class _HeadTooLarge(Exception):
    """Raised from a parser callback: llhttp itself has no limit on the size of a head."""


class _Refused(Exception):
    """Raised from a parser callback once the connection is refused: stops llhttp reading on."""


class H1Connection(asyncio.Protocol):
    """One client connection: llhttp callbacks build exchanges, answered one at a time, in order."""

    transport: asyncio.Transport

    def __init__(self, server: H1Server) -> None:
        self.server = server
        self.closed = False
        self.context = Context(None)
        self.exchanges: deque[Exchange] = deque()
        self.current: Exchange | None = None  # the exchange being answered (the head of ``exchanges``)
        self.parsing: Exchange | None = None
        self.last_active = 0.0
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._paused_reading = False
        self._backlog: list[bytes] = []
        self._backlog_bytes = 0
        self._parser = httptools.HttpRequestParser(self)

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        transport = self.transport
        transport.set_write_buffer_limits(high=0)  # pause_writing at any backlog: write futures mean "sent"
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see NoDelay in server.py's history
        peer = transport.get_extra_info("peername")
        self.context = Context(peer[0] if isinstance(peer, tuple) else None)
        self.last_active = self.server.loop.time()
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._backlog or (self.current is not None and self.current.read_done):
            self._hold(data)  # a pipelined request: parsed once the current answer is finished
            return
        self._feed(data)

    def eof_received(self) -> bool | None:
        return None  # the client closed its side: close ours, and tell the exchange under way

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.forget(self)
        for exchange in list(self.exchanges):
            exchange.lost()
        self.exchanges.clear()
        self.current = None
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(StreamClosedError())
                waiter.exception()

    def pause_writing(self) -> None:
        """Above zero bytes buffered: write futures from now on wait for ``resume_writing``."""

    def resume_writing(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- llhttp callbacks (httptools) ------------------------------------------

    def on_message_begin(self) -> None:
        if self.closed:  # refused: llhttp may still be reading what followed in the same packet
            raise _Refused()
        exchange = self.parsing = Exchange(self)
        self.exchanges.append(exchange)
        if self.current is None:
            self.current = exchange

    def on_url(self, url: bytes) -> None:
        exchange = self.parsing
        if exchange is None or self.closed:
            raise _Refused()
        exchange.url += url
        self._count_head(exchange, len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        exchange = self.parsing
        if exchange is None or self.closed:
            raise _Refused()
        exchange.header_list.append((name, value))
        self._count_head(exchange, len(name) + len(value) + 4)

    def on_headers_complete(self) -> None:
        exchange = self.parsing
        if exchange is None or self.closed:
            raise _Refused()
        parser = self._parser
        exchange.method = parser.get_method().decode("ascii")
        exchange.version_11 = parser.get_http_version() == "1.1"
        exchange.keep_alive = parser.should_keep_alive()
        exchange.delegate = self.server.delegate.start_request(self, exchange)
        exchange.push(HEAD)

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is None or self.closed:
            raise _Refused()
        exchange.push(BODY, body)

    def on_message_complete(self) -> None:
        exchange = self.parsing
        if exchange is None or self.closed:
            raise _Refused()
        self.parsing = None
        exchange.read_done = True
        exchange.push(END)

    # -- internals -------------------------------------------------------------

    def _count_head(self, exchange: Exchange, size: int) -> None:
        exchange.head_bytes += size
        if exchange.head_bytes > MAXHEAD_BYTES:
            raise _HeadTooLarge()

    def _feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade(data, upgrade)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self.refuse(431, "the request head is over 64 KiB")
            elif not isinstance(exc.__context__, _Refused):
                raise
        except httptools.HttpParserError as exc:
            self.refuse(400, f"malformed HTTP request: {exc}")

    def _upgrade(self, data: bytes, upgrade: httptools.HttpParserUpgrade) -> None:
        """llhttp stops at a head that asks to switch protocols; such a request is answered over HTTP/1.1.

        Without a body the request is complete and the bytes after its head are the next request (a fresh
        parser reads them). With a body there is no telling where it ends: a 400 says so and closes.
        """
        exchange = self.exchanges[-1] if self.exchanges else None
        has_body = exchange is not None and any(
            name.lower() in (b"content-length", b"transfer-encoding") and value.strip() not in (b"", b"0")
            for name, value in exchange.header_list)
        if has_body:
            self.refuse(400, "a request with a body cannot ask to switch protocols (Upgrade); send it "
                             "without the Upgrade header")
            return
        self._parser = httptools.HttpRequestParser(self)
        offset = upgrade.args[0] if upgrade.args and isinstance(upgrade.args[0], int) else len(data)
        rest = data[offset:]
        if rest:
            self.data_received(rest)

    def _hold(self, data: bytes) -> None:
        self._backlog.append(data)
        self._backlog_bytes += len(data)
        if self._backlog_bytes > _PAUSE_BYTES and not self._paused_reading:
            self._paused_reading = True
            self.transport.pause_reading()

    def refuse(self, status: int, message: str) -> None:
        """An error of the HTTP layer itself: answered in JSON if nothing was written yet, then closed."""
        if self.closed:
            return
        current = self.current
        if current is None or not current.started:
            body = error_body(Protocol.CHAT, status, message)
            head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            self.transport.write(head + body)
        if current is not None:
            current.lost()  # the handler, if one runs, learns that its client is gone
            current.write_done = True  # and nothing more goes to its delegate
        self.close()

    def transport_write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    def write(self, data: bytes) -> asyncio.Future[None]:
        """Write; the future resolves once every buffered byte is in the kernel (backpressure)."""
        self.transport.write(data)
        if self.transport.get_write_buffer_size() == 0:
            return self.server.sent  # the kernel took it all: the one finished future, shared
        future: asyncio.Future[None] = self.server.loop.create_future()
        self._drain_waiters.append(future)
        return future

    def finished(self, exchange: Exchange) -> None:
        """The response of the current exchange ended: close, or go on with the next request."""
        self.last_active = self.server.loop.time()
        if exchange.disconnect or self.server.closing:
            self.close()
            return
        if self.exchanges and self.exchanges[0] is exchange:
            self.exchanges.popleft()
        self.current = self.exchanges[0] if self.exchanges else None
        if self.current is not None or self._backlog:
            # Pipelined requests: started on the next loop turn, not inside the finishing handler's call.
            self.server.loop.call_soon(self._next)

    def _next(self) -> None:
        if self.closed:
            return
        if self.current is not None:
            self.current.pump()
        if self.current is None or not self.current.read_done:
            backlog, self._backlog, self._backlog_bytes = self._backlog, [], 0
            if self._paused_reading:
                self._paused_reading = False
                self.transport.resume_reading()
            for data in backlog:
                if self.closed:
                    break
                self.data_received(data)

    def close(self) -> None:
        """Close once the buffered response bytes are sent."""
        if not self.closed:
            self.closed = True
            self.transport.close()

    def idle_for(self, now: float) -> float:
        """Seconds without a request under way (a head still arriving counts as idle)."""
        current = self.current
        if current is not None and current.delegate is not None:
            return 0.0
        return now - self.last_active


class H1Server:
    """Serves ``delegate`` (a ``tornado.web.Application``) on sockets bound by the caller."""

    def __init__(self, delegate: httputil.HTTPServerConnectionDelegate, max_body_size: int,
                 idle_timeout_s: float = 300.0) -> None:
        self.delegate = delegate
        self.max_body_size = max_body_size
        self.idle_timeout_s = idle_timeout_s
        self.loop = asyncio.get_event_loop()
        # What a write returns when the kernel took every byte (nearly always): already done, so awaiting
        # it never suspends, and no future is made per write (per chunk of a stream).
        self.sent: asyncio.Future[None] = self.loop.create_future()
        self.sent.set_result(None)
        self.connections: set[H1Connection] = set()
        self.closing = False
        self._servers: list[asyncio.base_events.Server] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._emptied: asyncio.Future[None] | None = None  # set while close_all_connections waits

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """Serve on already bound, listening sockets (``tornado.netutil.bind_sockets``)."""
        for sock in sockets:
            task = self.loop.create_server(lambda: H1Connection(self), sock=sock, backlog=2048)
            asyncio.ensure_future(self._started(task))
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self._sweep_s, self._sweep)

    @property
    def _sweep_s(self) -> float:
        return min(_SWEEP_S, self.idle_timeout_s / 2)

    async def _started(self, task: Awaitable[asyncio.base_events.Server]) -> None:
        server = await task
        if self.closing:
            server.close()
        else:
            self._servers.append(server)

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in list(self.connections):
            if conn.idle_for(now) > self.idle_timeout_s:
                conn.close()
        self._sweeper = None if self.closing else self.loop.call_later(self._sweep_s, self._sweep)

    def stop(self) -> None:
        """Stop accepting; open connections stay until ``close_all_connections``."""
        self.closing = True
        for server in self._servers:
            server.close()
        self._servers = []
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def close_all_connections(self, grace_s: float) -> int:
        """Close every connection, its buffered bytes sent first; after ``grace_s``, abort what is left
        (a client that stopped reading would hold a graceful close open forever). Returns how many
        had to be aborted."""
        for conn in list(self.connections):
            conn.close()
        if self.connections:
            self._emptied = self.loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._emptied), grace_s)
            except asyncio.TimeoutError:
                pass
        stuck = list(self.connections)
        for conn in stuck:
            conn.transport.abort()  # connection_lost follows on the next loop turn
        return len(stuck)

    def forget(self, conn: H1Connection) -> None:
        """A connection is gone; the last one wakes ``close_all_connections``."""
        self.connections.discard(conn)
        if not self.connections and self._emptied is not None and not self._emptied.done():
            self._emptied.set_result(None)
