"""The state of one request, and the client side as the pipeline sees it.

``Call`` is what a request accumulates on its way through the pipeline;
``Channel`` is the HTTP layer's side of it, kept as a protocol so that nothing
below ``gateway/http`` imports Tornado.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from gateway.config import Model
from gateway.errors import GatewayError
from gateway.ledger.keys import KeyInfo
from gateway.ledger.backend import Reservation
from gateway.ledger.pricing import PriceTable
from gateway.protocols.canonical import ProtocolError, Usage
from gateway.protocols.inspect import RequestFacts
from gateway.protocols.names import EMBEDDING_ENDPOINTS, Protocol
from gateway.protocols.translate import Prepared
from gateway.upstream.exchange import Exchange
from gateway.upstream.providers import NodeEndpoints
from gateway.verdict import Verdict


class Channel(typing.Protocol):
    """The client side of one request, as the HTTP layer presents it (no Tornado here)."""

    request_id: str
    closed: bool

    def set_header(self, name: str, value: str) -> None: ...
    def send(self, status: int, body: bytes) -> None: ...
    def fail(self, error: GatewayError) -> None:
        """Answer the error in the client's protocol (before anything else was sent)."""
    def start_stream(self) -> None: ...
    def relay(self, data: bytes) -> bool:
        """Write a piece of a stream now (from a libcurl callback, too: it never waits). True if the kernel
        took every byte; False if some wait in our buffer (``drained`` says when they are out) or the client
        is gone (``closed``)."""
    async def drained(self) -> bool:
        """Wait until the client has taken everything written; False if it left instead."""
    def end(self) -> None: ...
    def on_close(self, callback: Callable[[], Any] | None) -> None: ...


@dataclass
class Call:
    """Everything one request accumulates on its way through."""

    endpoint: Protocol
    channel: Channel
    started: float
    key: KeyInfo | None = None
    model: Model | None = None
    facts: RequestFacts | None = None
    body: dict[str, Any] = field(default_factory=dict)
    prepared: Prepared | None = None  # the body translated for the other protocols among the model's nodes
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
    verdicts: list[Verdict] = field(default_factory=list)  # one per attempt that did not win, in settle order
    refused: list[ProtocolError] = field(default_factory=list)  # attempts whose protocol cannot express the request
    live: set[Exchange] = field(default_factory=set)  # upstream exchanges to abort if the client leaves

    def authenticated(self, key: KeyInfo) -> None:
        """Admission's hook: the key is known (the access log names it even if the request is refused)."""
        self.key = key

    @property
    def request_model(self) -> Model:
        """The model admission resolved."""
        if self.model is None:
            raise RuntimeError("the call has not been admitted")
        return self.model

    @property
    def price_table(self) -> PriceTable:
        """The prices when the request began (a reload mid-stream changes nothing)."""
        if self.prices is None:
            raise RuntimeError("the call has not been admitted")
        return self.prices

    @property
    def request_facts(self) -> RequestFacts:
        """The facts admission found; every step after admission may rely on them."""
        if self.facts is None:
            raise RuntimeError("the call has not been admitted")
        return self.facts

    @property
    def streaming(self) -> bool:
        return bool(self.facts and self.facts.stream) and self.endpoint not in EMBEDDING_ENDPOINTS
