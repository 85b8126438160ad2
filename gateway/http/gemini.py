"""The Google Gemini API for clients: ``POST /v1beta/models/{id}:{action}`` (and under ``/v1``).

What the ``google-genai`` SDK (given a ``base_url``) and Gemini CLI (given
``GOOGLE_GEMINI_BASE_URL``) send. The generation and embedding actions go
through the one ``Pipeline`` like every other endpoint family (billing,
routing, failover, hedging, breakers, limits, metrics); only the URL is read
here: the model and the action (which picks the endpoint and the stream flag)
are in it, and the key may be too.

* Keys: ``base.gemini_api_key``. The query string (``?key=``) is never logged
  and never part of an upstream URL (those come from config).
* ``:streamGenerateContent?alt=sse`` is SSE; without ``alt=sse`` Google streams
  one JSON array, element by element: the pipeline still produces SSE and
  :class:`JsonArrayFramer` re-frames it on the way out.
* A silent stream's heartbeat is a blank line, which both SDKs' SSE readers
  skip (they reject SSE comments) and which is whitespace in a JSON array.
* ``:countTokens`` is free, like Anthropic's count_tokens: a Gemini node is
  asked (exact), any other node gets an estimate (``x-infermesh-estimated``).
"""

from __future__ import annotations

from typing import Any

from gateway.admission import admit
from gateway.config import normalize_model_id
from gateway.errors import ErrorKind, GatewayError
from gateway.http.base import gemini_api_key
from gateway.http.counting import ask_node, relay_count
from gateway.http.handlers import ModelHandler
from gateway.pipeline import Pipeline
from gateway.protocols.gemini_client import count_tokens_passthrough
from gateway.protocols.gemini_stream import JsonArrayFramer
from gateway.protocols.inspect import estimate_prompt_tokens
from gateway.protocols.names import Protocol
from gateway.verdict import Verdict, settle

# action -> (pipeline endpoint, streamed)
ACTIONS = {
    "generateContent": (Protocol.GEMINI, False),
    "streamGenerateContent": (Protocol.GEMINI, True),
    "embedContent": (Protocol.GEMINI_EMBED, False),
    "batchEmbedContents": (Protocol.GEMINI_EMBEDDINGS, False),
}
COUNT_TOKENS = "countTokens"


class GeminiHandler(ModelHandler):
    """``POST /v1beta/models/{model}:{action}`` (and under ``/v1``); also the pipeline's ``Channel``."""

    def initialize(self, services: Any, pipeline: Pipeline,  # type: ignore[override]
                   endpoint: Protocol = Protocol.GEMINI) -> None:
        super().initialize(services, pipeline, endpoint)
        self.protocol = Protocol.GEMINI  # errors in Google's shape, whatever the action
        self._framer: JsonArrayFramer | None = None

    def prepare(self) -> None:
        action = self.path_args[1] if len(self.path_args) > 1 else ""
        if action not in ACTIONS and action != COUNT_TOKENS:
            self.fail(GatewayError(ErrorKind.NOT_FOUND, f"no such method: {action}"))
            return
        super().prepare()

    async def post(self, model: str, action: str) -> None:  # type: ignore[override]
        if self._finished:
            return
        if action == COUNT_TOKENS:
            await self._count_tokens(model)
            return
        self.endpoint, stream = ACTIONS[action]
        if stream and self.get_query_argument("alt", None) != "sse":
            self._framer = JsonArrayFramer()
        await self.run_pipeline(gemini_api_key(self), model, stream)

    # -- Channel: JSON-array framing for streams without alt=sse --------------------

    def start_stream(self) -> None:
        super().start_stream()
        if self._framer is not None:
            self.set_header("Content-Type", "application/json")

    def relay(self, data: bytes) -> bool:
        if self._framer is not None:
            data = self._framer.feed(data)
            if not data:
                return not self.closed
        return super().relay(data)

    def end(self) -> None:
        if self._framer is not None and not self.closed and not self._finished:
            self.write(self._framer.finish())
        super().end()

    # -- countTokens ------------------------------------------------------------------

    async def _count_tokens(self, model_id: str) -> None:
        services = self.services
        admitted = await admit(services, Protocol.GEMINI_COUNT_TOKENS, self.body_bytes(), gemini_api_key(self),
                               url_model=model_id)
        model, body = admitted.model, admitted.body
        attempt = services.router.plan(model).next()
        verdict = Verdict.cancelled()  # no word on the node unless a Gemini node was actually asked
        try:
            if attempt is not None and attempt.node.provider == "gemini":
                verdict = await self._forward(attempt, normalize_model_id(model.id), body)
                if self._finished:
                    return
        finally:
            if attempt is not None:
                settle(services.router, services.metrics, attempt, verdict)
        inner = body.get("generateContentRequest")
        request: dict[str, Any] = inner if isinstance(inner, dict) else body
        self.set_header("x-infermesh-estimated", "true")
        self.send_json(200, {"totalTokens": estimate_prompt_tokens(request)})

    async def _forward(self, attempt: Any, model_key: str, body: dict[str, Any]) -> Verdict:
        """Ask the Gemini node; answer from it when it gave an answer to relay."""
        target = self.services.endpoints[attempt.node.id].gemini_count_tokens_target(model_key)
        count = await ask_node(self.services, attempt, target.url, target.headers,
                               count_tokens_passthrough(body, attempt.upstream_model), "totalTokens")
        if count.answer is not None:
            relay_count(self, count, attempt.node.id)
        return count.verdict
