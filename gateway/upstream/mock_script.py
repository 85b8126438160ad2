"""What a mock model says: deterministic replies, tool calls and usage.

Shared by the in-process ``mock`` provider and ``bench/mock_upstream.py`` so
that both behave alike whatever wire format carries the words. The rules:

* after a tool result, answer with text that quotes the result;
* call a tool only when asked: the last user text says ``call NAME`` for an
  offered tool (optionally followed by a JSON object of arguments, e.g.
  ``call Read {"file_path": "/tmp/x"}``; otherwise arguments are made from the
  tool's JSON schema), or the request forces a tool choice. Each ``call NAME``
  is one call, so two of them are parallel calls in one turn. Agent clients
  (Claude Code, Codex) offer dozens of tools on every request; a mock that
  called the first one would start sub-agents that start sub-agents;
* otherwise echo the last user text (the last text part of the last user
  message: what the user typed, after any context the client prepends), one
  token per word, ``tokens`` words long (padding with counted words), capped
  by ``max_tokens``.

Token counts are a fixed rule (about four characters a token) so tests can
predict the bill exactly. A prompt that contains ``[cache read=R write=W
write_1h=H]`` makes the model report R prompt tokens read from its cache and
W + H written to it (H of them to Anthropic's 1-hour cache), on top of the
prompt's own tokens, so every wire's cache fields can be tested end to end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

DEFAULT_TOKENS = 12
_CACHE = re.compile(r"\[cache read=(\d+) write=(\d+) write_1h=(\d+)\]")
ANY_TOOL = "*"  # ``forced`` value: the request requires some tool call, whichever
_CALL = re.compile(r"\bcall\s+([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*)")  # a sentence's final dot is no part of it


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass(slots=True)
class Script:
    tokens: list[str]  # text pieces; each counts as one output token
    tool_calls: list[ToolCall]  # in order; empty when the reply is text
    finish: str  # "stop", "length" or "tool_calls"
    input_tokens: int  # every prompt token, the cache reads and writes included
    cache_read: int = 0
    cache_write: int = 0  # 5-minute and 1-hour writes together
    cache_write_1h: int = 0

    @property
    def output_tokens(self) -> int:
        if self.tool_calls:
            return estimate_tokens("".join(call.name + call.arguments for call in self.tool_calls))
        return len(self.tokens)

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def estimate_tokens(text: str) -> int:
    """About four characters a token, at least one for non-empty text."""
    return (len(text) + 3) // 4


def write_script(prompt_text: str, last_user_text: str, tools: list[dict[str, Any]], tool_result: str | None,
                 max_tokens: int | None, tokens: int = DEFAULT_TOKENS, forced: str | None = None) -> Script:
    """Decide the reply. ``tools`` are ``{"name", "parameters"}`` dicts (JSON schema); ``forced`` is the
    tool the request's tool choice requires (a name, or :data:`ANY_TOOL`)."""
    input_tokens = max(1, estimate_tokens(prompt_text))
    cache = _CACHE.search(prompt_text)
    read, write_5m, write_1h = (int(n) for n in cache.groups()) if cache else (0, 0, 0)
    input_tokens += read + write_5m + write_1h
    script = _reply(prompt_text, last_user_text, tools, tool_result, max_tokens, tokens, input_tokens, forced)
    script.cache_read, script.cache_write, script.cache_write_1h = read, write_5m + write_1h, write_1h
    return script


def _reply(prompt_text: str, last_user_text: str, tools: list[dict[str, Any]], tool_result: str | None,
           max_tokens: int | None, tokens: int, input_tokens: int, forced: str | None) -> Script:
    wanted = [] if tool_result is not None else requested_tools(last_user_text, tools, forced)
    if tool_result is not None:
        words = ("The tool said: " + tool_result).split(" ")
    elif wanted:
        calls = [ToolCall("call_" + _short_hash(f"{n}:{prompt_text}"), tool["name"], arguments)
                 for n, (tool, arguments) in enumerate(wanted)]
        return Script([], calls, "tool_calls", input_tokens)
    else:
        words = (last_user_text or "Hello").split()
        words = [w for w in words if w][:tokens] or ["Hello"]
        filler = 1
        while len(words) < tokens:
            words.append(f"w{filler}")
            filler += 1
    pieces = [words[0]] + [" " + word for word in words[1:]]
    finish = "stop"
    if max_tokens is not None and len(pieces) > max_tokens:
        pieces = pieces[:max_tokens]
        finish = "length"
    return Script(pieces, [], finish, input_tokens)


def requested_tools(last_user_text: str, tools: list[dict[str, Any]],
                    forced: str | None = None) -> list[tuple[dict[str, Any], str]]:
    """The tools to call, each with its JSON arguments: one per ``call NAME`` naming an offered tool (its
    arguments the JSON object right after the name, if one is there), else the forced choice, else none."""
    by_name = {tool["name"]: tool for tool in tools}
    chosen: list[tuple[dict[str, Any], str | None]] = []
    for match in _CALL.finditer(last_user_text):
        tool = by_name.get(match.group(1))
        if tool is not None:
            chosen.append((tool, _arguments_after(last_user_text, match.end())))
    if not chosen and forced is not None and tools:
        chosen.append((by_name.get(forced) or tools[0], None))
    return [(tool, arguments or orjson.dumps(_sample_arguments(tool.get("parameters") or {})).decode())
            for tool, arguments in chosen]


def _arguments_after(text: str, start: int) -> str | None:
    rest = text[start:].lstrip()
    if not rest.startswith("{"):
        return None
    depth = 0
    for end, char in enumerate(rest):  # the balanced {...} (strings with braces are not expected here)
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            try:
                value = orjson.loads(rest[:end + 1])
            except ValueError:
                return None
            return orjson.dumps(value).decode() if isinstance(value, dict) else None
    return None


def embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit-ish vector derived from the text."""
    seed = sum(text.encode()) + len(text)
    return [round(((seed * (i + 7)) % 1000) / 1000.0 - 0.5, 6) for i in range(dim)]


def _sample_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    required = schema.get("required") or list(properties)
    samples = {"string": "Paris", "number": 1.5, "integer": 1, "boolean": True, "array": [], "object": {}}
    return {name: samples.get((properties.get(name) or {}).get("type", "string"), "Paris") for name in required}


def _short_hash(text: str) -> str:
    value = 2166136261
    for byte in text.encode()[-256:]:
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return f"{value:08x}"
