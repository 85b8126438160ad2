"""Usage in every protocol's own shape <-> the canonical :class:`Usage`, and the cost field.

One module for all of them because the pass-through taps, the translators and
the stream parsers must read a node's usage identically: a streamed request
costs exactly what the same request unstreamed costs, to the nano-dollar.

The canonical ``input_tokens`` is every prompt token (OpenAI's convention):
it includes cache reads (``cached_tokens``) and cache writes
(``cache_write_tokens``, of which ``cache_write_1h_tokens`` went to Anthropic's
1-hour cache). Where each provider reports them:

* Chat: ``prompt_tokens_details.cached_tokens``; writes in
  ``prompt_tokens_details.cache_write_tokens`` (OpenRouter's field).
* Responses: ``input_tokens_details.cached_tokens`` / ``cache_write_tokens``.
* Messages: ``input_tokens`` counts neither; ``cache_read_input_tokens``,
  ``cache_creation_input_tokens`` and its split ``cache_creation.ephemeral_5m_input_tokens``
  / ``ephemeral_1h_input_tokens``.
* Gemini: ``cachedContentTokenCount`` (reads; Gemini reports no writes).

Counts an upstream sends are never trusted to be sane: anything that is not
a non-negative integer counts as 0.
"""

from __future__ import annotations

from typing import Any

from gateway.protocols.canonical import Price, Usage
from gateway.protocols.names import Protocol

NANO_PER_USD = 10**9


def count(value: Any) -> int:
    """A token count from a node: a non-negative int, else 0 (a bool, a string, a negative number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        return 0
    return int(value)


def _details(usage: dict, name: str) -> dict:
    details = usage.get(name)
    return details if isinstance(details, dict) else {}


def cost_number(cost_nano: int) -> float:
    """The ``usage.cost`` field: USD as a JSON number, exact to the nano-dollar.

    ``nano / 1e9`` is the double nearest the 9-decimal amount (IEEE division
    rounds correctly), and below $10**6 that amount has at most 15 significant
    digits, so the shortest representation JSON encoders write is the amount
    itself: ``Decimal(str(cost_number(n))) * 10**9 == n``. Every client
    protocol's cost field (``usage.cost``, Gemini's ``usageMetadata.cost``)
    comes from here.
    """
    return cost_nano / NANO_PER_USD


# --- OpenAI Chat Completions (and embeddings) ----------------------------------


def usage_from_chat(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    details = _details(usage, "prompt_tokens_details")
    return Usage(count(usage.get("prompt_tokens")), count(usage.get("completion_tokens")),
                 count(details.get("cached_tokens")), count(details.get("cache_write_tokens")))


def usage_to_chat(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens,
                                  "cache_write_tokens": usage.cache_write_tokens},
    }


# --- OpenAI Responses ------------------------------------------------------------


def usage_from_responses(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    details = _details(usage, "input_tokens_details")
    return Usage(count(usage.get("input_tokens")), count(usage.get("output_tokens")),
                 count(details.get("cached_tokens")), count(details.get("cache_write_tokens")))


def usage_to_responses(usage: Usage) -> dict:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": usage.cache_write_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


# --- Anthropic Messages ----------------------------------------------------------


def usage_from_anthropic(usage: Any) -> Usage | None:
    """Input = uncached input + cache reads + cache writes; the 1-hour writes kept apart.

    ``cache_creation_input_tokens`` is the total written; an upstream that sends
    only the split (or a split larger than the total) is billed for the split.
    """
    if not isinstance(usage, dict):
        return None
    read = count(usage.get("cache_read_input_tokens"))
    split = _details(usage, "cache_creation")
    five_min = count(split.get("ephemeral_5m_input_tokens"))
    one_hour = count(split.get("ephemeral_1h_input_tokens"))
    write = max(count(usage.get("cache_creation_input_tokens")), five_min + one_hour)
    return Usage(count(usage.get("input_tokens")) + read + write, count(usage.get("output_tokens")),
                 read, write, one_hour)


def usage_to_anthropic(usage: Usage) -> dict:
    write = usage.cache_write_tokens
    return {"input_tokens": max(usage.input_tokens - usage.cached_tokens - write, 0),
            "output_tokens": usage.output_tokens,
            "cache_read_input_tokens": usage.cached_tokens, "cache_creation_input_tokens": write,
            "cache_creation": {"ephemeral_5m_input_tokens": write - usage.cache_write_1h_tokens,
                               "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens}}


# --- Gemini ----------------------------------------------------------------------


def usage_from_gemini(meta: Any) -> Usage | None:
    """Tool-use prompt tokens are input; thinking tokens (``thoughtsTokenCount``) are output."""
    if not isinstance(meta, dict):
        return None
    return Usage(count(meta.get("promptTokenCount")) + count(meta.get("toolUsePromptTokenCount")),
                 count(meta.get("candidatesTokenCount")) + count(meta.get("thoughtsTokenCount")),
                 count(meta.get("cachedContentTokenCount")))


def usage_to_gemini(usage: Usage) -> dict:
    """``usageMetadata``: the prompt count includes cached tokens, as Gemini counts them."""
    meta = {"promptTokenCount": usage.input_tokens, "candidatesTokenCount": usage.output_tokens,
            "totalTokenCount": usage.input_tokens + usage.output_tokens}
    if usage.cached_tokens:
        meta["cachedContentTokenCount"] = usage.cached_tokens
    return meta


def usage_from_body(protocol: Protocol, body: Any) -> Usage | None:
    """Usage of a whole (non-streamed) response body in its own protocol; None if it has none."""
    if not isinstance(body, dict):
        return None
    if protocol == Protocol.GEMINI:
        return usage_from_gemini(body.get("usageMetadata"))
    return _FROM.get(protocol, usage_from_chat)(body.get("usage"))


def priced(rendered: dict, usage: Usage, price: Price | None) -> dict:
    """A rendered usage object with its ``cost`` added (when a price is known): the stream renderers' final usage."""
    if price is not None:
        rendered["cost"] = cost_number(price(usage))
    return rendered


def with_cost(body: Any, cost_nano: int) -> bool:
    """Put ``usage.cost`` into a whole Chat, Responses or Messages body (``usageMetadata.cost`` into a
    Gemini one); False if it has no usage object."""
    usage = (body.get("usage") or body.get("usageMetadata")) if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return False
    usage["cost"] = cost_number(cost_nano)
    return True


_FROM = {Protocol.CHAT: usage_from_chat, Protocol.EMBEDDINGS: usage_from_chat, Protocol.RESPONSES: usage_from_responses,
         Protocol.MESSAGES: usage_from_anthropic}
