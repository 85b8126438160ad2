"""The HTTP/1.1 server (gateway/http/h1.py) on raw sockets: framing, keep-alive, pipelining and its own errors.

Each test speaks bytes to a real gateway on loopback, so what is checked is
exactly what a client gets; the SDK-level behaviour is covered everywhere else.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Any, Iterator

import pytest
from tornado.web import Application, RequestHandler

from gateway import eventloop
from gateway.http.h1 import H1Server
from tests.conftest import base_config, wait_for
from tests.support.keys import TEST_KEY

CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture
def gateway(start_gateway: Any, tmp_path: Any) -> Any:
    config = base_config(tmp_path / "state", [{"id": "m", "provider": "mock", "models": ["gpt-4o-mini", "claude-sonnet-4-6",
                                                                                       "text-embedding-3-small"]}])
    config["limits"] = {"max_body_bytes": 4096}
    return start_gateway(config)


def _connect(gateway: Any) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])), timeout=10)


def _chat(extra: str = "", version: str = "1.1", body: bytes = CHAT) -> bytes:
    return (f"POST /v1/chat/completions HTTP/{version}\r\nHost: x\r\nAuthorization: Bearer {TEST_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


class Reader:
    """Reads HTTP/1.1 responses off a socket: status, headers (lower-case), de-chunked body."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            assert self._fill(), f"connection closed while waiting for {marker!r}: {self.buf[:200]!r}"
        head, _, self.buf = self.buf.partition(marker)
        return head

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            assert self._fill(), "connection closed inside a body"
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self) -> tuple[int, dict[str, str], bytes]:
        head = self._until(b"\r\n\r\n").decode("latin1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        if "content-length" in headers:
            body = self._exactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self._until(b"\r\n"), 16)
                body += self._exactly(size)
                self._exactly(2)
                if size == 0:
                    break
        else:  # ends with the connection
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        return status, headers, body

    def closed(self) -> bool:
        """True when the server closes the connection (after what was already read)."""
        self.sock.settimeout(5)
        try:
            return not self._fill()
        except ConnectionResetError:
            return True


def test_keep_alive_serves_requests_one_after_another(gateway: Any) -> None:
    with _connect(gateway) as sock:
        reader = Reader(sock)
        for _ in range(3):
            sock.sendall(_chat())
            status, headers, body = reader.response()
            assert status == 200 and json.loads(body)["object"] == "chat.completion"
            assert "connection" not in headers


