"""``POST /v1/messages/count_tokens``: Anthropic's token counting (Claude Code calls it).

The request is an Anthropic Messages request without ``max_tokens``; the
answer is ``{"input_tokens": N}``, errors in Anthropic's shape. It is free:
nothing is reserved or charged.

The model is routed like a generation request (same catalogue, aliases, key
restrictions, breakers and balancer). Then:

* the chosen node is ``anthropic``: the request is forwarded to the node's
  own ``<base_url>/v1/messages/count_tokens`` with only the model id rewritten
  and the client's ``anthropic-version``/``anthropic-beta`` headers, and the
  node's exact answer is relayed (``x-infermesh-node`` names it). An upstream
  400/413/422 is the client's fault and is returned as sent;
* any other node (OpenAI-compatible, Gemini, mock), or an Anthropic node that
  cannot be reached or fails: a documented estimate, marked with
  ``x-infermesh-estimated: true``: :func:`estimate_input_tokens`, the
  ``gateway.upstream.mock_script.estimate_tokens`` rule (about four characters
  a token, rounded up) over the text of the system prompt, every message
  (text, tool-call names and JSON inputs, tool-result text, thinking text;
  images and documents count nothing) and every tool (name, description and
  JSON schema), joined by newlines; at least 1.
"""

from __future__ import annotations

from typing import Any

from gateway.admission import admit
from gateway.http.base import api_key_from
from gateway.http.body import JsonBodyHandler
from gateway.http.counting import ask_node, relay_count
from gateway.protocols.canonical import dumps
from gateway.protocols.names import Protocol
from gateway.upstream.mock_script import estimate_tokens
from gateway.upstream.providers import FORWARDED_HEADERS
from gateway.verdict import Verdict, settle


def _block_texts(content: Any, out: list[str]) -> None:
    if isinstance(content, str):
        out.append(content)
        return
    if not isinstance(content, list):
        return
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            out.append(block["text"])
        elif kind == "tool_use":
            out.append(str(block.get("name") or ""))
            out.append(dumps(block.get("input") or {}))
        elif kind == "tool_result":
            _block_texts(block.get("content"), out)
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            out.append(block["thinking"])


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """The estimate answered when no Anthropic node can count exactly (see the module docstring)."""
    texts: list[str] = []
    _block_texts(body.get("system"), texts)
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            _block_texts(message.get("content"), texts)
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            texts.append(str(tool.get("name") or ""))
            if isinstance(tool.get("description"), str):
                texts.append(tool["description"])
            if tool.get("input_schema") is not None:
                texts.append(dumps(tool["input_schema"]))
    return max(1, estimate_tokens("\n".join(t for t in texts if t)))


class CountTokensHandler(JsonBodyHandler):
    protocol = Protocol.MESSAGES  # errors in Anthropic's shape

    async def post(self) -> None:
        if self._finished:  # refused while the body arrived, or draining (JsonBodyHandler)
            return
        services = self.services
        admitted = await admit(services, Protocol.COUNT_TOKENS, self.body_bytes(), api_key_from(self))
        model, body = admitted.model, admitted.body
        attempt = services.router.plan(model).next()
        verdict = Verdict.cancelled()  # no word on the node unless an Anthropic node was actually asked
        try:
            target = services.endpoints[attempt.node.id].count_tokens_target() if attempt is not None else None
            if target is not None:
                verdict = await self._forward(attempt, target, body)
                if self._finished:
                    return
        finally:
            if attempt is not None:
                settle(services.router, services.metrics, attempt, verdict)
        self.set_header("x-infermesh-estimated", "true")
        self.send_json(200, {"input_tokens": estimate_input_tokens(body)})

    async def _forward(self, attempt: Any, target: Any, body: dict[str, Any]) -> Verdict:
        """Ask the Anthropic node; answer from it when it gave an answer to relay."""
        out = dict(body)
        out.pop("fallback_models", None)
        out["model"] = attempt.upstream_model
        forwarded = {name: value for name in FORWARDED_HEADERS if (value := self.request.headers.get(name))}
        headers = target.headers.with_overrides(forwarded) if forwarded else target.headers
        count = await ask_node(self.services, attempt, target.url, headers, out, "input_tokens")
        if count.answer is not None:
            relay_count(self, count, attempt.node.id)
        return count.verdict
