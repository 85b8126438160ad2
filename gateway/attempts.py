"""Opening attempts: everything that happens before the first byte reaches the client.

Until then any upstream failure may be retried on another node, and a hedge
may race a slow attempt. ``Opener.race`` takes a request's routing plan and
returns the first attempt whose status and first body bytes are known, having
settled every failed or abandoned attempt's ``Verdict`` on the way (the
winner's is settled by the pipeline once delivery ends). Failures are
classified by phase, because the phase decides whether failover is safe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.call import Call
from gateway.config import normalize_model_id
from gateway.errors import ErrorKind, GatewayError
from gateway.protocols import translate
from gateway.protocols.canonical import ProtocolError
from gateway.protocols.names import EMBEDDING_ENDPOINTS, Protocol
from gateway.protocols.stream_check import start_problem
from gateway.routing.router import Attempt, Outcome, Plan
from gateway.services import Services
from gateway.upstream.client import Overloaded
from gateway.upstream.exchange import Exchange, UpstreamError
from gateway.upstream.providers import FORWARDED_HEADERS
from gateway.upstream.mock import open_mock
from gateway.verdict import Reason, Verdict, settle

MAX_ERROR_BODY = 1 << 20
MAX_RESPONSE_BODY = 64 << 20
class AttemptFailed(Exception):
    """One attempt failed before its first byte (settled once it is raised out of ``_open``): try the next."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.detail)
        self.verdict = verdict


class ClientFault(Exception):
    """The upstream rejected the request as the client's fault: answer it as is, do not fail over."""

    def __init__(self, status: int, body: bytes, node_protocol: Protocol) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.node_protocol = node_protocol


@dataclass
class Opened:
    """An attempt that got its first byte: nothing has been committed to the client yet."""

    attempt: Attempt
    exchange: Exchange
    node_protocol: Protocol
    first: bytes  # first body bytes (streams) or the whole body
    ttfb_s: float
    body: Any = None  # a whole body, parsed (and judged) once


