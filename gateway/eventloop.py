"""The event loop under the gateway: uvloop (libuv), with Tornado's IOLoop on top as on any asyncio loop.

Why: with the client side on an asyncio protocol (``http/h1.py``), the loop's
own work (polling, ready callbacks, the transports' reads and writes) is a
large share of a request. uvloop does it in C: callgrind counts 12 % fewer
instructions per relayed request than with the standard loop (bench/README.md).
Nothing else changes: curl's sockets are watched through ``add_reader``/
``add_writer`` and its timer through ``call_later``, as before.

Everything that serves requests runs through :func:`run`: ``gateway.py`` (one
process or each ``--workers`` process) and the tests' in-thread gateways, so the
tests exercise the loop production uses.
"""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a fresh uvloop loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
