"""Per provider kind: which protocol a node speaks for each endpoint, its URLs and auth.

Everything here is computed once per node at config load. Upstream URLs are
built only from config (``base_url`` and the node's own model id), never from
anything a client sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from gateway.config import Node
from gateway.protocols.names import Protocol
from gateway.upstream.headers import HeaderBlock

ANTHROPIC_VERSION = "2023-06-01"
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")  # client headers an Anthropic node receives as sent

# client endpoint -> node protocol, per provider. "responses" on an openai node
# depends on the node's ``responses`` flag, handled in node_protocol().
_C, _R, _M, _G = Protocol.CHAT, Protocol.RESPONSES, Protocol.MESSAGES, Protocol.GEMINI
_OPENAI = {_C: _C, _R: _C, _M: _C, _G: _C, Protocol.EMBEDDINGS: Protocol.EMBEDDINGS,
           Protocol.GEMINI_EMBED: Protocol.EMBEDDINGS, Protocol.GEMINI_EMBEDDINGS: Protocol.EMBEDDINGS}
_PROTOCOLS: dict[str, dict[Protocol, Protocol]] = {
    "openai": _OPENAI,
    "mock": _OPENAI,
    "anthropic": {_C: _M, _R: _M, _M: _M, _G: _M},
    "gemini": {_C: _G, _R: _G, _M: _G, _G: _G, Protocol.EMBEDDINGS: Protocol.GEMINI_EMBEDDINGS,
               Protocol.GEMINI_EMBED: Protocol.GEMINI_EMBEDDINGS,
               Protocol.GEMINI_EMBEDDINGS: Protocol.GEMINI_EMBEDDINGS},
}


@dataclass(frozen=True)
class Target:
    url: str
    headers: HeaderBlock  # the node's, encoded once (a request forwarding a client header derives its own)


class NodeEndpoints:
    """The precomputed URLs and headers of one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        headers = {"Content-Type": "application/json", **node.headers}
        base = node.base_url
        if node.provider == "anthropic":
            headers.update({"x-api-key": node.api_key, "anthropic-version": ANTHROPIC_VERSION})
            self._paths: dict[Protocol, str] = {Protocol.MESSAGES: base + "/v1/messages",
                                                 Protocol.COUNT_TOKENS: base + "/v1/messages/count_tokens"}
        elif node.provider == "gemini":
            headers["x-goog-api-key"] = node.api_key  # in a header: a URL may end up in a log
            self._paths = {}
        else:
            if node.api_key:
                headers["Authorization"] = "Bearer " + node.api_key
            self._paths = {Protocol.CHAT: base + "/chat/completions", Protocol.RESPONSES: base + "/responses",
                           Protocol.EMBEDDINGS: base + "/embeddings"}
        self.headers = HeaderBlock(headers)
        # Gemini puts the model in the path: quote it once, from config only.
        self._gemini = {model: f"{base}/v1beta/models/{quote(own, safe='')}" for model, own in node.models.items()}

    def protocol_for(self, endpoint: Protocol) -> Protocol | None:
        """The protocol this node speaks for a client endpoint, or None if it cannot serve it."""
        if endpoint == Protocol.RESPONSES and self.node.provider == "openai" and self.node.responses:
            return Protocol.RESPONSES
        return _PROTOCOLS[self.node.provider].get(endpoint)

    def target(self, node_protocol: Protocol, model_key: str, stream: bool) -> Target:
        if node_protocol == Protocol.GEMINI:
            base = self._gemini[model_key]
            url = base + (":streamGenerateContent?alt=sse" if stream else ":generateContent")
        elif node_protocol == Protocol.GEMINI_EMBEDDINGS:
            url = self._gemini[model_key] + ":batchEmbedContents"
        else:
            url = self._paths[node_protocol]
        return Target(url, self.headers)

    def gemini_count_tokens_target(self, model_key: str) -> Target:
        """Gemini's exact ``:countTokens`` for one of this (Gemini) node's models."""
        return Target(self._gemini[model_key] + ":countTokens", self.headers)

    def count_tokens_target(self) -> Target | None:
        """Anthropic's exact ``/v1/messages/count_tokens`` for this node; None for other providers."""
        url = self._paths.get(Protocol.COUNT_TOKENS) if self.node.provider == "anthropic" else None
        return Target(url, self.headers) if url else None
