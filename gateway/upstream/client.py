"""Pooled upstream HTTP over ``tornado.curl_httpclient``, taken apart where it must be.

Tornado's curl client hands us a response only when a transfer ends, defers
its callbacks, and cannot cancel. A gateway needs the opposite: the status
before any byte is committed to the client, flow control, and an abort that
reaches the upstream within milliseconds. So each transfer installs its own
libcurl callbacks through ``prepare_curl_callback`` (called last when Tornado
sets a handle up):

* ``HEADERFUNCTION`` parses the status line itself (``getinfo`` is refused
  inside callbacks) and resolves ``started()`` when the header block ends;
* ``WRITEFUNCTION`` hands body bytes to the relay's sink while ``pump()``
  runs (the relay writes them to the client right there), else queues them
  and returns ``WRITEFUNC_PAUSE`` above a high-water mark, so a slow client
  stalls the upstream socket instead of growing our memory; ``read()`` joins
  what queued into one chunk and resumes;
* ``abort()`` takes the handle out of curl's multi handle (``CurlPool.cancel``):
  libcurl closes the connection of an unfinished transfer at once, so the
  upstream sees the close (and stops generating, and billing) immediately,
  even while the socket is idle. No progress function is installed, so
  libcurl never calls into Python to ask whether to go on.

These callbacks run synchronously on the IOLoop thread inside curl's socket
handling, so they may touch futures directly. Transfers run on ``CurlPool``
(``curl_pool.py``), tornado's curl client with a per-request setup that only
sets what changed since the handle's previous request.

Tornado's own queue in front of curl has no deadline (a request queued past
its timeout still ran), so admission happens here: ``max_clients`` slots and
a bounded wait for one.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pycurl

from gateway.config import Timeouts
from gateway.upstream.curl_pool import ABORTED_ERRNO, CurlPool
from gateway.upstream.exchange import Phase, Sink, UpstreamError
from gateway.upstream.headers import HeaderBlock

# Per stream, what waits for a slow client is at most this plus one curl buffer (16 KiB) here, and as much
# again in the client socket's write buffer: 1,000 stalled streams cost ~180 MB (bench/stalled.py).
HIGH_WATER_BYTES = 16 * 1024

# libcurl error numbers (match on errno, never on message text: libcurl 8.19 reworded them)
_CONNECT_ERRNOS = frozenset({5, 6, 7, 35, 60})  # proxy/host resolve, connect, TLS handshake, TLS verify
_TIMEOUT_ERRNO = 28
_ABORTED_ERRNOS = frozenset({23, ABORTED_ERRNO})  # write error (our short write), our own cancel


class Overloaded(Exception):
    """No transfer slot freed up within the queue deadline."""


class _Admission:
    """A counting semaphore whose waiters give up after a deadline."""

    def __init__(self, slots: int) -> None:
        self.free = slots
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, timeout_s: float) -> None:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except asyncio.TimeoutError:
            if waiter.done():  # granted in the same instant it expired: keep the slot
                return
            waiter.cancel()
            raise Overloaded() from None

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the waiter
                return
        self.free += 1


class UpstreamClient:
    """The gateway's own curl client (never the process-wide default instance)."""

    def __init__(self, max_clients: int, queue_timeout_s: float) -> None:
        self._http: CurlPool | None = None  # created by the first transfer: see _pool
        self._max_clients = max_clients  # CurlAsyncHTTPClient keeps no such attribute
        self._admission = _Admission(max_clients)
        self._active: set[CurlExchange] = set()
        self.queue_timeout_s = queue_timeout_s

    @property
    def in_use(self) -> int:
        return self._max_clients - self._admission.free

    async def open(self, url: str, headers: HeaderBlock, body: bytes | None, timeouts: Timeouts) -> "CurlExchange":
        """Start one transfer (POST ``body``, or GET when it is None); raises ``Overloaded`` when no slot frees
        up in time. A failure to set the transfer up surfaces from ``started()``, like any other."""
        await self._admission.acquire(self.queue_timeout_s)
        pool = self._pool()
        exchange = CurlExchange(pool, self._done, timeouts)
        self._active.add(exchange)
        try:
            exchange._curl = pool.start(exchange, url, headers.lines, body, timeouts.connect_timeout_s,
                                        timeouts.request_timeout_s)
        except Exception as exc:
            exchange._ended(-1, f"{type(exc).__name__}: {exc}")
        return exchange

    def _pool(self) -> CurlPool:
        """The curl multi handle, created when the first transfer needs it: libcurl initialises the OpenSSL
        that pycurl's wheel bundles (a second copy beside Python's ``ssl``) on its first handle, 2.9 MiB of
        RSS, which a gateway that has sent nothing upstream (mock nodes only, or just started) does not
        pay. Created on the IOLoop thread, which CurlPool binds to."""
        if self._http is None:
            self._http = CurlPool(force_instance=True, max_clients=self._max_clients)
        return self._http

    def _done(self, exchange: "CurlExchange") -> None:
        self._active.discard(exchange)
        self._admission.release()

    def close(self) -> None:
        """Abort what is still running, then close the pool.

        Nothing to wait for in between: ``abort`` removes the handle from the multi and ends the exchange
        (``_ended``, then ``_done``) before it returns, so every handle is back in the pool by then.
        """
        for exchange in list(self._active):
            exchange.abort("shutdown")
        if self._http is not None:
            self._http.close()


