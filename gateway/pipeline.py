"""A request, as one sentence: auth -> reserve -> route -> translate -> send -> relay -> settle -> record.

This is the only module that knows the order of the steps, and the one rule
that makes failover safe: until the first byte has been sent to the client,
any upstream failure may be retried elsewhere; after it, never. So each
attempt runs in two phases. ``_open`` gets an upstream to the point where its
status and first body bytes are known (nothing committed yet; failures fail
over, and a hedge may race it). ``_deliver_*`` then commits and relays.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import ujson

from gateway.auth import Caller, authenticate
from gateway.config import Model, normalize_model_id
from gateway.errors import ErrorKind, GatewayError, error_body, stream_error_frame
from gateway.ledger.ledger import (
    InsufficientBalance,
    KeyInfo,
    KeyLimitExceeded,
    Reservation,
)
from gateway.ledger.money import nano_to_usd
from gateway.ledger.pricing import PriceTable
from gateway.protocols import translate
from gateway.protocols.canonical import ProtocolError, Usage
from gateway.protocols.inspect import (
    DEFAULT_OUTPUT_RESERVE,
    RequestFacts,
    inspect_request,
)
from gateway.protocols.passthrough import make_tap, usage_from_body
from gateway.routing.router import Attempt, Outcome, Plan
from gateway.services import Services
from gateway.upstream.client import Overloaded
from gateway.upstream.exchange import Exchange, UpstreamError
from gateway.upstream.mock import open_mock
from gateway.upstream.providers import NodeEndpoints

MAX_ERROR_BODY = 1 << 20
MAX_RESPONSE_BODY = 64 << 20
CLIENT_FAULT_STATUSES = frozenset({400, 413, 422})  # the request itself is bad: same answer anywhere
RATE_LIMIT_STATUSES = frozenset({429})


class Channel(Protocol):
    """The client side of one request, as the HTTP layer presents it (no Tornado here)."""

    request_id: str
    closed: bool

    def set_header(self, name: str, value: str) -> None: ...
    def send(self, status: int, body: bytes) -> None: ...
    def start_stream(self) -> None: ...
    async def relay(self, data: bytes) -> bool: ...
    def end(self) -> None: ...
    def on_close(self, callback: Any) -> None: ...


class _AttemptFailed(Exception):
    def __init__(self, outcome: Outcome, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail
        self.retry_after_s = retry_after_s


class _ClientFault(Exception):
    """The upstream rejected the request as the client's fault: answer it as is, do not fail over."""

    def __init__(self, status: int, body: bytes, node_protocol: str) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.node_protocol = node_protocol


@dataclass
class _Opened:
    attempt: Attempt
    exchange: Exchange
    node_protocol: str
    first: bytes  # first body bytes (streams) or the whole body
    ttfb_s: float


