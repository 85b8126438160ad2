"""After the first byte: the answer goes to the client, and there is no failover any more.

Two shapes. A whole response is parsed once, translated if the protocols
differ, and handed back for the pipeline to charge and send. A stream is
committed, then relayed chunk by chunk: same protocol through a pass-through
tap (raw events, usage read on the side), otherwise through a translator.
Either way the pipeline settles the charge before the response ends.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.attempts import Opened
from gateway.call import Call, Channel
from gateway.errors import ErrorKind
from gateway.observability.metrics import Metrics
from gateway.protocols import translate
from gateway.config import normalize_model_id
from gateway.protocols.canonical import ClientTool, Price, Usage, dumpb
from gateway.protocols.error_bodies import stream_error_frame
from gateway.protocols.inspect import estimate_prompt_tokens
from gateway.protocols.names import EMBEDDING_ENDPOINTS
from gateway.protocols.passthrough import make_tap
from gateway.protocols.stream_tap import StreamTap
from gateway.protocols.usage import usage_from_body, with_cost
from gateway.routing.router import Outcome
from gateway.upstream.exchange import UpstreamError
from gateway.verdict import describe


def _client_tools(call: Call) -> dict[str, ClientTool] | None:
    return call.prepared.request.client_tools if call.prepared is not None else None


def mark_dropped_tools(call: Call, opened: Opened) -> None:
    """``x-infermesh-dropped-tools``: the tool types this (translating) node could not be given."""
    if call.prepared is None or opened.node_protocol == call.endpoint:
        return
    dropped = call.prepared.request.dropped_tools
    if dropped:
        call.channel.set_header("x-infermesh-dropped-tools", ", ".join(dict.fromkeys(dropped)))


def whole_body(call: Call, opened: Opened) -> tuple[bytes, Usage]:
    """The client's response body and the usage to bill (estimated, and marked so, if the node gave none)."""
    upstream_body = opened.body  # parsed and judged before the first byte (attempts.judge_body)
    public_model = opened.attempt.model.id
    client_body: Any = None
    if opened.node_protocol == call.endpoint:
        out = opened.first
        usage = usage_from_body(call.endpoint, upstream_body)
        client_body = upstream_body
    else:
        if call.endpoint in EMBEDDING_ENDPOINTS:  # OpenAI <-> Gemini embeddings
            client_body, usage = translate.translate_embeddings_response(
                call.endpoint, opened.node_protocol, upstream_body, public_model, call.body)
        else:
            client_body, usage = translate.translate_response(opened.node_protocol, upstream_body, call.endpoint,
                                                              public_model, call.channel.request_id,
                                                              _client_tools(call))
        out = dumpb(client_body)
    if usage is None:
        usage = Usage(estimate_prompt_tokens(call.body), max(1, len(opened.first) // 4), 0)
        call.estimated = True
    elif call.endpoint not in EMBEDDING_ENDPOINTS and with_cost(client_body, _pricer(call, opened)(usage)):
        out = dumpb(client_body)  # the body carries the usage, so it is the one re-encoded
    return out, usage


def _pricer(call: Call, opened: Opened) -> Price:
    """Costs at the prices of the model that actually served (a fallback is billed at its own)."""
    assert call.prices is not None  # set before any attempt opens
    return call.prices.pricer(normalize_model_id(opened.attempt.model.id))


async def relay_stream(call: Call, opened: Opened, metrics: Metrics,
                       max_event_bytes: int) -> tuple[Outcome, int, Usage]:
    """Commit and relay until the stream ends; returns the node's verdict, the status to record, the usage.

    The channel is left open: the pipeline settles the charge, then ends it.
    """
    channel = call.channel
    exchange = opened.exchange
    if opened.node_protocol == call.endpoint:
        tap: StreamTap = make_tap(call.endpoint, call.request_facts.include_usage, _pricer(call, opened),
                                  max_event_bytes)
    else:
        tap = translate.StreamTranslator(opened.node_protocol, call.endpoint, opened.attempt.model.id,
                                         channel.request_id, call.request_facts.include_usage, _pricer(call, opened),
                                         _client_tools(call), max_event_bytes)
    mark_dropped_tools(call, opened)
    channel.set_header("x-infermesh-node", opened.attempt.node.id)
    channel.set_header("x-infermesh-attempts", str(call.attempts))
    channel.start_stream()
    metrics.stream_started()
    metrics.child(metrics.ttft, call.endpoint).observe(time.monotonic() - call.started)
    call.live.add(exchange)
    outcome = Outcome.SUCCESS
    status = 200
    relay = _Relay(tap, channel)
    try:
        going = relay.push(opened.first)
        while True:
            if not going:  # the client is slow or gone, or the stream failed: the coroutine's turn
                if not await channel.drained():
                    break
                relay.written()
                if tap.upstream_error:  # its error event is out: stop the transfer too
                    exchange.abort("failed")
                    break
            pumped, spent = time.monotonic(), relay.spent_s
            ended = await exchange.pump(relay.push)  # every chunk relayed as it arrives, until the body ends
            call.upstream_wait_s += time.monotonic() - pumped - (relay.spent_s - spent)
            if ended:
                tail = tap.finish()
                if tail and not channel.relay(tail):
                    await channel.drained()
                break
            going = False
        if tap.upstream_error:  # an error event (the node's own, or ours for a broken stream) ended it
            outcome, status, call.error = Outcome.FAILURE, 502, tap.upstream_error
    except UpstreamError as exc:
        if not channel.closed:  # (when it is, this was our own abort after the client left)
            outcome = Outcome.FAILURE
            status = 502
            call.error = describe(exc)
            if not channel.relay(stream_error_frame(call.endpoint, ErrorKind.UPSTREAM_FAILED.status,
                                                    f"the upstream stream failed: {describe(exc)}")):
                await channel.drained()
    except Exception:  # a bug of ours (the tap, a translator): nobody reads the transfer any more, so end it
        exchange.abort("failed")
        raise
    finally:
        call.live.discard(exchange)
        metrics.stream_ended()
    if channel.closed:
        exchange.abort("client_gone")
        if not relay.delivered:  # (a client may hang up as soon as it has the last event, before the node's end)
            status = 499
    return outcome, status, _stream_usage(call, tap, status)


class _Relay:
    """The sink a stream's chunks go through (``Exchange.pump``): tap or translate, then write to the client.

    It runs inside libcurl's write callback, so it only writes, never waits: it says False when the
    client did not take everything (or is gone) or the stream failed, and ``relay_stream`` takes it
    from there (waits for the drain, aborts the transfer). ``delivered`` turns True once the node's
    final event is in the client's socket. ``spent_s`` is the sink's own time, which the overhead
    histogram counts as the gateway's, not as waiting for the upstream.
    """

    __slots__ = ("tap", "channel", "delivered", "spent_s")

    def __init__(self, tap: StreamTap, channel: Channel) -> None:
        self.tap = tap
        self.channel = channel
        self.delivered = False  # the node's final event is in the client's socket: a hang-up after it is no 499
        self.spent_s = 0.0

    def push(self, chunk: bytes) -> bool:
        began = time.monotonic()
        tap = self.tap
        out = tap.feed(chunk)
        if out and not self.channel.relay(out):
            going = False  # not out yet: ``delivered`` waits for the drain
        else:
            self.written()
            going = not (tap.upstream_error or self.channel.closed)
        self.spent_s += time.monotonic() - began
        return going

    def written(self) -> None:
        """Everything fed so far is in the client's socket."""
        self.delivered = self.tap.complete and not self.tap.upstream_error


def _stream_usage(call: Call, tap: StreamTap, status: int) -> Usage:
    """The node's usage; for a stream cut short, at least what was generated (estimated, and marked so)."""
    usage = tap.usage
    output = tap.output_tokens_estimate
    if usage is None:
        call.estimated = True
        return Usage(estimate_prompt_tokens(call.body), output, 0)
    if status != 200 and usage.output_tokens < output:
        # Cut off before the node's final count: Anthropic reports output_tokens=1 in message_start and
        # the real number only in its last message_delta. Bill what was generated, not that early count.
        call.estimated = True
        return Usage(usage.input_tokens, output, usage.cached_tokens, usage.cache_write_tokens,
                     usage.cache_write_1h_tokens)
    return usage