class Opener:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def race(self, call: Call, plan: Plan) -> Opened | None:
        """Open attempts in plan order until one has its first byte; hedge a slow one.

        Failed attempts are reported (and fail over) here; the winner is
        reported by the caller once delivery ends. A hedge starts the next
        candidate when the current one has not produced a first byte within
        the model's ``hedge_after_ms``; the first to answer wins and the other
        is aborted.
        """
        if not call.request_model.hedge_after_ms:
            return await self._in_turn(call, plan)
        hedge_s = call.request_model.hedge_after_ms / 1000.0
        tasks: dict[asyncio.Task[Opened], Attempt] = {}
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
                        self.services.metrics.child(self.services.metrics.hedges, call.request_model.id).inc()
                        tasks[self._start(call, plan, attempt)] = attempt
                    continue
                for task in done:
                    tasks.pop(task)
                    error = task.exception()
                    if error is None:
                        return task.result()
                    if not isinstance(error, AttemptFailed):
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
                    self._settle(call, plan, loser.attempt, Verdict.cancelled())

    async def _in_turn(self, call: Call, plan: Plan) -> Opened | None:
        """No hedging: one attempt at a time, awaited directly (no Task, no asyncio.wait per request)."""
        while not call.channel.closed:  # client gone: no new attempt (it would run, and bill, for nobody)
            attempt = plan.next()
            if attempt is None:
                return None
            call.attempts += 1
            try:
                return await self._open(call, plan, attempt)
            except AttemptFailed:
                continue
        return None

    def _start(self, call: Call, plan: Plan, attempt: Attempt) -> "asyncio.Task[Opened]":
        call.attempts += 1
        task = asyncio.ensure_future(self._open(call, plan, attempt))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # losers' errors are handled here
        return task

    def _settle(self, call: Call, plan: Plan, attempt: Attempt, verdict: Verdict) -> None:
        call.verdicts.append(settle(self.services.router, self.services.metrics, attempt, verdict, plan))

    async def _open(self, call: Call, plan: Plan, attempt: Attempt) -> Opened:
        """Take one attempt up to its first body byte; on failure settle its verdict and raise."""
        exchange: Exchange | None = None
        began = time.monotonic()
        try:
            exchange, node_protocol = await self._send(call, attempt)
            call.live.add(exchange)
            await exchange.started()
            status = exchange.status
            if status >= 400:
                error_body = await exchange.read_all(MAX_ERROR_BODY)
                verdict = Verdict.of_status(status, _retry_after(exchange.headers.get("retry-after")))
                if verdict.outcome is Outcome.CLIENT_ERROR:
                    self._settle(call, plan, attempt, verdict)
                    raise ClientFault(status, error_body, node_protocol)
                raise AttemptFailed(verdict)
            body: dict[str, Any] | None = None
            if call.streaming:
                first = await exchange.read()
                if not first:
                    raise AttemptFailed(Verdict.failure(Reason.BAD_RESPONSE, "empty stream"))
                problem = start_problem(first)
                if problem is not None:
                    raise AttemptFailed(Verdict.failure(Reason.BAD_RESPONSE, problem))
            else:
                first = await exchange.read_all(MAX_RESPONSE_BODY)
                body = judge_body(first)
            ttfb = time.monotonic() - began
            call.upstream_wait_s += ttfb
            return Opened(attempt, exchange, node_protocol, first, ttfb, body)
        except asyncio.CancelledError:
            if exchange is not None:
                exchange.abort("hedge_lost")
            self._settle(call, plan, attempt, Verdict.cancelled())
            raise
        except UpstreamError as exc:
            self._attempt_failed(call, plan, attempt, AttemptFailed(Verdict.of_upstream_error(exc)))
        except AttemptFailed as exc:
            if exchange is not None:
                exchange.abort("failed")
            self._attempt_failed(call, plan, attempt, exc)
        except ProtocolError as exc:  # this pairing cannot express the request: not the node's fault
            verdict = Verdict(Outcome.CANCELLED, Reason.UNSUPPORTED, exc.message)
            self._settle(call, plan, attempt, verdict)
            call.refused.append(exc)
            raise AttemptFailed(verdict) from None
        except ClientFault:
            raise  # settled above, exactly once: the catch-all below would settle it again
        except BaseException:
            self._settle(call, plan, attempt, Verdict.cancelled())
            raise
        finally:
            if exchange is not None:
                call.live.discard(exchange)
        raise AssertionError("unreachable")

    def _attempt_failed(self, call: Call, plan: Plan, attempt: Attempt, failure: AttemptFailed) -> None:
        verdict = failure.verdict
        if call.channel.closed:  # nobody to answer: no word on the node, but the reason is kept
            verdict = dataclasses.replace(verdict, outcome=Outcome.CANCELLED, retry_after_s=None)
        self._settle(call, plan, attempt, verdict)
        raise failure

    async def _send(self, call: Call, attempt: Attempt) -> tuple[Exchange, Protocol]:
        """Build the node's request (pass-through or translated) and start it."""
        endpoints = call.endpoints[attempt.node.id]
        node_protocol = endpoints.protocol_for(call.endpoint)
        if node_protocol is None:
            raise ProtocolError(f"node cannot serve {call.endpoint}")
        model_key = normalize_model_id(attempt.model.id)
        body = self._node_body(call, node_protocol, attempt.upstream_model)
        if attempt.node.provider == "mock":
            return open_mock(attempt.node, node_protocol, body, call.channel.request_id), node_protocol
        target = endpoints.target(node_protocol, model_key, call.request_facts.stream)
        headers = target.headers
        if node_protocol == Protocol.MESSAGES and call.endpoint == Protocol.MESSAGES:
            # Tornado refused control characters in client headers while parsing, so these encode cleanly.
            forwarded = {name: call.headers[name] for name in FORWARDED_HEADERS if name in call.headers}
            if forwarded:
                headers = headers.with_overrides(forwarded)
        payload = orjson.dumps(body)
        try:
            exchange = await self.services.client.open(target.url, headers, payload, attempt.node.timeouts)
        except Overloaded:
            raise GatewayError(ErrorKind.OVERLOADED, "the gateway is at its upstream connection limit; retry shortly",
                               retry_after_s=1) from None
        return exchange, node_protocol

    def _node_body(self, call: Call, node_protocol: Protocol, upstream_model: str) -> dict[str, Any]:
        body = call.body
        if node_protocol == call.endpoint:
            out = translate.passthrough_request(node_protocol, body, upstream_model)
            if node_protocol == Protocol.CHAT and call.request_facts.stream and not call.request_facts.include_usage:
                out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            return out
        if call.prepared is not None:
            return call.prepared.body_for(node_protocol, upstream_model)
        if call.endpoint in EMBEDDING_ENDPOINTS:  # OpenAI <-> Gemini embeddings
            return translate.translate_embeddings_request(call.endpoint, node_protocol, body, upstream_model)
        return translate.translate_request(call.endpoint, body, node_protocol, upstream_model, call.request_facts.stream)


def judge_body(first: bytes) -> dict[str, Any]:
    """A whole ``2xx`` body, parsed once (usage and translation read it): a JSON object that is not an
    error object, or the node failed (an HTML page, a truncated body, ``{"error": ...}`` behind a 200)."""
    try:
        body = orjson.loads(first)
    except ValueError:
        kind = "an HTML page" if first.lstrip()[:1] == b"<" else "a body that is not JSON"
        raise AttemptFailed(Verdict.failure(Reason.BAD_RESPONSE, f"sent {kind} with a 2xx status")) from None
    if not isinstance(body, dict):
        raise AttemptFailed(Verdict.failure(Reason.BAD_RESPONSE, "sent a JSON body that is not an object"))
    if body.get("type") == "error" or (isinstance(body.get("error"), dict) and body.get("object") != "response"):
        raise AttemptFailed(Verdict.failure(Reason.BAD_RESPONSE, "sent an error object with a 2xx status"))
    return body


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from LLM APIs; the breaker's own timing applies
    return seconds if 0 <= seconds <= 3600 else None
