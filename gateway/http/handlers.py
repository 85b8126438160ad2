"""Thin handlers: read the body, hand it to the pipeline or a service, nothing else."""

from __future__ import annotations

import socket
from asyncio import Future
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from gateway import redact
from gateway.auth import Caller, authenticate
from gateway.config import PRICE_FIELDS, Price
from gateway.errors import ErrorKind, GatewayError
from gateway.http.base import BaseHandler, api_key_from, gemini_api_key, wants_google_shape
from gateway.http.body import JsonBodyHandler
from gateway.pipeline import Pipeline
from gateway.protocols.names import Protocol


class ModelHandler(JsonBodyHandler):
    """POST endpoints that reach a model; also the ``Channel`` the pipeline talks to."""

    def initialize(self, services: Any, pipeline: Pipeline, endpoint: Protocol) -> None:  # type: ignore[override]
        super().initialize(services)
        self.pipeline = pipeline
        self.endpoint = endpoint
        self.protocol = Protocol.MESSAGES if endpoint in (Protocol.MESSAGES, Protocol.COUNT_TOKENS) else Protocol.CHAT
        self.closed = False
        self._on_close: Callable[[], Any] | None = None
        self._heartbeat: object | None = None
        self._wrote = False
        self._unsent: Future[None] | None = None  # what relay wrote and the kernel has not taken yet

    async def post(self) -> None:
        if self._finished:
            return
        await self.run_pipeline(api_key_from(self))

    async def run_pipeline(self, api_key: str | None, url_model: str | None = None, url_stream: bool = False) -> None:
        """Hand the body to the pipeline, counted in flight (over ``limits.max_inflight``: 503)."""
        metrics = self.services.metrics
        if metrics.inflight_now() >= self.services.config.limits.max_inflight:
            raise GatewayError(ErrorKind.OVERLOADED, "the gateway is at its concurrency limit", retry_after_s=1)
        metrics.request_started()
        try:
            await self.pipeline.handle(self.endpoint, self, self.body_bytes(), api_key, self.request.headers,
                                       url_model, url_stream)
        finally:
            metrics.request_ended()

    # -- Channel ---------------------------------------------------------------

    def on_close(self, callback: Callable[[], Any] | None) -> None:
        self._on_close = callback

    def on_connection_close(self) -> None:
        super().on_connection_close()  # a body still arriving ends with StreamClosedError: the handler ends
        self.closed = True
        if self._on_close is not None:
            self._on_close()

    def send(self, status: int, body: bytes) -> None:
        if self.closed:
            return
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(redact.current().bytes(body))

    def start_stream(self) -> None:
        self.set_status(200)
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # nginx in front must not buffer the stream
        _cap_send_buffer(self.request.connection)
        interval = self.services.config.limits.stream_heartbeat_s
        if interval > 0:
            self._heartbeat = IOLoop.current().call_later(interval, self._beat, interval)

    def _beat(self, interval: float) -> None:
        """Keep a silent stream alive (proxies and clients time out idle connections).

        One timer per stream checks a flag that ``relay`` sets, so relaying a
        chunk costs no clock read or timer churn.
        """
        if self.closed or self._finished:
            return
        if not self._wrote:
            self.write(_PINGS.get(self.protocol, _PING_COMMENT))
            self.flush().add_done_callback(lambda f: f.exception())
        self._wrote = False
        self._heartbeat = IOLoop.current().call_later(interval, self._beat, interval)

    def relay(self, data: bytes) -> bool:
        """Write now, without waiting: the relay calls this from inside libcurl's write callback.

        Once the head is out, a chunk goes straight to the connection, as ``flush`` would send it (the app
        has no output transforms), not through the handler's write buffer. The connection's future is done
        already when the kernel took every byte; otherwise it is kept for ``drained``, and the relay stops
        taking chunks from the upstream until it resolves: backpressure reaches the upstream through us.
        """
        if self.closed:
            return False
        self._wrote = True
        data = redact.current().bytes(data)  # whole events: a secret is never split between two writes
        if self._headers_written and not self._transforms:
            sent = self.request.connection.write(data)  # type: ignore[union-attr]
        else:
            self.write(data)
            sent = self.flush()
        if sent.done() and sent.exception() is None:
            return True
        self._unsent = sent
        return False

    async def drained(self) -> bool:
        sent, self._unsent = self._unsent, None
        if sent is not None:
            try:
                await sent
            except StreamClosedError:
                self.on_connection_close()
                return False
        return not self.closed

    def end(self) -> None:
        if self._heartbeat is not None:
            IOLoop.current().remove_timeout(self._heartbeat)
            self._heartbeat = None
        if not self.closed and not self._finished:
            try:
                self.finish()
            except StreamClosedError:
                self.on_connection_close()


def _cap_send_buffer(connection: Any) -> None:
    """A stream's socket buffers at most ``STREAM_SNDBUF`` in the kernel, so a client that stops reading
    stops the relay (and, through the high-water mark, the upstream) within a few events, instead of
    after the several MB Linux's send-buffer autotuning would otherwise take in per connection."""
    sock = getattr(connection, "socket", None)  # gateway/http/h1.py's Exchange
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
        except OSError:
            pass  # not a TCP socket (a test double): nothing to cap


