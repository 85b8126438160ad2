"""Per provider kind: which protocol a node speaks for each endpoint, its URLs and auth.

Everything here is computed once per node at config load. Upstream URLs are
built only from config (``base_url`` and the node's own model id), never from
anything a client sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from gateway.config import Node
from gateway.upstream.headers import HeaderBlock

ANTHROPIC_VERSION = "2023-06-01"
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")  # client headers an Anthropic node receives as sent

# client endpoint -> node protocol, per provider. "responses" on an openai node
# depends on the node's ``responses`` flag, handled in node_protocol().
_OPENAI = {"chat": "chat", "responses": "chat", "messages": "chat", "gemini": "chat", "embeddings": "embeddings",
           "gemini_embed": "embeddings", "gemini_embeddings": "embeddings"}
_PROTOCOLS = {
    "openai": _OPENAI,
    "mock": _OPENAI,
    "anthropic": {"chat": "messages", "responses": "messages", "messages": "messages", "gemini": "messages"},
    "gemini": {"chat": "gemini", "responses": "gemini", "messages": "gemini", "gemini": "gemini",
               "embeddings": "gemini_embeddings", "gemini_embed": "gemini_embeddings",
               "gemini_embeddings": "gemini_embeddings"},
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
            self._paths = {"messages": base + "/v1/messages", "count_tokens": base + "/v1/messages/count_tokens"}
        elif node.provider == "gemini":
            headers["x-goog-api-key"] = node.api_key  # in a header: a URL may end up in a log
            self._paths = {}
        else:
            if node.api_key:
                headers["Authorization"] = "Bearer " + node.api_key
            self._paths = {"chat": base + "/chat/completions", "responses": base + "/responses",
                           "embeddings": base + "/embeddings"}
        self.headers = HeaderBlock(headers)
        # Gemini puts the model in the path: quote it once, from config only.
        self._gemini = {model: f"{base}/v1beta/models/{quote(own, safe='')}" for model, own in node.models.items()}

    def protocol_for(self, endpoint: str) -> str | None:
        """The protocol this node speaks for a client endpoint, or None if it cannot serve it."""
        if endpoint == "responses" and self.node.provider == "openai" and self.node.responses:
            return "responses"
        return _PROTOCOLS[self.node.provider].get(endpoint)

    def target(self, node_protocol: str, model_key: str, stream: bool) -> Target:
        if node_protocol == "gemini":
            base = self._gemini[model_key]
            url = base + (":streamGenerateContent?alt=sse" if stream else ":generateContent")
        elif node_protocol == "gemini_embeddings":
            url = self._gemini[model_key] + ":batchEmbedContents"
        else:
            url = self._paths[node_protocol]
        return Target(url, self.headers)

    def gemini_count_tokens_target(self, model_key: str) -> Target:
        """Gemini's exact ``:countTokens`` for one of this (Gemini) node's models."""
        return Target(self._gemini[model_key] + ":countTokens", self.headers)

    def count_tokens_target(self) -> Target | None:
        """Anthropic's exact ``/v1/messages/count_tokens`` for this node; None for other providers."""
        url = self._paths.get("count_tokens") if self.node.provider == "anthropic" else None
        return Target(url, self.headers) if url else None
