"""What the relay holds while a stream flows: a ``StreamTap``.

Two kinds implement it: the pass-through taps (``passthrough.py``: client and
node speak one protocol, raw events relayed, usage read on the side) and
``translate.StreamTranslator`` (every event re-rendered in the client's
protocol). The relay feeds either the node's bytes and writes what comes out,
without knowing which it holds.
"""

from __future__ import annotations

from typing import Protocol

from gateway.protocols.canonical import Usage


class StreamTap(Protocol):
    def feed(self, chunk: bytes) -> bytes:
        """Node bytes (split anywhere) -> the bytes to write to the client now (maybe empty)."""

    def finish(self) -> bytes:
        """The node's stream ended: what is left to write (the protocol's error event if it was cut short)."""

    @property
    def upstream_error(self) -> str | None:
        """Why the stream failed (the node's own error event, or a broken stream), once it has."""

    @property
    def complete(self) -> bool:
        """The node's final event went by (``[DONE]``, ``message_stop``, ...): the stream is whole."""

    @property
    def usage(self) -> Usage | None:
        """Usage as the node reported it so far; None until it reports any."""

    @property
    def output_tokens_estimate(self) -> int:
        """Output tokens generated so far, estimated: billed when the node's count is missing or early."""
