"""A fast mock LLM upstream: a separate process speaking the providers' wire protocols.

Tests and benchmarks point gateway nodes at it over real loopback HTTP. It is
written on bare asyncio protocols (not Tornado) so that it is never the
bottleneck of a benchmark: ``python bench/mock_upstream.py --port 9000``.

Virtual nodes: a path prefix ``/n/<name>`` (e.g. a node ``base_url`` of
``http://127.0.0.1:9000/n/a/v1``) gives each node its own behaviour and
counters, so one process can play many nodes, some of them broken.

Behaviour, per node (``POST /_control/<name>`` with JSON) or per request
(``x-mock-*`` headers, same names with ``-``):

  status          HTTP status to answer (error body in the wire's shape)
  retry_after     Retry-After header value for error answers
  first_byte_ms   delay before the status line
  chunk_delay_ms  delay between streamed events
  tokens          output tokens (words) per reply
  fault           "hang" (never answer), "reset-before" (close before the status line),
                  "reset-mid" (close halfway through the body), "hang-mid" (stop sending halfway),
                  or one of the hostile answers of ``mock_hostile.py`` (an HTML page behind a 200, ...)
  event_bytes     size of the "huge-event" fault's event

Counters: ``GET /_stats/<name>`` -> requests, closed_early, in_flight, the
last request's path/headers/body and each close time. ``POST /_reset`` clears all.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import mock_hostile, mock_wires  # noqa: E402  (the wire formats; see those modules)

BEHAVIOUR_KEYS = ("status", "retry_after", "first_byte_ms", "chunk_delay_ms", "tokens", "fault", "event_bytes")


@dataclass
class NodeStats:
    requests: int = 0
    closed_early: int = 0
    in_flight: int = 0
    completed: int = 0
    close_times: list[float] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)
    behaviour: dict[str, Any] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        return {"requests": self.requests, "closed_early": self.closed_early, "in_flight": self.in_flight,
                "completed": self.completed, "close_times": self.close_times[-50:], "last": self.last,
                "behaviour": self.behaviour}


NODES: dict[str, NodeStats] = {}


def node_stats(name: str) -> NodeStats:
    stats = NODES.get(name)
    if stats is None:
        stats = NODES[name] = NodeStats()
    return stats


@dataclass
class Request:
    method: str
    path: str  # without the /n/<name> prefix and without the query
    query: str
    headers: dict[str, str]
    body: bytes
    node: str


class HTTPProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; requests on one connection are answered in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.queue: asyncio.Queue[Request | None] = asyncio.Queue()
        self.closed = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            method, target, _ = (head[0].split(" ") + ["", ""])[:3]
            path, _, query = target.partition("?")
            node = "default"
            if path.startswith("/n/"):
                _, _, node, rest = path.split("/", 3) if path.count("/") >= 3 else ("", "", path[3:], "")
                path = "/" + rest
            self.queue.put_nowait(Request(method, path, query, headers, body, node))

    def pause_writing(self) -> None:
        self.writable.clear()  # the peer reads slowly: a real server stops producing too

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()
        self.queue.put_nowait(None)
        self.on_close()

    def on_close(self) -> None:
        """Replaced while a response is in progress, to count an early close."""

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    async def _serve(self) -> None:
        while (request := await self.queue.get()) is not None:
            await answer(self, request)


async def answer(conn: HTTPProtocol, request: Request) -> None:
    if request.path.startswith("/_"):
        return control(conn, request)
    stats = node_stats(request.node)
    stats.requests += 1
    stats.in_flight += 1
    try:
        body = orjson.loads(request.body) if request.body else {}
    except ValueError:
        body = {}
    stats.last = {"path": request.path, "query": request.query, "headers": request.headers, "body": body}
    behaviour = dict(stats.behaviour)
    for key in BEHAVIOUR_KEYS:
        value = request.headers.get("x-mock-" + key.replace("_", "-"))
        if value is not None:
            behaviour[key] = value
    finished = False

    def early_close() -> None:
        if not finished:
            stats.closed_early += 1
            stats.close_times.append(time.time())

    conn.on_close = early_close
    try:
        await respond(conn, request, body, behaviour)
        finished = True
        if not conn.closed:
            stats.completed += 1
    finally:
        stats.in_flight -= 1
        conn.on_close = lambda: None


async def respond(conn: HTTPProtocol, request: Request, body: dict[str, Any], behaviour: dict[str, Any]) -> None:
    fault = behaviour.get("fault")
    await asyncio.sleep(float(behaviour.get("first_byte_ms", 0) or 0) / 1000.0)
    if fault == "hang":
        while not conn.closed:
            await asyncio.sleep(0.05)
        return
    if fault == "reset-before":
        conn.transport.abort()  # type: ignore[union-attr]
        return
    status = int(behaviour.get("status", 200) or 200)
    handler = mock_wires.route(request.method, request.path)
    if handler is None:
        return send(conn, 404, b'{"error":{"message":"no such path","type":"not_found_error"}}')
    if status >= 400:
        headers = [("Retry-After", str(behaviour["retry_after"]))] if behaviour.get("retry_after") else []
        error = mock_wires.error_body(request.path, status)
        if fault == "echo-key":  # some providers quote the key they were sent: "invalid key sk-..."
            error = error.replace(b"mock upstream error", b"invalid key " + mock_hostile.credential(
                request.headers, request.query).encode() + b", mock upstream error")
        return send(conn, status, error, headers)
    tokens = int(behaviour.get("tokens", mock_wires.DEFAULT_TOKENS) or mock_wires.DEFAULT_TOKENS)
    reply = handler(request.path, request.query, body, tokens, request.headers)
    if fault in mock_hostile.FAULTS:
        return await mock_hostile.respond(conn, fault, request, body, reply, behaviour)
    if reply.frames is None:
        return send(conn, reply.status, reply.body)
    conn.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
               b"transfer-encoding: chunked\r\n\r\n")
    delay = float(behaviour.get("chunk_delay_ms", 0) or 0) / 1000.0
    half = len(reply.frames) // 2
    for index, frame in enumerate(reply.frames):
        if conn.closed:
            return
        if index == half and fault in ("reset-mid", "hang-mid"):
            if fault == "reset-mid":
                conn.transport.abort()  # type: ignore[union-attr]
                return
            while not conn.closed:
                await asyncio.sleep(0.05)
            return
        if delay and index:
            await asyncio.sleep(delay)
        if not conn.writable.is_set():
            await conn.writable.wait()
        conn.write(b"%x\r\n%s\r\n" % (len(frame), frame))
    conn.write(b"0\r\n\r\n")


def send(conn: HTTPProtocol, status: int, body: bytes, headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    conn.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
               f"{extra}\r\n".encode() + body)


def control(conn: HTTPProtocol, request: Request) -> None:
    parts = request.path.strip("/").split("/")
    if parts[0] == "_reset":
        NODES.clear()
        return send(conn, 200, b"{}")
    name = parts[1] if len(parts) > 1 else "default"
    stats = node_stats(name)
    if parts[0] == "_control" and request.method == "POST":
        update = orjson.loads(request.body or b"{}")
        unknown = set(update) - set(BEHAVIOUR_KEYS)
        if unknown:
            return send(conn, 400, orjson.dumps({"error": f"unknown keys {sorted(unknown)}"}))
        stats.behaviour = {k: v for k, v in {**stats.behaviour, **update}.items() if v is not None}
        return send(conn, 200, orjson.dumps(stats.behaviour))
    if parts[0] == "_stats":
        return send(conn, 200, orjson.dumps(stats.view()))
    return send(conn, 404, b"{}")


async def serve(host: str, port: int, ready: Callable[[int], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HTTPProtocol, host, port, backlog=4096, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(f"mock upstream listening on http://{host}:{bound}", flush=True)
    if ready:
        ready(bound)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port (printed)")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
