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

import ujson

from gateway import redact
from gateway.admission import admit
from gateway.config import normalize_model_id
from gateway.errors import ErrorKind, GatewayError
from gateway.http.base import gemini_api_key
from gateway.http.handlers import ModelHandler
from gateway.pipeline import Pipeline
from gateway.protocols.gemini_client import count_tokens_passthrough
from gateway.protocols.gemini_stream import JsonArrayFramer
from gateway.protocols.inspect import estimate_prompt_tokens
from gateway.routing.router import Outcome
from gateway.upstream.client import Overloaded
from gateway.upstream.exchange import UpstreamError

# action -> (pipeline endpoint, streamed)
ACTIONS = {
    "generateContent": ("gemini", False),
    "streamGenerateContent": ("gemini", True),
    "embedContent": ("gemini_embed", False),
    "batchEmbedContents": ("gemini_embeddings", False),
}
COUNT_TOKENS = "countTokens"
MAX_ANSWER_BYTES = 1 << 20


class GeminiHandler(ModelHandler):
    """``POST /v1beta/models/{model}:{action}`` (and under ``/v1``); also the pipeline's ``Channel``."""

    def initialize(self, services: Any, pipeline: Pipeline, endpoint: str = "gemini") -> None:  # type: ignore[override]
        super().initialize(services, pipeline, endpoint)
        self.protocol = "gemini"  # errors in Google's shape, whatever the action
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
        services = self.services
        if services.inflight >= services.config.limits.max_inflight:
            raise GatewayError(ErrorKind.OVERLOADED, "the gateway is at its concurrency limit", retry_after_s=1)
        raw = self.body_bytes()
        services.inflight += 1
        try:
            await self.pipeline.handle(self.endpoint, self, raw, gemini_api_key(self), self.request.headers,
                                       url_model=model, url_stream=stream)
        finally:
            services.inflight -= 1

    # -- Channel: JSON-array framing for streams without alt=sse --------------------

    def start_stream(self) -> None:
        super().start_stream()
        if self._framer is not None:
            self.set_header("Content-Type", "application/json")

    async def relay(self, data: bytes) -> bool:
        if self._framer is not None:
            data = self._framer.feed(data)
            if not data:
                return not self.closed
        return await super().relay(data)

    def end(self) -> None:
        if self._framer is not None and not self.closed and not self._finished:
            self.write(self._framer.finish())
        super().end()

    # -- countTokens ------------------------------------------------------------------

    async def _count_tokens(self, model_id: str) -> None:
        services = self.services
        admitted = await admit(services, "gemini_count_tokens", self.body_bytes(), gemini_api_key(self),
                               url_model=model_id)
        model, body = admitted.model, admitted.body
        attempt = services.router.plan(model).next()
        outcome = Outcome.CANCELLED  # no verdict unless a Gemini node was actually asked
        try:
            if attempt is not None and attempt.node.provider == "gemini":
                outcome = await self._forward(attempt, normalize_model_id(model.id), body)
                if self._finished:
                    return
        finally:
            if attempt is not None:
                services.router.report(attempt, outcome)
        inner = body.get("generateContentRequest")
        request: dict[str, Any] = inner if isinstance(inner, dict) else body
        self.set_header("x-infermesh-estimated", "true")
        self.send_json(200, {"totalTokens": estimate_prompt_tokens(request)})

    async def _forward(self, attempt: Any, model_key: str, body: dict[str, Any]) -> Outcome:
        """Ask the Gemini node; answer from it and return SUCCESS, or return without answering."""
        target = self.services.endpoints[attempt.node.id].gemini_count_tokens_target(model_key)
        payload = ujson.dumps(count_tokens_passthrough(body, attempt.upstream_model), ensure_ascii=False,
                              escape_forward_slashes=False).encode()
        try:
            exchange = await self.services.client.open(target.url, target.headers, payload, attempt.node.timeouts)
        except Overloaded:
            return Outcome.CANCELLED
        try:
            await exchange.started()
            answer = await exchange.read_all(MAX_ANSWER_BYTES)
        except UpstreamError:
            exchange.abort("failed")
            return Outcome.FAILURE
        status = exchange.status
        if status in (400, 413, 422):
            self._answer(status, answer, attempt.node.id)
            return Outcome.CLIENT_ERROR
        if status != 200:
            return Outcome.FAILURE if status >= 500 or status == 429 else Outcome.CANCELLED
        try:
            counted = ujson.loads(answer)
        except ValueError:
            return Outcome.FAILURE
        if not isinstance(counted, dict) or not isinstance(counted.get("totalTokens", 0), int):
            return Outcome.FAILURE
        self._answer(200, answer, attempt.node.id)
        return Outcome.SUCCESS

    def _answer(self, status: int, answer: bytes, node_id: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("x-infermesh-node", node_id)
        self.finish(redact.current().bytes(answer))
