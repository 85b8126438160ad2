"""Incremental Server-Sent Events framing.

Upstream bytes arrive split anywhere: in the middle of a line, between the
``\\r`` and ``\\n`` of a CRLF, or with many events in one chunk. The decoder
keeps the unfinished tail and hands back whole events, each with its raw bytes
so a pass-through relay can forward an event without re-encoding it.

Sans-IO: no Tornado, no sockets; bytes in, events out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    """One dispatched event. ``data`` joins multi-line data with ``\\n``."""

    event: str | None
    data: bytes
    raw: bytes



class SSEDecoder:
    """Feed it chunks; it returns every event completed by each chunk."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            # Rare (every provider we know sends LF): fold CRLF and CR to LF,
            # keeping a trailing CR back in case its LF is in the next chunk.
            held = buffer.endswith(b"\r")
            if held:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                buffer += b"\r"
        events: list[SSEEvent] = []
        start = 0
        find = buffer.find
        while True:
            end = find(b"\n\n", start)
            if end < 0:
                break
            event = _parse_block(buffer[start:end], buffer[start:end + 2])
            if event is not None:
                events.append(event)
            start = end + 2
        self._buffer = buffer[start:]
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: an unterminated final block still counts as an event."""
        tail, self._buffer = self._buffer.rstrip(b"\r\n"), b""
        if not tail.strip():
            return []
        event = _parse_block(tail, tail + b"\n\n")
        return [event] if event is not None else []

    @property
    def pending(self) -> bytes:
        """Bytes received but not yet part of a complete event."""
        return self._buffer


def _parse_block(block: bytes, raw: bytes) -> SSEEvent | None:
    """Parse one event block; comment-only blocks (``: ping``) yield no event."""
    event_name: str | None = None
    data_lines: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line[0] == 58:  # ":" comment
            continue
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            data_lines.append(value)
        elif field == b"event":
            event_name = value.decode("utf-8", "replace")
    if event_name is None and not data_lines:
        return None
    return SSEEvent(event_name, b"\n".join(data_lines), raw)


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """Frame one event. ``data`` must not contain newlines (compact JSON never does)."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