class CurlExchange:
    """One upstream transfer: status first, then body chunks under flow control."""

    def __init__(self, pool: CurlPool, on_done: Any, timeouts: Timeouts) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._pool = pool
        self._on_finished = on_done
        self._timeouts = timeouts
        self._loop = asyncio.get_running_loop()
        self._curl: pycurl.Curl | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._sink: Sink | None = None  # set while pump() waits: chunks go to it, not to _chunks
        self._sink_error: Exception | None = None  # what the sink raised inside libcurl's callback
        self._paused = False
        self._headers_done = False
        self._got_body = False
        self._finished = False
        self._error: UpstreamError | None = None
        self._abort_reason: str | None = None
        self._started: asyncio.Future[None] = self._loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._last_activity = self._loop.time()
        # One timer per exchange: it guards the first byte, then turns into the idle check.
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(timeouts.first_byte_timeout_s, self._on_timer)

    # -- the pipeline's side ------------------------------------------------

    async def started(self) -> None:
        await self._started

    async def read(self) -> bytes:
        while not self._chunks:
            if self._finished:
                if self._error is not None:
                    raise self._error
                return b""
            self._waiter = self._loop.create_future()
            await self._waiter
        return self._take()

    async def pump(self, sink: Sink) -> bool:
        """Queued chunks first, then each chunk from inside libcurl's write callback (see Exchange.pump).

        The sink runs synchronously in that callback, on the IOLoop thread: it may write to the client, but
        must not call ``abort`` (libcurl refuses calls on its multi handle from inside its callbacks), so
        it returns False and the relay aborts once ``pump`` has returned.
        """
        while True:
            if self._chunks:
                if not sink(self._take()):
                    return False
                continue
            if self._finished:
                if self._error is not None:
                    raise self._error
                return True
            self._sink = sink
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                stopped = self._sink is None  # the sink said stop (or raised): _on_body took it away
                self._sink = None
            if self._sink_error is not None:
                error, self._sink_error = self._sink_error, None
                raise error
            if stopped:
                return False

    def _take(self) -> bytes:
        """What queued, as one chunk; a transfer paused at the high-water mark goes on."""
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._buffered = 0
        if self._paused and self._curl is not None:
            self._paused = False
            self._curl.pause(pycurl.PAUSE_CONT)  # libcurl redelivers the chunk it held (queued: no sink now)
        return data

    async def read_all(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        while chunk := await self.read():
            size += len(chunk)
            if size > limit:
                self.abort("too_large")
                raise UpstreamError(Phase.MID_STREAM, "too_large", f"body over {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def abort(self, reason: str) -> None:
        if self._finished or self._abort_reason is not None:
            return
        self._abort_reason = reason
        if self._curl is not None:
            self._pool.cancel(self._curl)  # ends the transfer now: _ended runs before this returns

    # -- libcurl's side -----------------------------------------------------

    def _on_header(self, line: bytes) -> None:
        if line.startswith(b"HTTP/"):
            parts = line.split(b" ", 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            self.headers = {}
        elif line in (b"\r\n", b"\n"):
            if 100 <= self.status < 200:
                return  # an interim response (100 Continue): the real one follows
            self._headers_done = True
            self._last_activity = self._loop.time()
            if self._timeouts.idle_timeout_s < self._timeouts.first_byte_timeout_s:
                self._rearm(self._timeouts.idle_timeout_s)  # else the first-byte timer checks idleness when it fires
            if not self._started.done():
                self._started.set_result(None)
        else:
            name, sep, value = line.partition(b":")
            if sep:
                self.headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")

    def _on_body(self, chunk: bytes) -> int | None:
        if self._abort_reason is not None:
            return 0  # a short write fails the transfer at once
        if self._buffered >= HIGH_WATER_BYTES:
            self._paused = True
            return int(pycurl.WRITEFUNC_PAUSE)
        self._got_body = True
        self._last_activity = self._loop.time()
        sink = self._sink
        if sink is not None:
            try:
                if sink(chunk):
                    return None
            except Exception as exc:  # raised where pump() is awaited, not swallowed by libcurl's callback
                self._sink_error = exc
            self._sink = None  # the relay takes over: what arrives next waits in _chunks
            self._wake()
            return None
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self._wake()
        return None

    def _ended(self, errno: int, message: str) -> None:
        """The pool's report: ``errno`` 0 when the transfer completed, else libcurl's error (-1: setup)."""
        self._finished = True
        self._curl = None  # the handle is back in the pool now
        self._on_finished(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if errno:
            self._error = self._classify(errno, message)
        if not self._started.done():
            if self._error is None:  # completed without a header block: treat as a reset
                self._error = UpstreamError(Phase.FIRST_BYTE, "reset", "no response headers")
            self._started.set_exception(self._error)
            self._started.exception()  # retrieved here so an unawaited failure is not logged
        self._wake()

    def _classify(self, errno: int, message: str) -> UpstreamError:
        phase = Phase.MID_STREAM if self._got_body else Phase.FIRST_BYTE
        if self._abort_reason is not None and errno in _ABORTED_ERRNOS:
            return UpstreamError(phase, self._abort_reason)
        if errno in _CONNECT_ERRNOS:
            return UpstreamError(Phase.CONNECT, "connect", message)
        if errno == _TIMEOUT_ERRNO:
            return UpstreamError(phase, "timeout", "total request timeout")
        return UpstreamError(phase, "reset", message)

    # -- timers -------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _rearm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        """First-byte deadline before the headers; afterwards the idle check, re-armed lazily.

        Relaying a chunk only stores a timestamp; the timer compares against
        it when it fires, so a stream costs no timer churn per chunk.
        """
        self._timer = None
        if self._finished:
            return
        if not self._headers_done:
            self.abort("timeout")
            return
        now = self._loop.time()
        base = now if self._paused else self._last_activity  # a paused transfer waits on our client, not upstream
        remaining = base + self._timeouts.idle_timeout_s - now
        if remaining > 0:
            self._rearm(max(0.01, remaining))
        else:
            self.abort("timeout")
