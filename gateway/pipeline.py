"""A request, as one sentence: auth -> reserve -> route -> translate -> send -> relay -> settle -> record.

This is the only module that knows the order of the steps. The one rule that
makes failover safe — until the first byte has been sent to the client, any
upstream failure may be retried elsewhere; after it, never — is kept by
handing the two phases to two modules: ``attempts.Opener`` gets an upstream
to the point where its status and first body bytes are known (failures fail
over, a hedge may race it), then ``relay`` commits and relays.
"""

from __future__ import annotations

import time
from typing import Mapping

import orjson

from gateway.admission import admit, reserve
from gateway.attempts import ClientFault, Opener
from gateway.call import Call, Channel
from gateway.config import Model, normalize_model_id
from gateway.errors import ErrorKind, GatewayError, ledger_error
from gateway.ledger.errors import LedgerError
from gateway.ledger.money import nano_to_usd
from gateway.protocols import translate
from gateway.protocols.canonical import ProtocolError, Usage
from gateway.protocols.names import Protocol
from gateway.relay import mark_dropped_tools, relay_stream, whole_body
from gateway.routing.router import Attempt, Outcome, Plan
from gateway.services import Services
from gateway.verdict import Reason, Verdict, settle

TRANSLATABLE = frozenset({Protocol.CHAT, Protocol.RESPONSES, Protocol.MESSAGES, Protocol.GEMINI})


