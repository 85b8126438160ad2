"""``Type=notify``: READY=1 once serving, RELOADING=1/READY=1 around a reload, STOPPING=1 on drain."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from gateway.observability.notify import Notifier
from tests.ops.conftest import demo_config


def _receive(sock: socket.socket, timeout: float = 10) -> dict[str, str]:
    sock.settimeout(timeout)
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        yield sock, str(path)


def test_gateway_notifies_systemd_ready_reloading_and_stopping(gateway_process, notify_socket, tmp_path):
    sock, path = notify_socket
    gateway = gateway_process(demo_config(tmp_path), env={"NOTIFY_SOCKET": path})
    ready = _receive(sock)
    assert ready["READY"] == "1" and "serving" in ready["STATUS"]
    # READY=1 promises a bound port and a loaded ledger: the gateway answers at once.
    assert gateway.request("GET", "/readyz").status == 200

    gateway.signal(signal.SIGHUP)
    reloading = _receive(sock)
    assert reloading["RELOADING"] == "1"
    assert abs(int(reloading["MONOTONIC_USEC"]) - time.monotonic_ns() // 1000) < 10_000_000
    assert _receive(sock)["READY"] == "1"

    gateway.signal(signal.SIGTERM)
    assert _receive(sock)["STOPPING"] == "1"
    assert gateway.wait() == 0
    assert gateway.wait_event("started")["systemd_notify"] is True


def test_abstract_namespace_socket():
    name = f"infermesh-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready("serving")
        assert _receive(sock, 2) == {"READY": "1", "STATUS": "serving"}
        assert notifier.stopping()
        assert _receive(sock, 2) == {"STOPPING": "1"}


def test_without_notify_socket_nothing_is_sent_and_nothing_fails(tmp_path):
    assert not Notifier.from_env({}).enabled
    assert Notifier.from_env({}).ready() is False
    assert Notifier(str(tmp_path / "nobody-listens.sock")).ready() is False  # lost, never raised
