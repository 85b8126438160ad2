"""Pass-through taps: raw events out unchanged, usage read, the injected usage chunk dropped."""

from __future__ import annotations

import json
from decimal import Decimal

from gateway.protocols.canonical import Usage
from gateway.protocols.passthrough import make_tap
from gateway.protocols.sse import SSEDecoder
from gateway.protocols.usage import usage_from_body

CHAT = (b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
        b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9,'
        b'"prompt_tokens_details":{"cached_tokens":3}}}\n\n'
        b"data: [DONE]\n\n")
MESSAGES = (b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":5,'
            b'"cache_read_input_tokens":10,"output_tokens":1}}}\n\n'
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
            b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
            b'"usage":{"output_tokens":4}}\n\n'
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
RESPONSES = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n'
             b'event: response.completed\ndata: {"type":"response.completed","response":{"usage":'
             b'{"input_tokens":8,"output_tokens":3,"input_tokens_details":{"cached_tokens":2}}}}\n\n')


def relay(protocol: str, stream: bytes, include_usage: bool, split: int):
    tap = make_tap(protocol, include_usage)
    out = tap.feed(stream[:split]) + tap.feed(stream[split:]) + tap.finish()
    return out, tap.usage


def test_chat_usage_chunk_kept_when_client_asked():
    for split in range(len(CHAT)):
        out, usage = relay("chat", CHAT, True, split)
        assert out == CHAT
        assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (7, 2, 3)


def test_chat_usage_chunk_dropped_when_client_did_not_ask():
    for split in range(len(CHAT)):
        out, usage = relay("chat", CHAT, False, split)
        assert b'"usage"' not in out and out.endswith(b"data: [DONE]\n\n")
        assert usage.output_tokens == 2


def test_chat_usage_on_a_chunk_with_choices_is_never_dropped():
    stream = (b'data: {"choices":[{"index":0,"delta":{"content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}'
              b'\n\ndata: [DONE]\n\n')
    out, usage = relay("chat", stream, False, 10)
    assert out == stream and usage.output_tokens == 1


def test_messages_usage_adds_cache_reads_to_input():
    for split in range(0, len(MESSAGES), 7):
        out, usage = relay("messages", MESSAGES, False, split)
        assert out == MESSAGES
        assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (15, 4, 10)


def test_responses_usage_from_completed_event():
    out, usage = relay("responses", RESPONSES, False, 40)
    assert out == RESPONSES
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (8, 3, 2)


def test_usage_from_whole_bodies():
    assert usage_from_body("chat", {"usage": {"prompt_tokens": 4, "completion_tokens": 5}}).output_tokens == 5
    assert usage_from_body("messages", {"usage": {"input_tokens": 4, "output_tokens": 5}}).input_tokens == 4
    assert usage_from_body("chat", {"no": "usage"}) is None
    assert usage_from_body("chat", ["not", "a", "dict"]) is None


def _price(usage: Usage) -> int:
    """A made-up price with every token class distinguishable: the cost encodes the usage."""
    return (usage.input_tokens * 10**6 + usage.output_tokens * 10**4 + usage.cached_tokens * 10**2
            + usage.cache_write_tokens * 10 + usage.cache_write_1h_tokens)


MESSAGES_CACHED = MESSAGES.replace(b'"cache_read_input_tokens":10,',
                                   b'"cache_read_input_tokens":10,"cache_creation_input_tokens":7,'
                                   b'"cache_creation":{"ephemeral_5m_input_tokens":4,"ephemeral_1h_input_tokens":3},')


def test_only_the_final_usage_event_gains_the_cost_the_others_stay_raw():
    """The cost of the final usage goes into that one event; every other event is the upstream's bytes."""
    for protocol, stream, final in (("chat", CHAT, None), ("messages", MESSAGES_CACHED, "message_delta"),
                                    ("responses", RESPONSES, "response.completed")):
        for split in range(0, len(stream), 11):
            tap = make_tap(protocol, True, _price)
            out = tap.feed(stream[:split]) + tap.feed(stream[split:]) + tap.finish()
            sent, received = SSEDecoder().feed(stream), SSEDecoder().feed(out)
            assert len(sent) == len(received)
            changed = [(a, b) for a, b in zip(sent, received) if a.raw != b.raw]
            assert len(changed) == 1, protocol
            before, after = changed[0]
            assert after.event == final
            payload = json.loads(after.data)
            usage = payload["usage"] if protocol != "responses" else payload["response"]["usage"]
            assert Decimal(str(usage.pop("cost"))) * 10**9 == _price(tap.usage)
            assert payload == json.loads(before.data)


def test_messages_tap_reads_the_cache_write_split():
    out, usage = relay("messages", MESSAGES_CACHED, False, 50)
    assert out == MESSAGES_CACHED  # no price: nothing changes
    assert usage == Usage(5 + 10 + 7, 4, 10, 7, 3)


def test_a_stream_without_its_final_event_ends_with_the_error_event():
    """Cut short cleanly (no [DONE], message_stop, response.completed): never a silent, made-up success."""
    for protocol, stream, error in (("chat", CHAT, b'data: {"error":'), ("messages", MESSAGES, b"event: error\n"),
                                    ("responses", RESPONSES, b"event: error\n")):
        cut = stream[:stream.rindex(b"\n\n", 0, len(stream) - 2) + 2]
        tap = make_tap(protocol, True)
        out = tap.feed(cut) + tap.finish()
        assert out.startswith(cut) and out[len(cut):].startswith(error), protocol
        assert "final event" in tap.upstream_error


def test_a_malformed_event_ends_the_stream_before_it():
    for bad in (b"data: {not json\n\n", b"data:\n\n", b"data: <html>\n\n"):
        tap = make_tap("chat", True)
        head = CHAT[:CHAT.index(b"\n\n") + 2]
        out = tap.feed(head + bad + CHAT[len(head):])
        assert out.startswith(head) and b"not JSON" in out[len(head):] and b"[DONE]" not in out
        assert tap.feed(b"data: [DONE]\n\n") == b"" and tap.finish() == b""


def test_the_nodes_own_error_event_is_relayed_and_ends_the_stream():
    error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}\n\n'
    tap = make_tap("messages", False)
    out = tap.feed(MESSAGES[:40]) + tap.feed(MESSAGES[40:MESSAGES.index(b"event: content")] + error + MESSAGES)
    assert out.endswith(error) and tap.upstream_error and tap.finish() == b""


def test_an_event_over_the_limit_ends_the_stream_with_bounded_memory():
    tap = make_tap("chat", True, max_event_bytes=1000)
    out = tap.feed(CHAT[:60])
    for _ in range(100):  # 100 KB of one event, in pieces
        out += tap.feed(b"x" * 1000)
    assert b"over 1000 bytes" in out and len(tap._decoder.pending) == 0
    assert tap.finish() == b""
