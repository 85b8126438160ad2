"""SSE framing: chunks split anywhere give the same events."""

from __future__ import annotations

from gateway.protocols.sse import SSEDecoder, encode_event

STREAM = (b'data: {"a":1}\n\n'
          b"event: message_start\ndata: {\"type\":\"message_start\"}\r\n\r\n"
          b": keep-alive comment\n\n"
          b"data: line one\ndata: line two\n\n"
          b"data: caf\xc3\xa9\n\n"
          b"data: no final blank line")
EXPECTED = [(None, b'{"a":1}'), ("message_start", b'{"type":"message_start"}'), (None, b"line one\nline two"),
            (None, "café".encode()), (None, b"no final blank line")]


def decode(chunks: list[bytes]) -> list[tuple[str | None, bytes]]:
    decoder = SSEDecoder()
    events = [e for chunk in chunks for e in decoder.feed(chunk)] + decoder.flush()
    return [(e.event, e.data) for e in events]


def test_whole_stream():
    assert decode([STREAM]) == EXPECTED


def test_every_two_way_split():
    for i in range(len(STREAM) + 1):
        assert decode([STREAM[:i], STREAM[i:]]) == EXPECTED, i


def test_every_three_way_split():
    for i in range(0, len(STREAM), 3):
        for j in range(i, len(STREAM) + 1, 2):
            assert decode([STREAM[:i], STREAM[i:j], STREAM[j:]]) == EXPECTED, (i, j)


def test_byte_by_byte():
    assert decode([STREAM[i:i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_raw_bytes_are_the_events_own_bytes():
    decoder = SSEDecoder()
    events = decoder.feed(b'data: {"x":1}\n\nevent: e\ndata: y\n\n')
    assert [e.raw for e in events] == [b'data: {"x":1}\n\n', b"event: e\ndata: y\n\n"]


def test_encode_round_trip():
    framed = encode_event(b'{"k":"v"}', "ping") + encode_event(b"[DONE]")
    assert decode([framed]) == [("ping", b'{"k":"v"}'), (None, b"[DONE]")]
