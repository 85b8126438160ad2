"""The pass-through taps' fast path (whole chunks of ordinary events relayed as they came) must decide
exactly as the decoder does: same bytes out, same event count, usage and verdict, however the stream is
split. Each case is run twice, through the real tap and through one whose fast path never applies."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocols.names import Protocol
from gateway.protocols.passthrough import ChatTap, MessagesTap, ResponsesTap, make_tap
from gateway.protocols.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder

_DELTA = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi \\"error\\" x"},"finish_reason":null}]}\n\n'
_PLAIN = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'  # fast path
_USAGE = (b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}\n\n')
_DONE = b"data: [DONE]\n\n"
_M_DELTA = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"text_delta","text":"Hi"}}\n\n')
_M_START = (b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":5,'
            b'"output_tokens":1}}}\n\n')
_M_END = (b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
          b'"usage":{"output_tokens":4}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n')
_R_DELTA = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n'
_R_DONE = (b'event: response.completed\ndata: {"type":"response.completed","response":{"usage":'
           b'{"input_tokens":8,"output_tokens":3}}}\n\n')

STREAMS = {
    Protocol.CHAT: [
        _DELTA * 3 + _USAGE + _DONE,
        _DELTA + b'data: {"error":{"message":"overloaded"}}\n\n' + _DELTA + _DONE,
        _DELTA + b'data: {"a":1\n\n' + _DELTA + _DONE,  # not JSON
        (_DELTA * 2).replace(b"\n", b"\r\n") + _DONE,  # CRLF framing
        _DELTA + b": ping\n\n" + b'data:{"choices":[]}\n\n' + b'data: {"x":\ndata: 1}\n\n' + _DONE,
        _DELTA + b'data: {"choices":[],"usage":null}\n\n' + _DONE,
        _DELTA * 2,  # no [DONE]: cut short
        _DELTA + b'data: {"x":"a\rb"}\n\n' + _DONE,  # a lone CR, folded by the decoder
        _DELTA + b"\n\n" + _DELTA + b'data: {"x":1}\n\n\n' + _DONE,  # stray blank lines
        _PLAIN * 3 + _USAGE + _DONE,  # a burst's last read: a plain head, then the usage and final events
        _PLAIN * 2 + b'data: {"error":{"message":"overloaded"}}\n\n' + _PLAIN + _DONE,
        _PLAIN + b"\n\n" + _PLAIN + b'data: {"x":1}\n\n\n' + _PLAIN + _DONE,
        _PLAIN * 2 + b'data: {"a":1\n\n' + _DONE,
    ],
    Protocol.MESSAGES: [
        _M_START + _M_DELTA * 3 + b'event: ping\ndata: {"type":"ping"}\n\n' + _M_END,
        _M_START + _M_DELTA + b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}\n\n',
        _M_START + _M_DELTA + b"event: content_block_delta\ndata: {oops\n\n" + _M_END,
        _M_START + _M_DELTA * 2,
        _M_START + b"event: content_block_delta\n\n" + b'event: ping\ndata: {"a":1}\ndata: {}\n\n' + _M_END,
        _M_START + b'event: errors\ndata: {"a":1}\n\nevent:  ping\ndata: {"a":1}\n\n' + _M_END,
    ],
    Protocol.RESPONSES: [
        _R_DELTA * 3 + _R_DONE,
        _R_DELTA + b'event: response.failed\ndata: {"type":"response.failed","response":{}}\n\n',
        _R_DELTA + b'event: error\ndata: {"type":"error","message":"x"}\n\n',
        _R_DELTA + b'data: {"type":"response.output_text.delta","delta":"x"}\n\n' + _R_DONE,
        _R_DELTA * 2,
    ],
}


class _SlowChat(ChatTap):
    def _plain(self, chunk: bytes) -> int:
        return 0


class _SlowMessages(MessagesTap):
    def _plain(self, chunk: bytes) -> int:
        return 0


class _SlowResponses(ResponsesTap):
    def _plain(self, chunk: bytes) -> int:
        return 0


def _slow(protocol: Protocol, include_usage: bool):
    if protocol == Protocol.CHAT:
        return _SlowChat(include_usage, max_event_bytes=400)
    return {Protocol.MESSAGES: _SlowMessages, Protocol.RESPONSES: _SlowResponses}[protocol](max_event_bytes=400)


def _run(tap, pieces: list[bytes]) -> tuple[bytes, int, object, str | None]:
    out = b"".join(tap.feed(piece) for piece in pieces) + tap.finish()
    return out, tap.events, tap.usage, tap.upstream_error


def _pieces(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    return [stream[a:b] for a, b in zip(points, points[1:])]


CASES = [(protocol, index) for protocol, streams in STREAMS.items() for index in range(len(streams))]


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(CASES), cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6),
       include_usage=st.booleans())
def test_fast_path_decides_as_the_decoder_does(case, cuts, include_usage):
    protocol, index = case
    pieces = _pieces(STREAMS[protocol][index], cuts)
    fast = make_tap(protocol, include_usage, max_event_bytes=400)
    assert _run(fast, pieces) == _run(_slow(protocol, include_usage), pieces)


def test_every_split_of_every_case():
    for protocol, streams in STREAMS.items():
        for stream in streams:
            for split in range(len(stream) + 1):
                pieces = [stream[:split], stream[split:]]
                assert _run(make_tap(protocol, True, max_event_bytes=400), pieces) == \
                    _run(_slow(protocol, True), pieces), (protocol, stream, split)


def test_a_chunk_of_ordinary_events_goes_out_as_the_same_object():
    for protocol, chunk in ((Protocol.CHAT, _DELTA * 3), (Protocol.MESSAGES, _M_DELTA * 2),
                            (Protocol.RESPONSES, _R_DELTA * 2)):
        tap = make_tap(protocol, True)
        assert tap.feed(chunk) is chunk
        assert tap.events == chunk.count(b"\n\n")


def test_an_ordinary_chunk_over_the_event_limit_still_ends_the_stream():
    tap = make_tap(Protocol.CHAT, True, max_event_bytes=100)
    out = tap.feed(b'data: {"x":"' + b"a" * 200 + b'"}\n\n')
    assert tap.upstream_error is not None and b"over 100 bytes" in out


class _RecordingDecoder(SSEDecoder):
    """What the tap hands its decoder (the slow path)."""

    def __init__(self, max_event_bytes: int) -> None:
        super().__init__(max_event_bytes)
        self.fed: list[bytes] = []

    def feed(self, data: bytes):
        self.fed.append(data)
        return super().feed(data)


def test_a_bursts_last_read_decodes_only_its_special_events():
    """A node that sends its events back to back hands over its last read as ordinary events followed by the
    usage and final ones: the ordinary head goes out as it came, only the tail is decoded, and the result is
    the decoder's own."""
    for protocol, ordinary, tail in ((Protocol.CHAT, _PLAIN * 5, _USAGE + _DONE),
                                     (Protocol.MESSAGES, _M_DELTA * 5, _M_END),
                                     (Protocol.RESPONSES, _R_DELTA * 5, _R_DONE)):
        tap = make_tap(protocol, True)  # the default limit: the fast path takes chunks no larger than it
        tap._decoder = decoder = _RecordingDecoder(DEFAULT_MAX_EVENT_BYTES)
        result = _run(tap, [ordinary + tail])
        assert decoder.fed == [tail], protocol
        assert result == _run(_slow(protocol, True), [ordinary + tail])
        assert result[0].startswith(ordinary) and result[1] == 5 + tail.count(b"\n\n")
