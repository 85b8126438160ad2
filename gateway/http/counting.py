"""Token counting, shared by Anthropic's ``/v1/messages/count_tokens`` and Gemini's ``:countTokens``.

Counting is free: nothing is reserved or charged. The model is resolved and
routed like a generation request (catalogue, aliases, key restrictions,
breakers, balancer; ``admission.admit``); when the chosen node can count
exactly (an Anthropic node for Anthropic's endpoint, a Gemini node for
Gemini's), it is asked and its answer relayed, otherwise the handler answers
an estimate. This module holds the steps both endpoints take the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway import redact
from gateway.routing.router import Attempt, Outcome
from gateway.services import Services
from gateway.upstream.client import Overloaded
from gateway.upstream.exchange import UpstreamError
from gateway.verdict import CLIENT_FAULT_STATUSES, Reason, Verdict

MAX_ANSWER_BYTES = 1 << 20


@dataclass
class NodeCount:
    """What asking a node gave: its verdict (``verdict.settle`` it), and the answer to relay (None: estimate instead)."""

    verdict: Verdict
    status: int = 0
    answer: bytes | None = None


async def ask_node(services: Services, attempt: Attempt, url: str, headers: Any, payload: dict[str, Any],
                   count_field: str) -> NodeCount:
    """POST the count request to the node. A 200 whose ``count_field`` is an integer is relayed, and so is
    the node's own 400/413/422 (the client's fault); anything else is the node's failure or no verdict."""
    body = orjson.dumps(payload)
    try:
        exchange = await services.client.open(url, headers, body, attempt.node.timeouts)
    except Overloaded:
        return NodeCount(Verdict(Outcome.CANCELLED, Reason.OVERLOADED))
    try:
        await exchange.started()
        answer = await exchange.read_all(MAX_ANSWER_BYTES)
    except UpstreamError as exc:
        exchange.abort("failed")
        return NodeCount(Verdict.of_upstream_error(exc))
    status = exchange.status
    if status in CLIENT_FAULT_STATUSES:
        return NodeCount(Verdict.of_status(status), status, answer)
    if status != 200:
        if status >= 500 or status == 429:
            return NodeCount(Verdict.of_status(status))
        return NodeCount(Verdict(Outcome.CANCELLED, Reason.HTTP_STATUS, f"HTTP {status}"))  # 401/403/404: no word
    try:
        counted = orjson.loads(answer)
    except ValueError:
        counted = None
    if not isinstance(counted, dict) or not isinstance(counted.get(count_field), int):
        return NodeCount(Verdict.failure(Reason.BAD_RESPONSE, f"the count is not {{\"{count_field}\": N}}"))
    return NodeCount(Verdict.success(), 200, answer)


def relay_count(handler: Any, count: NodeCount, node_id: str) -> None:
    """Answer the client with the node's own body (secrets redacted), naming the node."""
    handler.set_status(count.status)
    handler.set_header("Content-Type", "application/json")
    handler.set_header("x-infermesh-node", node_id)
    handler.finish(redact.current().bytes(count.answer or b""))
