"""The built-in ``mock`` provider: an in-process node that speaks OpenAI's wire format.

It answers chat completions (plain and streamed token by token with a
configurable delay) and embeddings without sockets or keys, so the demo config
works on a fresh clone offline. Every other client protocol reaches it through
the same translators as a real OpenAI-compatible node, and its bytes go
through the same relay as a real node's, so the demo exercises the real path.

The OpenAI rendering here is also what ``bench/mock_upstream.py`` serves.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from gateway.config import Node
from gateway.protocols.embedding_format import encode_vector
from gateway.protocols.names import Protocol
from gateway.upstream.exchange import Phase, Sink, UpstreamError
from gateway.upstream.mock_script import (
    ANY_TOOL,
    DEFAULT_TOKENS,
    Script,
    embedding,
    estimate_tokens,
    write_script,
)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def _last_text(content: Any) -> str:
    """The last text part: what the user typed, after whatever context a client put before it."""
    if isinstance(content, list):
        texts = [part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        return texts[-1] if texts else ""
    return _text_of(content)


def _latest_results(messages: list[Any]) -> str | None:
    """The text of the tool results that end the conversation (parallel calls: several ``tool`` messages),
    looking past a user message of images that followed them (tool results with images, translated)."""
    end = len(messages)
    if end >= 2 and isinstance(messages[-1], dict) and messages[-1].get("role") == "user" \
            and isinstance(messages[-1].get("content"), list) and isinstance(messages[-2], dict) \
            and messages[-2].get("role") == "tool":
        end -= 1
    start = end
    while start > 0 and isinstance(messages[start - 1], dict) and messages[start - 1].get("role") == "tool":
        start -= 1
    if start == end:
        return None
    return " ".join(_text_of(m.get("content")) for m in messages[start:end])


def _forced_tool(choice: Any) -> str | None:
    if choice == "required":
        return ANY_TOOL
    if isinstance(choice, dict):
        return (choice.get("function") or {}).get("name") or ANY_TOOL
    return None


def script_from_chat(body: dict[str, Any], tokens: int) -> Script:
    """Read an OpenAI chat request the way a model would: prompt, tools, tool results."""
    messages = body.get("messages") or []
    prompt = " ".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict))
    last_user = next((_last_text(m.get("content")) for m in reversed(messages)
                      if isinstance(m, dict) and m.get("role") == "user"), "")
    tool_result = _latest_results(messages)
    tools = [{"name": t["function"]["name"], "parameters": t["function"].get("parameters")}
             for t in body.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    return write_script(prompt, last_user, tools, tool_result, max_tokens, tokens, _forced_tool(body.get("tool_choice")))


def chat_usage(script: Script) -> dict[str, Any]:
    """Cache reads as OpenAI reports them; cache writes as OpenRouter does (OpenAI itself reports none)."""
    usage: dict[str, Any] = {"prompt_tokens": script.input_tokens, "completion_tokens": script.output_tokens,
                             "total_tokens": script.input_tokens + script.output_tokens}
    if script.cache_read or script.cache_write:
        usage["prompt_tokens_details"] = {"cached_tokens": script.cache_read, "cache_write_tokens": script.cache_write}
    return usage


def chat_response(script: Script, model: str, response_id: str) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": script.text or None}
    if script.tool_calls:
        message["tool_calls"] = [{"id": call.id, "type": "function",
                                  "function": {"name": call.name, "arguments": call.arguments}}
                                 for call in script.tool_calls]
    return orjson.dumps({"id": response_id, "object": "chat.completion", "created": int(time.time()),
                         "model": model, "choices": [{"index": 0, "message": message, "finish_reason": script.finish,
                                                      "logprobs": None}],
                         "usage": chat_usage(script)})


def chat_stream(script: Script, model: str, response_id: str, include_usage: bool) -> list[bytes]:
    """The SSE frames of a streamed chat completion, one token per frame."""
    created = int(time.time())
    head = b'{"id":"' + response_id.encode() + b'","object":"chat.completion.chunk","created":' + \
        str(created).encode() + b',"model":' + orjson.dumps(model) + b',"choices":['

    def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return b"data: " + head + orjson.dumps(choice) + b"]}\n\n"

    frames = [frame({"role": "assistant", "content": ""})]
    for index, call in enumerate(script.tool_calls):
        frames.append(frame({"tool_calls": [{"index": index, "id": call.id, "type": "function",
                                             "function": {"name": call.name, "arguments": ""}}]}))
        half = len(call.arguments) // 2  # arguments arrive in fragments, as real models send them
        for part in (call.arguments[:half], call.arguments[half:]):
            frames.append(frame({"tool_calls": [{"index": index, "function": {"arguments": part}}]}))
    if not script.tool_calls:
        frames.extend(frame({"content": token}) for token in script.tokens)
    frames.append(frame({}, script.finish))
    if include_usage:
        frames.append(b"data: " + head + b"],\"usage\":" + orjson.dumps(chat_usage(script)) + b"}\n\n")
    frames.append(b"data: [DONE]\n\n")
    return frames


def embeddings_response(body: dict[str, Any], model: str, dim: int) -> bytes:
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else [str(x) for x in inputs or []]
    encoding_format = body.get("encoding_format")  # as OpenAI: the SDKs ask for base64 by default
    data = [{"object": "embedding", "index": i, "embedding": encode_vector(embedding(text, dim), encoding_format)}
            for i, text in enumerate(texts)]
    tokens = sum(max(1, estimate_tokens(text)) for text in texts)
    return orjson.dumps({"object": "list", "data": data, "model": model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


class MockExchange:
    """An in-process exchange with the same shape as a curl transfer."""

    status = 200

    def __init__(self, frames: list[bytes], delay_s: float) -> None:
        self.headers = {"content-type": "text/event-stream" if len(frames) > 1 else "application/json"}
        self._frames = frames
        self._next = 0
        self._delay_s = delay_s
        self._aborted: str | None = None

    async def started(self) -> None:
        return None

    async def read(self) -> bytes:
        if self._aborted is not None:
            raise UpstreamError(Phase.MID_STREAM, self._aborted)
        if self._next >= len(self._frames):
            return b""
        if self._delay_s and self._next > 0:
            await asyncio.sleep(self._delay_s)
            if self._aborted is not None:
                raise UpstreamError(Phase.MID_STREAM, self._aborted)
        frame = self._frames[self._next]
        self._next += 1
        return frame

    async def pump(self, sink: Sink) -> bool:
        while chunk := await self.read():
            if not sink(chunk):
                return False
        return True

    async def read_all(self, limit: int) -> bytes:
        return b"".join(self._frames)

    def abort(self, reason: str) -> None:
        self._aborted = reason


def open_mock(node: Node, node_protocol: Protocol, body: dict[str, Any], request_id: str) -> MockExchange:
    """Answer one request the way an OpenAI-compatible server would."""
    model = body.get("model", "")
    if node_protocol == Protocol.EMBEDDINGS:
        return MockExchange([embeddings_response(body, model, node.mock.embedding_dim)], 0)
    script = script_from_chat(body, DEFAULT_TOKENS)
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        frames = chat_stream(script, model, "chatcmpl-" + request_id, include_usage)
        return MockExchange(frames, node.mock.token_delay_ms / 1000.0)
    return MockExchange([chat_response(script, model, "chatcmpl-" + request_id)], 0)

