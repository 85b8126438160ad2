"""Hostile upstream behaviours for ``mock_upstream.py``: answers that cannot be what they claim.

Each ``fault`` below is what real upstreams (or the load balancers in front of
them) do now and then. The gateway must never hand any of them to a client as
a success (contract §4). A non-streamed request and a streamed one each get the
mode's version of the failure:

  html          a 200 HTML error page from a load balancer (both)
  error-200     the wire's own error object behind a 200 (both)
  truncated     the body cut in half; a stream cut in the middle of an event, then ended cleanly
  no-terminal   a stream without its last event ([DONE], message_stop, response.completed);
                a body without its closing brace
  bad-event     a ``data: {not json`` event halfway; a body ``{not json``
  empty-event   a ``data:`` event with nothing in it halfway; an empty 200 body
  huge-event    one event of ``event_bytes`` bytes (default 50 MB) halfway, sent under flow control
  endless       a stream that never ends: its first content event again and again, as fast as the
                reader takes it (flow control), until the connection closes; for stalled-reader benches
  linger        a stream kept open for a second after its last event before it ends (a slow proxy or a
                node that flushes late): the client has everything before the gateway sees the end
  echo-key      the credential the node received, echoed: in the error message when ``status``
                is set, else as the ``model`` of a normal reply and in its text for ``ECHO-KEY``
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench import mock_wires

FAULTS = frozenset({"html", "error-200", "truncated", "no-terminal", "bad-event", "empty-event", "huge-event",
                    "endless", "echo-key", "linger"})
LINGER_S = 1.0
HTML_PAGE = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
             b"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
DEFAULT_EVENT_BYTES = 50 << 20
ECHO_MARK = b"ECHO-KEY"  # a prompt word the mock repeats in its reply: "echo-key" puts the key there


def credential(headers: dict[str, str], query: str) -> str:
    """The key the node was sent, however its provider sends it."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:]
    for name in ("x-api-key", "x-goog-api-key"):
        if headers.get(name):
            return headers[name]
    for pair in query.split("&"):
        if pair.startswith("key="):
            return pair[4:]
    return ""


async def respond(conn: Any, fault: str, request: Any, body: dict[str, Any], reply: Any,
                  behaviour: dict[str, Any]) -> None:
    """Answer ``request`` the hostile way ``fault`` names (``reply`` is the normal answer)."""
    if fault == "html":
        return _send(conn, 200, HTML_PAGE, "text/html")
    if fault == "error-200":
        return _send(conn, 200, mock_wires.error_body(request.path, 500))
    if fault == "echo-key":
        key = credential(request.headers, request.query).encode()
        model = str(body.get("model", "")).encode() or ECHO_MARK

        def echo(data: bytes) -> bytes:
            return data.replace(model, key).replace(ECHO_MARK, key)

        if reply.frames is None:
            return _send(conn, 200, echo(reply.body))
        return await _stream(conn, [echo(frame) for frame in reply.frames])
    if reply.frames is None:
        whole = reply.body
        cut = {"truncated": whole[:len(whole) // 2], "no-terminal": whole.rstrip()[:-1], "bad-event": b"{not json",
               "empty-event": b""}.get(fault, whole)
        return _send(conn, 200, cut)
    frames = list(reply.frames)
    half = len(frames) // 2
    if fault == "endless":
        return await _stream(conn, frames[:1], endless=b"".join(frames[1:2] * 64))
    if fault == "linger":
        return await _stream(conn, frames, linger_s=LINGER_S)
    if fault == "truncated":
        frames = frames[:half] + [frames[half][:len(frames[half]) // 2]]
    elif fault == "no-terminal":
        frames = frames[:-1]
    elif fault == "bad-event":
        frames.insert(half, b"data: {not json\n\n")
    elif fault == "empty-event":
        frames.insert(half, b"data:\n\n")
    elif fault == "huge-event":
        size = int(behaviour.get("event_bytes") or DEFAULT_EVENT_BYTES)
        return await _stream(conn, frames[:half], huge=size, after=frames[half:])
    await _stream(conn, frames)


def _send(conn: Any, status: int, body: bytes, content_type: str = "application/json") -> None:
    conn.write(f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
               + body)


async def _stream(conn: Any, frames: list[bytes], huge: int = 0, after: list[bytes] = (),  # type: ignore[assignment]
                  endless: bytes = b"", linger_s: float = 0.0) -> None:
    conn.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
               b"transfer-encoding: chunked\r\n\r\n")
    for frame in frames:
        await _chunk(conn, frame)
    while endless and not conn.closed:
        await _chunk(conn, endless)
    if huge:
        await _chunk(conn, b'data: {"type":"x","text":"')
        piece = b"x" * (64 << 10)
        for _ in range(huge // len(piece)):
            if conn.closed:
                return
            await _chunk(conn, piece)
        await _chunk(conn, b'"}\n\n')
        for frame in after:
            await _chunk(conn, frame)
    if linger_s:
        await asyncio.sleep(linger_s)
    conn.write(b"0\r\n\r\n")


async def _chunk(conn: Any, data: bytes) -> None:
    if not conn.writable.is_set():
        await conn.writable.wait()
    conn.write(b"%x\r\n%s\r\n" % (len(data), data))
    await asyncio.sleep(0)