STREAM_SNDBUF = 16 * 1024  # the kernel doubles it; still far above a token stream's rate times a WAN round trip
_PING_MESSAGES = b'event: ping\ndata: {"type": "ping"}\n\n'  # what Anthropic itself sends
_PING_COMMENT = b": ping\n\n"  # an SSE comment: OpenAI clients skip it
# Google's SDKs reject SSE comments but skip blank lines (also JSON whitespace in an array stream).
_PINGS = {Protocol.MESSAGES: _PING_MESSAGES, Protocol.GEMINI: b"\r\n"}


class ModelsHandler(BaseHandler):
    """``GET /v1/models[/{id}]``: the catalogue, each entry with its prices.

    One body serves OpenAI and Anthropic clients alike: OpenAI's list (``object``, ``created``, ``owned_by``)
    with the fields Anthropic's Models API adds (``type``, ``display_name``, ``created_at``, and ``has_more``,
    ``first_id``, ``last_id`` on the page), since each SDK ignores the other's fields. The Anthropic SDK's
    ``models.list()`` and Claude Code's gateway model discovery read it. A Gemini client (key in
    ``x-goog-api-key`` or ``?key=``: the google-genai SDK lists ``/v1/models`` by default) gets Google's
    ``Model`` resources instead.
    """

    async def get(self, model_id: str | None = None) -> None:
        if wants_google_shape(self):
            self.protocol = Protocol.GEMINI
        google = self.protocol == Protocol.GEMINI
        await authenticate(self.services.ledger, gemini_api_key(self) if google else api_key_from(self),
                           Caller.MODELS)
        config = self.services.config
        entry = _google_model if google else _model_entry
        if model_id is None:
            models = [entry(m) for m in config.models.values()]
            if google:
                self.send_json(200, {"models": models})
                return
            self.send_json(200, {"object": "list", "data": models, "has_more": False,
                                 "first_id": models[0]["id"] if models else None,
                                 "last_id": models[-1]["id"] if models else None})
            return
        model = config.find_model(model_id.removeprefix("models/") if google else model_id)
        if model is None:
            raise GatewayError(ErrorKind.NOT_FOUND, f"the model '{model_id}' does not exist", "model",
                               code="model_not_found")
        self.send_json(200, entry(model))


class GeminiModelsHandler(ModelsHandler):
    """``GET /v1beta/models[/{id}]``: the catalogue as Google's ``Model`` resources."""

    protocol = Protocol.GEMINI


class PricingHandler(BaseHandler):
    """``GET /pricing``: the public price list, no key needed."""

    def get(self) -> None:
        rows = []
        for model in self.services.config.models.values():
            row = {"id": model.id, "kind": model.kind, **price_fields(model.price)}
            if model.kind == "embedding":
                del row["output"]
            rows.append(row)
        self.send_json(200, {"currency": "USD", "unit": "1M tokens", "models": rows})


class HealthHandler(BaseHandler):
    def get(self) -> None:
        self.send_json(200, {"status": "ok"})


class ReadyHandler(BaseHandler):
    """503 while draining or before the ledger is loaded, so a load balancer stops sending."""

    def get(self) -> None:
        services = self.services
        if services.draining or not services.ready:
            self.set_header("Retry-After", "5")
            self.send_json(503, {"status": "draining" if services.draining else "starting"})
            return
        if not services.ledger.available:  # the shared ledger (Redis) is unreachable: billed requests get 503
            self.set_header("Retry-After", "2")
            self.send_json(503, {"status": "ledger_unavailable", "ledger": services.ledger.kind})
            return
        self.send_json(200, {"status": "ready"})


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.services.metrics.registry))


def _model_entry(model: Any) -> dict[str, Any]:
    """OpenAI's ``Model`` and Anthropic's ``ModelInfo`` in one object (the catalogue has no release dates: 0)."""
    price = price_fields(model.price)
    return {"id": model.id, "object": "model", "created": 0, "owned_by": "infermesh",
            "type": "model", "display_name": model.id, "created_at": "1970-01-01T00:00:00Z", "kind": model.kind,
            "aliases": list(model.aliases), "pricing": {"currency": "USD", "unit": "1M tokens", **price}}



def price_fields(price: Price) -> dict[str, str]:
    """USD per 1M tokens as decimal strings; the optional prices only when configured."""
    fields = {}
    for name in PRICE_FIELDS:
        value = getattr(price, name)
        if value is not None:
            fields[name] = str(value)
    return fields


def _google_model(model: Any) -> dict[str, Any]:
    """A catalogue entry as a Gemini ``Model``; the methods tell chat models from embedding models."""
    methods = (["embedContent", "batchEmbedContents"] if model.kind == "embedding"
               else ["generateContent", "streamGenerateContent", "countTokens"])
    return {"name": "models/" + model.id, "baseModelId": model.id, "version": "infermesh",
            "displayName": model.id, "description": f"{model.id}, served by Infer Mesh",
            "supportedGenerationMethods": methods}
