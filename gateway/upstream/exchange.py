"""What the pipeline sees of one upstream request, whatever carries it.

A real node's exchange runs over pycurl (``client.py``); the built-in mock
provider's runs in process (``mock.py``). Both present the same three-step
shape, because that shape is what makes failover safe: the status is known
before the body, and the first body bytes are known before anything is
committed to the client.
"""

from __future__ import annotations

from enum import Enum
from typing import Callable, Protocol

Sink = Callable[[bytes], bool]  # takes a body chunk now; False: stop handing it more (see Exchange.pump)


class Phase(Enum):
    """Where an upstream failure happened: the phase decides whether failover is still safe."""

    CONNECT = "connect"
    FIRST_BYTE = "first_byte"  # connected, no status line or no body byte yet
    MID_STREAM = "mid_stream"  # body bytes already received


class UpstreamError(Exception):
    """A transport-level failure of one exchange (HTTP error statuses are not exceptions)."""

    def __init__(self, phase: Phase, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({phase.value}){': ' + detail if detail else ''}")
        self.phase = phase
        self.reason = reason  # "connect", "timeout", "reset", "aborted", "too_large"
        self.detail = detail


class Exchange(Protocol):
    status: int
    headers: dict[str, str]  # lower-cased names

    async def started(self) -> None:
        """Resolve once the status line and headers are in; raise UpstreamError before that."""

    async def read(self) -> bytes:
        """Everything received since the last read, joined; ``b""`` at the end of the body."""

    async def pump(self, sink: Sink) -> bool:
        """Hand each body chunk to ``sink`` as it arrives, until the body ends (True) or ``sink`` returns False
        (False: chunks that arrive meanwhile wait, under flow control, for the next ``pump`` or ``read``).

        A streamed response is relayed this way: the sink writes each chunk to the client from where the
        chunk arrives, instead of waking the relay's coroutine for every chunk (a future, a task step).
        Raises UpstreamError if the transfer fails, and whatever ``sink`` raised.
        """

    async def read_all(self, limit: int) -> bytes:
        """The whole (rest of the) body, failing with ``too_large`` past ``limit`` bytes."""

    def abort(self, reason: str) -> None:
        """Stop the transfer now and free its resources (client gone, hedge lost, timeout)."""
