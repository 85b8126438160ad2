"""Request ids: unique within a process and across forked workers, 24 hex digits, no syscall per id."""

from __future__ import annotations

import os
import re

from gateway.http.base import new_request_id


def test_ids_are_24_hex_digits_and_unique() -> None:
    ids = [new_request_id() for _ in range(20_000)]
    assert all(re.fullmatch(r"[0-9a-f]{24}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_worker_draws_its_own_prefix() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a --workers process would hand out
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child_id) == 24 and child_id[:12] != new_request_id()[:12]


def test_an_error_answer_keeps_the_request_id_and_the_gateway_headers(start_gateway, tmp_path) -> None:
    """``clear()`` runs again before an error is written: the id the client sees is the one it started with."""
    import http.client

    from tests.conftest import base_config

    gateway = start_gateway(base_config(tmp_path / "state", [{"id": "m", "provider": "mock",
                                                              "models": ["gpt-4o-mini", "claude-sonnet-4-6",
                                                                         "text-embedding-3-small"]}]))
    conn = http.client.HTTPConnection("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]), timeout=10)
    conn.request("POST", "/v1/chat/completions", b"{not json", {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    assert response.status == 401
    assert re.fullmatch(r"[0-9a-f]{24}", response.getheader("x-request-id") or "")
    assert response.getheader("x-infermesh-node") == "gateway"
    assert response.getheader("Date", "").endswith(" GMT")
