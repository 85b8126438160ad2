"""Is an upstream's event stream what it claims to be? Cheap checks, shared by every path.

An upstream answer that cannot be what it claims is that node's failure
(contract §4): an HTML error page or a JSON error object behind a ``200``, an
event whose payload is not JSON, an error event. These checks never parse an
event's JSON on pass-through: a JSON object starts with ``{`` and ends with
``}``, and that catches truncation and garbage (``data: {not json``, an empty
``data:``) without re-encoding or even decoding good events.
"""

from __future__ import annotations

from gateway.protocols.sse import SSEDecoder

_FIELD_STARTS = frozenset(b"de:ir")  # data, event, ":" comment, id, retry: how every SSE line begins
_DONE = b"[DONE]"


def well_formed(data: bytes) -> bool:
    """A payload the official SDKs can parse: a JSON object (judged by its ends) or chat's ``[DONE]``.

    Per event on the hot path, so nothing is copied unless the payload ends in whitespace.
    """
    if data.startswith(b"{"):
        return data.endswith(b"}") or data.rstrip().endswith(b"}")
    return data == _DONE


def is_error_payload(data: bytes) -> bool:
    """An error object in the payload (``{"error": ...}`` or ``{"type": "error", ...}``), judged by its head.

    A search bounded to the first bytes (no slice, no copy) rules out nearly every event at once.
    """
    if data.find(b'error"', 0, 40) < 0:
        return False
    head = data[:40].replace(b" ", b"")
    return head.startswith(b'{"error"') or head.startswith(b'{"type":"error"')


def start_problem(first: bytes) -> str | None:
    """Why the first bytes of a ``200`` stream cannot be the event stream they claim to be, or None.

    Checked before anything reaches the client, so the request can still fail
    over: a body that is not SSE at all (an HTML page, a JSON error object),
    or a first complete event that is malformed or is the node's error.
    """
    head = first.lstrip()[:1]
    if not head:
        return None
    if head[0] not in _FIELD_STARTS:
        kind = "an HTML page" if head == b"<" else "a JSON body" if head in (b"{", b"[") else "something else"
        return f"sent {kind} instead of an event stream"
    end = first.find(b"\n\n")  # only the first event is judged here: the tap judges the rest
    events = SSEDecoder().feed(first[:end + 2]) if end >= 0 else []
    if not events:
        return None
    event = events[0]
    if event.event == "error" or is_error_payload(event.data):
        return "sent an error event as its first event"
    if not well_formed(event.data):
        return "sent an event whose payload is not JSON"
    return None
