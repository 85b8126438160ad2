"""Client-facing sockets set TCP_NODELAY (the main port and the metrics port).

Without it Nagle's algorithm holds each small SSE write until the client's
delayed ACK (~40 ms on Linux): that was the whole +39 ms added to the first
token. Timings stay in bench/; this test reads the option itself, on the
gateway's side of a real loopback connection.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Callable

from tests.conftest import MockUpstream, RunningGateway, base_config


def _server_side_nodelay(gateway: RunningGateway, http_server: Callable[[], Any], client: socket.socket) -> int:
    """TCP_NODELAY of the gateway's accepted socket whose peer is ``client``."""
    peer = client.getsockname()

    def read() -> int:
        for connection in http_server().connections:
            sock = connection.transport.get_extra_info("socket")
            if sock is not None and sock.getpeername() == peer:
                return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        raise AssertionError(f"no server-side connection from {peer}")

    return gateway.call(read)


def _keepalive_get(port: int, path: str) -> socket.socket:
    """Send one keep-alive GET and read its response; the connection stays open for inspection."""
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = client.recv(65536)
        assert data, "connection closed before a response"
        head += data
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    return client


def test_client_and_metrics_sockets_have_tcp_nodelay(upstream: MockUpstream,
                                                     start_gateway: Callable[..., RunningGateway],
                                                     tmp_path: Path) -> None:
    nodes = [{"id": "up", "provider": "openai", "base_url": upstream.base("nodelay"), "models": {"gpt-4o-mini": "m", "claude-sonnet-4-6": "c",
                                                                          "text-embedding-3-small": "e"}}]
    config = base_config(tmp_path / "state", nodes, listen={"host": "127.0.0.1", "port": 0, "metrics_port": 0})
    gateway = start_gateway(config)
    server = gateway.server
    assert server is not None and server.metrics_port is not None

    client = _keepalive_get(server.port, "/healthz")
    metrics_client = _keepalive_get(server.metrics_port, "/metrics")
    try:
        assert _server_side_nodelay(gateway, lambda: server._http, client) == 1
        assert _server_side_nodelay(gateway, lambda: server._metrics_http, metrics_client) == 1
    finally:
        client.close()
        metrics_client.close()
