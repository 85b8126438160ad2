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