def test_pipelined_requests_are_answered_in_order(gateway: Any) -> None:
    """Three requests in one packet, the middle one for an unknown path: three answers, in that order."""
    with _connect(gateway) as sock:
        sock.sendall(_chat() + b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" + _chat())
        reader = Reader(sock)
        statuses = [reader.response()[0] for _ in range(3)]
    assert statuses == [200, 404, 200]


def test_http_10_closes_unless_keep_alive_is_asked(gateway: Any) -> None:
    with _connect(gateway) as sock:
        sock.sendall(_chat(version="1.0"))
        reader = Reader(sock)
        status, headers, _ = reader.response()
        assert status == 200
        assert reader.closed()
    with _connect(gateway) as sock:
        sock.sendall(_chat("Connection: keep-alive\r\n", version="1.0"))
        reader = Reader(sock)
        status, headers, _ = reader.response()
        assert status == 200 and headers["connection"] == "Keep-Alive"
        sock.sendall(_chat("Connection: keep-alive\r\n", version="1.0"))
        assert reader.response()[0] == 200


def test_connection_close_is_honoured(gateway: Any) -> None:
    with _connect(gateway) as sock:
        sock.sendall(_chat("Connection: close\r\n"))
        reader = Reader(sock)
        status, headers, _ = reader.response()
        assert status == 200 and headers["connection"] == "close"
        assert reader.closed()


def test_chunked_request_body_and_chunked_stream_response(gateway: Any) -> None:
    body = json.dumps({"model": "gpt-4o-mini", "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    chunked = b"".join(b"%x\r\n%b\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    with _connect(gateway) as sock:
        sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_KEY}\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n").encode() + chunked)
        status, headers, received = Reader(sock).response()
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert headers["content-type"].startswith("text/event-stream")
    assert received.rstrip().endswith(b"data: [DONE]")


def test_expect_100_continue_is_answered_before_the_body(gateway: Any) -> None:
    with _connect(gateway) as sock:
        head, _, body = _chat("Expect: 100-continue\r\n").partition(b"\r\n\r\n")
        sock.sendall(head + b"\r\n\r\n")
        reader = Reader(sock)
        interim = reader._until(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue"
        sock.sendall(body)
        assert reader.response()[0] == 200


def test_malformed_request_gets_a_json_400_and_a_close(gateway: Any) -> None:
    with _connect(gateway) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n"
                     b"\r\n3\r\nabc\r\n0\r\n\r\n")
        reader = Reader(sock)
        status, headers, body = reader.response()
        assert status == 400 and headers["connection"] == "close"
        assert json.loads(body)["error"]["type"] == "invalid_request_error"
        assert reader.closed()


def test_a_head_over_64_kib_gets_431(gateway: Any) -> None:
    with _connect(gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        status, _, body = Reader(sock).response()
    assert status == 431 and "64 KiB" in json.loads(body)["error"]["message"]


def test_upgrade_without_a_body_is_served_over_http_11(gateway: Any) -> None:
    """``curl --http2`` on http:// asks for h2c; the answer is plain HTTP/1.1, and the connection goes on."""
    with _connect(gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                     b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        assert [reader.response()[0] for _ in range(2)] == [200, 200]


def test_upgrade_with_a_body_is_refused_clearly(gateway: Any) -> None:
    with _connect(gateway) as sock:
        sock.sendall(_chat("Connection: Upgrade\r\nUpgrade: h2c\r\n"))
        status, _, body = Reader(sock).response()
    assert status == 400 and "Upgrade" in json.loads(body)["error"]["message"]


def test_a_body_over_the_limit_on_a_plain_handler_gets_413(gateway: Any) -> None:
    """Handlers that do not count their body themselves (here an admin endpoint) get the server's limit."""
    with _connect(gateway) as sock:
        sock.sendall(b"POST /admin/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n" + b"x" * 10000)
        status, _, body = Reader(sock).response()
    assert status == 413 and json.loads(body)["error"]["message"]


# --------------------------------------------------------------------------- the server alone


class _Hello(RequestHandler):
    def get(self) -> None:
        self.write("hello")


class _Echo(RequestHandler):
    def get(self) -> None:
        self.write(self.request.headers.get("X-Dup", ""))


class _Big(RequestHandler):
    def get(self) -> None:
        self.write(b"x" * (8 << 20))  # far more than the kernel buffers for a client that does not read


@pytest.fixture
def bare_server() -> Iterator[tuple[int, H1Server]]:
    """An H1Server with a 0.2 s idle timeout serving a one-handler Application, on its own loop thread."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    def run() -> None:
        async def main() -> None:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)
            sock.setblocking(False)
            server = H1Server(Application([("/", _Hello), ("/big", _Big), ("/echo", _Echo)]), max_body_size=1024, idle_timeout_s=0.2)
            server.add_sockets([sock])
            state.update(port=sock.getsockname()[1], server=server, stop=asyncio.Event(),
                         loop=asyncio.get_running_loop())
            ready.set()
            await state["stop"].wait()
            server.stop()
            await server.close_all_connections(1.0)

        eventloop.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(5)
    yield state["port"], state["server"]
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(5)


def test_idle_connections_are_closed_after_the_timeout(bare_server: tuple[int, H1Server]) -> None:
    port, server = bare_server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        status, _, body = reader.response()
        assert (status, body) == (200, b"hello")
        assert reader.closed()  # no second request: the sweep closes it after ~0.2 s


def test_a_head_that_never_ends_is_closed_after_the_timeout(bare_server: tuple[int, H1Server]) -> None:
    port, server = bare_server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert Reader(sock).closed()


def test_a_client_gone_in_the_middle_of_its_body_costs_nothing(gateway: Any) -> None:
    """Half a body, then the client hangs up: no answer is owed, and the gateway serves the next one."""
    with _connect(gateway) as sock:
        sock.sendall(_chat()[:-10])
    with _connect(gateway) as sock:
        sock.sendall(_chat())
        assert Reader(sock).response()[0] == 200


def test_closing_aborts_a_connection_whose_client_stopped_reading(bare_server: tuple[int, H1Server]) -> None:
    """Draining closes connections gracefully, but one that can never drain is aborted after the grace."""
    port, server = bare_server
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        loop = server.loop

        def buffered() -> bool:
            async def size() -> int:
                conns = list(server.connections)
                return conns[0].transport.get_write_buffer_size() if conns else 0
            return asyncio.run_coroutine_threadsafe(size(), loop).result(5) > 0

        assert wait_for(buffered, 5)  # the answer is stuck in the gateway's buffer
        aborted = asyncio.run_coroutine_threadsafe(server.close_all_connections(0.2), loop).result(5)
        assert aborted == 1
        assert wait_for(lambda: asyncio.run_coroutine_threadsafe(_count(server), loop).result(5) == 0, 5)


async def _count(server: H1Server) -> int:
    return len(server.connections)


def test_headers_reach_handlers_case_blind_and_repeated_ones_joined(gateway: Any) -> None:
    """Header names in any case reach the handlers; a repeated header is joined as Tornado joins it."""
    with _connect(gateway) as sock:
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
        sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nhOsT: x\r\nAUTHORIZATION:   Bearer {TEST_KEY}  \r\n"
                      f"content-type: application/json\r\nX-Dup: a\r\nX-Dup: b\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        status, _, _ = Reader(sock).response()
    assert status == 200  # the key was found under its lower-case name, its spaces stripped


def test_repeated_headers_are_joined(bare_server: tuple[int, H1Server]) -> None:
    port, _ = bare_server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Dup: a\r\nx-dup: b\r\n\r\n")
        status, _, body = Reader(sock).response()
    assert (status, body) == (200, b"a,b")
