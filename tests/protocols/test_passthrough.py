"""Pass-through taps: raw events out unchanged, usage read, the injected usage chunk dropped."""

from __future__ import annotations

from gateway.protocols.passthrough import make_tap, usage_from_body

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
    stream = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}\n\n'
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
