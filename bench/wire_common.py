"""What every mock wire shares: the reply type, JSON and SSE framing, text helpers.

The wire modules (``wire_anthropic``, ``wire_gemini``, ``wire_responses``)
render the providers' formats from scratch, independently of the gateway's
translators in ``gateway/protocols``, so that a translator bug shows up as a
request the mock rejects or a reply the SDKs refuse, not as two copies of the
same mistake agreeing with each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import orjson


@dataclass
class Reply:
    body: bytes = b""
    frames: list[bytes] | None = None  # set for streams
    status: int = 200  # a non-200 ``body`` is an error in the wire's own shape


# (path, query, parsed JSON body, output tokens, lower-cased request headers) -> Reply
Handler = Callable[[str, str, dict[str, Any], int, Mapping[str, str]], Reply]


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def json_reply(obj: Any, status: int = 200) -> Reply:
    return Reply(dumps(obj), status=status)


def sse(payload: Any, event: str | None = None, newline: bytes = b"\n") -> bytes:
    """One SSE event; ``newline`` is b"\\r\\n" for wires that frame with CRLF (Gemini)."""
    head = b"event: " + event.encode() + newline if event else b""
    return head + b"data: " + dumps(payload) + newline + newline


def short_hash(text: str) -> str:
    value = 2166136261
    for byte in text.encode():
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return f"{value:08x}"