class Pipeline:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.opener = Opener(services)
        # (client protocol, model ids) -> the protocols of the nodes serving them, for the node table it was
        # computed from: a reload brings a new table and a fresh cache.
        self._protocols: dict[tuple[str, ...], frozenset[Protocol]] = {}
        self._protocols_of: object = None

    async def handle(self, endpoint: Protocol, channel: Channel, raw: bytes, api_key: str | None,
                     headers: Mapping[str, str], url_model: str | None = None, url_stream: bool = False) -> None:
        """One request. Gemini endpoints name the model and the stream flag in the URL: ``url_model``, ``url_stream``."""
        call = Call(endpoint, channel, time.monotonic(), headers=headers)
        channel.on_close(lambda: _abort_live(call))
        try:
            await self._run(call, raw, api_key, url_model, url_stream)
        except GatewayError as error:
            self._fail(call, error)
        except LedgerError as exc:
            self._fail(call, ledger_error(exc))
        finally:
            channel.on_close(None)  # the callback holds the call: drop it, or call <-> handler is a cycle
            self._record(call)

    async def _run(self, call: Call, raw: bytes, api_key: str | None, url_model: str | None,
                   url_stream: bool) -> None:
        services = self.services
        admitted = await admit(services, call.endpoint, raw, api_key, url_model=url_model, url_stream=url_stream,
                               on_authenticated=call.authenticated)
        call.facts, call.body, call.model = admitted.facts, admitted.body, admitted.model
        model, fallbacks = admitted.model, admitted.fallbacks
        call.prices, call.endpoints = services.prices, services.endpoints
        if call.endpoint in TRANSLATABLE:
            self._prepare(call, [model, *(fallbacks if fallbacks is not None else self._configured(model))])
        call.reservation = await reserve(services, admitted, call.channel.request_id)
        try:
            await self._route(call, services.router.plan(model, fallbacks))
        finally:
            if call.reservation is not None:  # not settled: nothing was delivered
                await services.ledger.release(call.reservation)
                call.reservation = None

    # -- before routing -------------------------------------------------------

    def _configured(self, model: Model) -> list[Model]:
        found = (self.services.config.find_model(m) for m in model.fallbacks)
        return [m for m in found if m is not None]

    def _prepare(self, call: Call, models: list[Model]) -> None:
        """Translate once, before any node is tried, for the protocols of the nodes that may serve it.

        What no candidate node can take is the client's 400, naming the field,
        never a node failure (contract §3). Pass-through-only routes cost nothing.
        """
        protocols = self._node_protocols(call, models)
        if protocols and (len(protocols) > 1 or call.endpoint not in protocols):
            try:
                call.prepared = translate.prepare(call.endpoint, call.body, set(protocols), call.request_facts.stream)
            except ProtocolError as exc:
                raise GatewayError(ErrorKind.INVALID_REQUEST, exc.message, exc.param) from None

    def _node_protocols(self, call: Call, models: list[Model]) -> frozenset[Protocol]:
        if self._protocols_of is not call.endpoints or len(self._protocols) > 4096:  # request fallbacks vary
            self._protocols, self._protocols_of = {}, call.endpoints
        cache_key = (call.endpoint, *(m.id for m in models))
        found = self._protocols.get(cache_key)
        if found is None:
            keys = {normalize_model_id(m.id) for m in models}
            found = frozenset(protocol for endpoints in call.endpoints.values()
                              if not keys.isdisjoint(endpoints.node.models)
                              and (protocol := endpoints.protocol_for(call.endpoint)) is not None)
            self._protocols[cache_key] = found
        return found

    # -- routing and failover -------------------------------------------------

    async def _route(self, call: Call, plan: Plan) -> None:
        services = self.services
        try:
            opened = await self.opener.race(call, plan)
        except ClientFault as fault:
            return self._answer_client_fault(call, fault)
        if opened is None:
            return self._all_failed(call, plan)
        call.node = opened.attempt.node.id
        call.served_model = opened.attempt.model
        call.ttfb_s = opened.ttfb_s
        metrics = services.metrics
        if call.attempts > 1:
            metrics.child(metrics.failovers, call.request_model.id).inc()
        outcome = Outcome.FAILURE
        try:
            if call.streaming:
                outcome, status, usage = await relay_stream(call, opened, metrics,
                                                            services.config.limits.max_event_bytes)
                await self._settle(call, opened.attempt, usage, status, deferrable=True)  # already delivered
                call.channel.end()
            else:
                body, usage = whole_body(call, opened)
                await self._settle(call, opened.attempt, usage, 200)  # charged before the response is sent
                channel = call.channel
                mark_dropped_tools(call, opened)
                channel.set_header("x-infermesh-node", opened.attempt.node.id)
                channel.set_header("x-infermesh-attempts", str(call.attempts))
                channel.set_header("x-infermesh-cost-usd", nano_to_usd(call.cost_nano))
                channel.send(200, body)
                outcome, status = Outcome.SUCCESS, 200
            metrics.child(metrics.requests, call.endpoint, opened.attempt.model.id, f"{status // 100}xx").inc()
        finally:
            # The winner's verdict: delivered, or failed after its first byte (call.error says how).
            reason = Reason.OK if outcome is Outcome.SUCCESS else Reason.BAD_RESPONSE
            settle(services.router, metrics, opened.attempt, Verdict(outcome, reason, ttfb_s=opened.ttfb_s))

    # -- settle and record ----------------------------------------------------

    async def _settle(self, call: Call, attempt: Attempt, usage: Usage, status: int, deferrable: bool = False) -> None:
        """Charge the actual cost at the prices of the model that served it, journaled now.

        ``deferrable``: the output has been delivered (a stream), so a shared ledger that is unreachable
        right now queues the charge instead of failing; a whole response is not sent unless it is charged.
        """
        services = self.services
        model_key = normalize_model_id(attempt.model.id)
        call.usage = usage
        call.status = status
        call.cost_nano = call.price_table.cost_nano(model_key, usage)
        reservation, call.reservation = call.reservation, None
        if reservation is None:
            raise RuntimeError("settled twice")
        await services.ledger.settle(reservation, call.cost_nano, {
            "request_id": call.channel.request_id, "model": attempt.model.id, "node": attempt.node.id,
            "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens, "cache_write_tokens": usage.cache_write_tokens,
            "cache_write_1h_tokens": usage.cache_write_1h_tokens, "estimated": call.estimated, "status": status,
            "latency_ms": round((time.monotonic() - call.started) * 1000, 1),
            "ttft_ms": None if call.ttfb_s is None else round(call.ttfb_s * 1000, 1),
            "endpoint": call.endpoint, "stream": call.request_facts.stream, "created_at": time.time(),
        }, deferrable=deferrable)
        metrics = services.metrics
        metrics.child(metrics.tokens, attempt.model.id, "input").inc(usage.input_tokens)
        metrics.child(metrics.tokens, attempt.model.id, "output").inc(usage.output_tokens)
        metrics.child(metrics.tokens, attempt.model.id, "cache_read").inc(usage.cached_tokens)
        metrics.child(metrics.tokens, attempt.model.id, "cache_write").inc(usage.cache_write_tokens)
        metrics.child(metrics.cost, attempt.model.id).inc(call.cost_nano / 1e9)

    def _answer_client_fault(self, call: Call, fault: ClientFault) -> None:
        """An upstream 4xx that is the client's fault goes back as sent (translated if protocols differ)."""
        body = fault.body
        if fault.node_protocol != call.endpoint:
            body = orjson.dumps(translate.translate_error(fault.node_protocol, fault.status, body, call.endpoint))
        call.status = fault.status
        call.error = f"upstream HTTP {fault.status}"
        call.channel.send(fault.status, body)
        self.services.metrics.child(self.services.metrics.requests, call.endpoint, call.request_model.id, "4xx").inc()

    def _all_failed(self, call: Call, plan: Plan) -> None:
        if call.channel.closed:  # the client left while we were failing over: nobody to answer
            call.status = 499
            call.error = "client closed the connection before any node answered"
            return
        if not plan.tried:
            raise GatewayError(ErrorKind.OVERLOADED, f"no healthy node serves '{call.request_model.id}' right now; retry shortly",
                               retry_after_s=5)
        if len(call.refused) == len(plan.tried):  # no node failed: none can express this request
            refusal = call.refused[0]
            raise GatewayError(ErrorKind.INVALID_REQUEST, refusal.message, refusal.param)
        tried = "; ".join(f"{node} ({model}): {detail}" for node, model, detail in plan.tried)
        timeouts = all(verdict.reason is Reason.TIMEOUT for verdict in call.verdicts)
        kind = ErrorKind.UPSTREAM_TIMEOUT if timeouts else ErrorKind.UPSTREAM_FAILED
        raise GatewayError(kind, f"every node failed for '{call.request_model.id}'. Tried: {tried}")

    def _fail(self, call: Call, error: GatewayError) -> None:
        call.status = error.kind.status
        call.error = error.message
        channel = call.channel
        if channel.closed:
            return
        channel.fail(error)
        model = call.request_model.id if call.model is not None else "-"
        self.services.metrics.child(self.services.metrics.requests, call.endpoint, model,
                                    f"{error.kind.status // 100}xx").inc()

    def _record(self, call: Call) -> None:
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
            "model": call.served_model.id if call.served_model else (call.request_model.id if call.model else None),
            "node": call.node, "attempts": call.attempts, "status": call.status,
            "input_tokens": usage.input_tokens if usage else None,
            "output_tokens": usage.output_tokens if usage else None,
            "cached_tokens": usage.cached_tokens if usage else None,
            "cache_write_tokens": usage.cache_write_tokens if usage else None,
            "cost_usd": nano_to_usd(call.cost_nano) if usage else None,
            "latency_ms": round(total * 1000, 1),
            "ttft_ms": round(call.ttfb_s * 1000, 1) if call.ttfb_s is not None else None,
            "stream": call.request_facts.stream if call.facts else None, "error": call.error,
        })


def _abort_live(call: Call) -> None:
    """The client left: abort its upstream exchanges (curl notices at once)."""
    for exchange in list(call.live):
        exchange.abort("client_gone")