@dataclass
class _Call:
    """Everything one request accumulates on its way through."""

    endpoint: str
    channel: Channel
    started: float
    key: KeyInfo | None = None
    model: Model | None = None
    facts: RequestFacts | None = None
    body: dict[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    reservation: Reservation | None = None
    prices: PriceTable | None = None  # the price table when the request began: a reload mid-stream changes nothing
    endpoints: Mapping[str, NodeEndpoints] = field(default_factory=dict)
    attempts: int = 0
    node: str | None = None
    served_model: Model | None = None
    status: int = 0
    usage: Usage | None = None
    estimated: bool = False
    cost_nano: int = 0
    ttfb_s: float | None = None
    upstream_wait_s: float = 0.0
    error: str | None = None
    live: set[Exchange] = field(default_factory=set)


class Pipeline:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def handle(self, endpoint: str, channel: Channel, raw: bytes, api_key: str | None,
                     headers: Mapping[str, str]) -> None:
        call = _Call(endpoint, channel, time.monotonic(), headers=headers)
        metrics = self.services.metrics
        metrics.inflight.inc()
        channel.on_close(lambda: [exchange.abort("client_gone") for exchange in list(call.live)])
        try:
            await self._run(call, raw, api_key)
        except GatewayError as error:
            self._fail(call, error)
        finally:
            channel.on_close(None)  # the callback holds the call: drop it, or call <-> handler is a cycle
            metrics.inflight.dec()
            self._record(call)

    async def _run(self, call: _Call, raw: bytes, api_key: str | None) -> None:
        services = self.services
        call.key = await authenticate(services.ledger, api_key, Caller.MODELS)
        try:
            body = ujson.loads(raw)
        except ValueError as exc:
            raise GatewayError(ErrorKind.INVALID_REQUEST, f"the request body is not valid JSON: {exc}") from None
        try:
            call.facts = facts = inspect_request(call.endpoint, body, len(raw))
            if call.endpoint in ("responses", "messages"):
                translate.validate_request(call.endpoint, body)
        except ProtocolError as exc:
            raise GatewayError(ErrorKind.INVALID_REQUEST, exc.message, exc.param) from None
        call.body = body
        call.model = model = self._resolve_model(facts.model, call.endpoint, "model")
        self._check_allowed(call.key, model)
        fallbacks = None
        if facts.fallback_models is not None:
            fallbacks = [self._resolve_model(m, call.endpoint, "fallback_models") for m in facts.fallback_models]
            for fallback in fallbacks:
                self._check_allowed(call.key, fallback)
        key = normalize_model_id(model.id)
        call.prices, call.endpoints = services.prices, services.endpoints
        estimate = call.prices.estimate_nano(key, facts.prompt_tokens_estimate,
                                                 facts.max_output_tokens or DEFAULT_OUTPUT_RESERVE)
        try:
            call.reservation = await services.ledger.reserve(call.key, estimate, call.channel.request_id)
        except InsufficientBalance:
            raise GatewayError(ErrorKind.INSUFFICIENT_BALANCE, "your balance is exhausted; top up to continue",
                               code="insufficient_quota") from None
        except KeyLimitExceeded:
            raise GatewayError(ErrorKind.INSUFFICIENT_BALANCE, "this key has reached its spend limit",
                               code="key_limit_reached") from None
        try:
            await self._route(call, services.router.plan(model, fallbacks))
        finally:
            if call.reservation is not None:  # not settled: nothing was delivered
                await services.ledger.release(call.reservation)
                call.reservation = None

    # -- before routing -------------------------------------------------------

    def _resolve_model(self, model_id: str, endpoint: str, param: str) -> Model:
        model = self.services.config.find_model(model_id)
        if model is None:
            raise GatewayError(ErrorKind.NOT_FOUND, f"the model '{model_id}' does not exist", param,
                               code="model_not_found")
        wants_embedding = endpoint == "embeddings"
        if (model.kind == "embedding") != wants_embedding:
            kind = "an embedding model" if model.kind == "embedding" else "not an embedding model"
            raise GatewayError(ErrorKind.INVALID_REQUEST, f"the model '{model_id}' is {kind}", param)
        return model

    @staticmethod
    def _check_allowed(key: KeyInfo, model: Model) -> None:
        if key.models is not None and normalize_model_id(model.id) not in key.models:
            raise GatewayError(ErrorKind.PERMISSION, f"this key may not use the model '{model.id}'",
                               "model", code="model_not_allowed")

    # -- routing and failover -------------------------------------------------

    async def _route(self, call: _Call, plan: Plan) -> None:
        try:
            opened = await self._race(call, plan)
        except _ClientFault as fault:
            return self._answer_client_fault(call, fault)
        if opened is None:
            return self._all_failed(call, plan)
        call.node = opened.attempt.node.id
        call.served_model = opened.attempt.model
        call.ttfb_s = opened.ttfb_s
        if call.attempts > 1:
            self.services.metrics.child(self.services.metrics.failovers, call.model.id).inc()
        outcome = Outcome.FAILURE
        try:
            if call.facts.stream and call.endpoint != "embeddings":
                outcome = await self._deliver_stream(call, opened)
            else:
                outcome = await self._deliver_whole(call, opened)
        finally:
            self.services.router.report(opened.attempt, outcome, opened.ttfb_s)
            self._count_attempt(opened.attempt, outcome)

    async def _race(self, call: _Call, plan: Plan) -> _Opened | None:
        """Open attempts in plan order until one has its first byte; hedge a slow one.

        Failed attempts are reported (and fail over) here; the winner is
        reported by the caller once delivery ends. A hedge starts the next
        candidate when the current one has not produced a first byte within
        the model's ``hedge_after_ms``; the first to answer wins and the other
        is aborted.
        """
        if not call.model.hedge_after_ms:
            return await self._in_turn(call, plan)
        hedge_s = call.model.hedge_after_ms / 1000.0
        tasks: dict[asyncio.Task[_Opened], Attempt] = {}
        hedged = False
        try:
            while True:
                if call.channel.closed:  # client gone: no new attempt (it would run, and bill, for nobody)
                    return None
                if not tasks:
                    attempt = plan.next()
                    if attempt is None:
                        return None
                    tasks[self._start(call, plan, attempt)] = attempt
                    hedged = False
                timeout = None if hedged else hedge_s
                done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    hedged = True
                    attempt = plan.next()
                    if attempt is not None:
                        self.services.metrics.child(self.services.metrics.hedges, call.model.id).inc()
                        tasks[self._start(call, plan, attempt)] = attempt
                    continue
                for task in done:
                    tasks.pop(task)
                    error = task.exception()
                    if error is None:
                        return task.result()
                    if not isinstance(error, _AttemptFailed):
                        raise error  # a client fault or overload ends the request, no failover
        finally:
            for task in tasks:  # losers of a race: cancelled, their exchanges aborted
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
            for task in tasks:  # a loser that got its first byte in the same turn as the winner
                if not task.cancelled() and task.exception() is None:
                    loser = task.result()
                    loser.exchange.abort("hedge_lost")
                    self.services.router.report(loser.attempt, Outcome.CANCELLED)
                    self._count_attempt(loser.attempt, Outcome.CANCELLED)

    async def _in_turn(self, call: _Call, plan: Plan) -> _Opened | None:
        """No hedging: one attempt at a time, awaited directly (no Task, no asyncio.wait per request)."""
        while not call.channel.closed:  # client gone: no new attempt (it would run, and bill, for nobody)
            attempt = plan.next()
            if attempt is None:
                return None
            call.attempts += 1
            try:
                return await self._open(call, plan, attempt)
            except _AttemptFailed:
                continue
        return None

    def _start(self, call: _Call, plan: Plan, attempt: Attempt) -> "asyncio.Task[_Opened]":
        call.attempts += 1
        task = asyncio.ensure_future(self._open(call, plan, attempt))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # losers' errors are handled here
        return task

    async def _open(self, call: _Call, plan: Plan, attempt: Attempt) -> _Opened:
        """Take one attempt up to its first body byte; on failure report it and raise."""
        router = self.services.router
        exchange: Exchange | None = None
        began = time.monotonic()
        try:
            exchange, node_protocol = await self._send(call, attempt)
            call.live.add(exchange)
            await exchange.started()
            status = exchange.status
            if status >= 400:
                body = await exchange.read_all(MAX_ERROR_BODY)
                if status in CLIENT_FAULT_STATUSES:
                    router.report(attempt, Outcome.CLIENT_ERROR)
                    self._count_attempt(attempt, Outcome.CLIENT_ERROR)
                    raise _ClientFault(status, body, node_protocol)
                retry_after = _retry_after(exchange.headers.get("retry-after"))
                outcome = Outcome.RATE_LIMITED if status in RATE_LIMIT_STATUSES else Outcome.FAILURE
                raise _AttemptFailed(outcome, f"HTTP {status}", retry_after)
            if call.facts.stream and call.endpoint != "embeddings":
                first = await exchange.read()
                if not first:
                    raise _AttemptFailed(Outcome.FAILURE, "empty stream")
            else:
                first = await exchange.read_all(MAX_RESPONSE_BODY)
            ttfb = time.monotonic() - began
            call.upstream_wait_s += ttfb
            return _Opened(attempt, exchange, node_protocol, first, ttfb)
        except asyncio.CancelledError:
            if exchange is not None:
                exchange.abort("hedge_lost")
            router.report(attempt, Outcome.CANCELLED)
            self._count_attempt(attempt, Outcome.CANCELLED)
            raise
        except UpstreamError as exc:
            self._attempt_failed(call, plan, attempt, _AttemptFailed(Outcome.FAILURE, _describe(exc)))
        except _AttemptFailed as exc:
            if exchange is not None:
                exchange.abort("failed")
            self._attempt_failed(call, plan, attempt, exc)
        except ProtocolError as exc:  # this pairing cannot express the request: not the node's fault
            router.report(attempt, Outcome.CANCELLED)
            plan.note(attempt, exc.message)
            raise _AttemptFailed(Outcome.CLIENT_ERROR, exc.message) from None
        except _ClientFault:
            raise  # reported above, exactly once: the catch-all below would report it again
        except BaseException:
            router.report(attempt, Outcome.CANCELLED)
            raise
        finally:
            if exchange is not None:
                call.live.discard(exchange)
        raise AssertionError("unreachable")

    def _attempt_failed(self, call: _Call, plan: Plan, attempt: Attempt, failure: _AttemptFailed) -> None:
        if call.channel.closed:
            self.services.router.report(attempt, Outcome.CANCELLED)
            self._count_attempt(attempt, Outcome.CANCELLED)
        else:
            self.services.router.report(attempt, failure.outcome, retry_after_s=failure.retry_after_s)
            self._count_attempt(attempt, failure.outcome)
        plan.note(attempt, failure.detail)
        raise failure

    async def _send(self, call: _Call, attempt: Attempt) -> tuple[Exchange, str]:
        """Build the node's request (pass-through or translated) and start it."""
        endpoints = call.endpoints[attempt.node.id]
        node_protocol = endpoints.protocol_for(call.endpoint)
        if node_protocol is None:
            raise ProtocolError(f"node cannot serve {call.endpoint}")
        model_key = normalize_model_id(attempt.model.id)
        body = self._node_body(call, node_protocol, attempt.upstream_model)
        if attempt.node.provider == "mock":
            return open_mock(attempt.node, node_protocol, body, call.channel.request_id), node_protocol
        target = endpoints.target(node_protocol, model_key, call.facts.stream)
        headers = dict(target.headers)
        if node_protocol == "messages" and call.endpoint == "messages":
            for name in ("anthropic-version", "anthropic-beta"):
                if name in call.headers:
                    headers[name] = call.headers[name]
        payload = ujson.dumps(body, ensure_ascii=False, escape_forward_slashes=False).encode()
        try:
            exchange = await self.services.client.open(target.url, headers, payload, attempt.node.timeouts)
        except Overloaded:
            raise GatewayError(ErrorKind.OVERLOADED, "the gateway is at its upstream connection limit; retry shortly",
                               retry_after_s=1) from None
        return exchange, node_protocol

    def _node_body(self, call: _Call, node_protocol: str, upstream_model: str) -> dict[str, Any]:
        body = call.body
        if node_protocol == call.endpoint:
            out = dict(body)
            out.pop("fallback_models", None)
            out["model"] = upstream_model
            if node_protocol == "chat" and call.facts.stream and not call.facts.include_usage:
                out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            return out
        if call.endpoint == "embeddings":  # node protocol "gemini_embeddings": the gemini translator
            return translate.translate_embeddings_request(node_protocol.removesuffix("_embeddings"), body,
                                                          upstream_model)
        return translate.translate_request(call.endpoint, body, node_protocol, upstream_model)

    # -- delivery -------------------------------------------------------------

    async def _deliver_whole(self, call: _Call, opened: _Opened) -> Outcome:
        services = self.services
        try:
            upstream_body = ujson.loads(opened.first)
        except ValueError:
            upstream_body = None
        public_model = opened.attempt.model.id
        if opened.node_protocol == call.endpoint:
            out = opened.first
            usage = usage_from_body(call.endpoint, upstream_body)
        elif upstream_body is None:
            raise GatewayError(ErrorKind.UPSTREAM_FAILED, f"node {opened.attempt.node.id} sent a body that is not JSON")
        else:
            if call.endpoint == "embeddings":
                client_body, usage = translate.translate_embeddings_response(
                    opened.node_protocol.removesuffix("_embeddings"), upstream_body, public_model, call.body)
            else:
                client_body, usage = translate.translate_response(opened.node_protocol, upstream_body, call.endpoint,
                                                                  public_model, call.channel.request_id)
            out = ujson.dumps(client_body, ensure_ascii=False, escape_forward_slashes=False).encode()
        if usage is None:
            usage = Usage(call.facts.prompt_tokens_estimate, max(1, len(opened.first) // 4), 0)
            call.estimated = True
        await self._settle(call, opened.attempt, usage, 200)  # charged before the response is sent
        channel = call.channel
        channel.set_header("x-infermesh-node", opened.attempt.node.id)
        channel.set_header("x-infermesh-attempts", str(call.attempts))
        channel.set_header("x-infermesh-cost-usd", nano_to_usd(call.cost_nano))
        channel.send(200, out)
        services.metrics.child(services.metrics.requests, call.endpoint, public_model, "2xx").inc()
        return Outcome.SUCCESS

    async def _deliver_stream(self, call: _Call, opened: _Opened) -> Outcome:
        """Commit to the client and relay. From here on there is no failover."""
        metrics = self.services.metrics
        channel = call.channel
        exchange = opened.exchange
        if opened.node_protocol == call.endpoint:
            tap: Any = make_tap(call.endpoint, call.facts.include_usage)
        else:
            tap = translate.StreamTranslator(opened.node_protocol, call.endpoint, opened.attempt.model.id,
                                             channel.request_id, call.facts.include_usage)
        channel.set_header("x-infermesh-node", opened.attempt.node.id)
        channel.set_header("x-infermesh-attempts", str(call.attempts))
        channel.start_stream()
        metrics.streams.inc()
        metrics.child(metrics.ttft, call.endpoint).observe(time.monotonic() - call.started)
        call.live.add(exchange)
        outcome = Outcome.SUCCESS
        status = 200
        try:
            chunk = opened.first
            while chunk:
                out = tap.feed(chunk)
                if out and not await channel.relay(out):
                    break
                waited = time.monotonic()
                chunk = await exchange.read()
                call.upstream_wait_s += time.monotonic() - waited
            else:
                tail = tap.finish()
                if tail:
                    await channel.relay(tail)
            upstream_error = getattr(tap, "upstream_error", None)
            if upstream_error:  # the node reported an error inside its stream: the translator rendered it
                outcome, status, call.error = Outcome.FAILURE, 502, upstream_error
        except UpstreamError as exc:
            if not channel.closed:  # (when it is, this was our own abort after the client left)
                outcome = Outcome.FAILURE
                status = 502
                call.error = _describe(exc)
                error = GatewayError(ErrorKind.UPSTREAM_FAILED,
                                     f"the upstream stream failed: {_describe(exc)}")
                await channel.relay(stream_error_frame(call.endpoint, error))
        finally:
            call.live.discard(exchange)
            metrics.streams.dec()
        if channel.closed:
            exchange.abort("client_gone")
            status = 499
        usage = tap.usage
        output = getattr(tap, "output_estimate", None)
        if output is None:
            output = (tap.output_chars + 3) // 4
        if usage is None:
            usage = Usage(call.facts.prompt_tokens_estimate, output, 0)
            call.estimated = True
        elif status != 200 and usage.output_tokens < output:
            # Cut off before the node's final count: Anthropic reports output_tokens=1 in message_start and
            # the real number only in its last message_delta. Bill what was generated, not that early count.
            usage = Usage(usage.input_tokens, output, usage.cached_tokens)
            call.estimated = True
        await self._settle(call, opened.attempt, usage, status, deferrable=True)  # already delivered
        channel.end()
        metrics.child(metrics.requests, call.endpoint, opened.attempt.model.id, f"{status // 100}xx").inc()
        return outcome

    # -- settle and record ----------------------------------------------------

    async def _settle(self, call: _Call, attempt: Attempt, usage: Usage, status: int, deferrable: bool = False) -> None:
        """Charge the actual cost at the prices of the model that served it, journaled now.

        ``deferrable``: the output has been delivered (a stream), so a shared ledger that is unreachable
        right now queues the charge instead of failing; a whole response is not sent unless it is charged.
        """
        services = self.services
        model_key = normalize_model_id(attempt.model.id)
        call.usage = usage
        call.status = status
        call.cost_nano = call.prices.cost_nano(model_key, usage)
        reservation, call.reservation = call.reservation, None
        await services.ledger.settle(reservation, call.cost_nano, {
            "request_id": call.channel.request_id, "model": attempt.model.id, "node": attempt.node.id,
            "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens, "estimated": call.estimated, "status": status,
            "latency_ms": round((time.monotonic() - call.started) * 1000, 1),
            "ttft_ms": None if call.ttfb_s is None else round(call.ttfb_s * 1000, 1),
            "endpoint": call.endpoint, "stream": call.facts.stream, "created_at": time.time(),
        }, deferrable=deferrable)
        metrics = services.metrics
        metrics.child(metrics.tokens, attempt.model.id, "input").inc(usage.input_tokens)
        metrics.child(metrics.tokens, attempt.model.id, "output").inc(usage.output_tokens)
        metrics.child(metrics.tokens, attempt.model.id, "cached").inc(usage.cached_tokens)
        metrics.child(metrics.cost, attempt.model.id).inc(call.cost_nano / 1e9)

    def _answer_client_fault(self, call: _Call, fault: _ClientFault) -> None:
        """An upstream 4xx that is the client's fault goes back as sent (translated if protocols differ)."""
        body = fault.body
        if fault.node_protocol != call.endpoint:
            body = ujson.dumps(translate.translate_error(fault.node_protocol, fault.status, body, call.endpoint)).encode()
        call.status = fault.status
        call.error = f"upstream HTTP {fault.status}"
        call.channel.send(fault.status, body)
        self.services.metrics.child(self.services.metrics.requests, call.endpoint, call.model.id, "4xx").inc()

    def _all_failed(self, call: _Call, plan: Plan) -> None:
        if call.channel.closed:  # the client left while we were failing over: nobody to answer
            call.status = 499
            call.error = "client closed the connection before any node answered"
            return
        if not plan.tried:
            raise GatewayError(ErrorKind.OVERLOADED, f"no healthy node serves '{call.model.id}' right now; retry shortly",
                               retry_after_s=5)
        tried = "; ".join(f"{node} ({model}): {detail}" for node, model, detail in plan.tried)
        timeouts = all("timed out" in detail for _, _, detail in plan.tried)
        kind = ErrorKind.UPSTREAM_TIMEOUT if timeouts else ErrorKind.UPSTREAM_FAILED
        raise GatewayError(kind, f"every node failed for '{call.model.id}'. Tried: {tried}")

    def _fail(self, call: _Call, error: GatewayError) -> None:
        call.status = error.kind.status
        call.error = error.message
        channel = call.channel
        if channel.closed:
            return
        if error.retry_after_s is not None:
            channel.set_header("Retry-After", str(error.retry_after_s))
        channel.send(error.kind.status, error_body(call.endpoint, error))
        model = call.model.id if call.model is not None else "-"
        self.services.metrics.child(self.services.metrics.requests, call.endpoint, model,
                                    f"{error.kind.status // 100}xx").inc()

    def _count_attempt(self, attempt: Attempt, outcome: Outcome) -> None:
        self.services.metrics.child(self.services.metrics.attempts, attempt.node.id, outcome.value).inc()

    def _record(self, call: _Call) -> None:
        metrics = self.services.metrics
        total = time.monotonic() - call.started
        metrics.child(metrics.duration, call.endpoint).observe(total)
        metrics.overhead.observe(max(0.0, total - call.upstream_wait_s))
        log = self.services.access_log
        if log is None:
            return
        usage = call.usage
        log.write({
            "request_id": call.channel.request_id, "endpoint": call.endpoint,
            "account": call.key.account_id if call.key else None, "key_id": call.key.key_id if call.key else None,
            "model": call.served_model.id if call.served_model else (call.model.id if call.model else None),
            "node": call.node, "attempts": call.attempts, "status": call.status,
            "input_tokens": usage.input_tokens if usage else None,
            "output_tokens": usage.output_tokens if usage else None,
            "cached_tokens": usage.cached_tokens if usage else None,
            "cost_usd": nano_to_usd(call.cost_nano) if usage else None,
            "latency_ms": round(total * 1000, 1),
            "ttft_ms": round(call.ttfb_s * 1000, 1) if call.ttfb_s is not None else None,
            "stream": call.facts.stream if call.facts else None, "error": call.error,
        })


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from LLM APIs; the breaker's own timing applies
    return seconds if 0 <= seconds <= 3600 else None


def _describe(exc: UpstreamError) -> str:
    reasons = {"connect": "connection failed", "timeout": "timed out", "reset": "connection reset",
               "aborted": "aborted", "too_large": "response too large"}
    text = reasons.get(exc.reason, exc.reason)
    where = {"connect": "while connecting", "first_byte": "before the first byte", "mid_stream": "mid-stream"}
    return f"{text} {where[exc.phase.value]}"
