"""The one door the pipeline uses into protocol translation.

Client protocols: ``chat``, ``responses``, ``messages``, ``gemini``. Node
protocols: the same four. Every translation goes client -> canonical -> node and
node -> canonical -> client (see ``canonical.py``); this module only picks the
two halves. Same-protocol traffic never comes here: it is passed through.

Deviations from the first sketch of this API, all additive:

* The embeddings functions take the client protocol as well as the node's
  (OpenAI and Gemini clients, OpenAI and Gemini nodes; ``gemini_embed.py``),
  and the response side takes the client's request body: Gemini reports no
  token counts (usage is estimated from the input text) and the OpenAI SDK
  asks for ``encoding_format: base64`` by default.
* ``passthrough_request``: the body for a node that speaks the client's own
  protocol (model id rewritten where that protocol keeps it).
* ``StreamTranslator.upstream_error`` holds the message of an error the node
  sent *inside* its stream (already rendered to the client as its protocol's
  error event), so the pipeline can record the request as failed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from gateway.protocols import anthropic, gemini, gemini_client, gemini_embed, openai_chat, openai_responses
from gateway.protocols.anthropic_stream import (
    MessagesStreamParser,
    MessagesStreamRenderer,
)
from gateway.protocols.canonical import (
    STREAM_END,
    ClientTool,
    Finish,
    Price,
    ProtocolError,
    Request,
    Response,
    StreamEnd,
    StreamError,
    StreamRenderer,
    Usage,
)
from gateway.protocols.error_bodies import error_json, parse_upstream_error
from gateway.protocols.gemini_stream import GeminiStreamRenderer
from gateway.protocols.names import Protocol
from gateway.protocols.openai_chat_stream import ChatStreamParser, ChatStreamRenderer
from gateway.protocols.openai_responses_stream import (
    ResponsesStreamParser,
    ResponsesStreamRenderer,
)
from gateway.protocols.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSEEvent
from gateway.protocols.stream_check import well_formed
from gateway.protocols.validate import validate_chat, validate_messages, validate_responses

__all__ = [
    "Prepared", "ProtocolError", "prepare", "StreamTranslator", "Usage", "translate_embeddings_request",
    "translate_embeddings_response", "translate_error", "translate_request", "translate_response",
    "validate_request",
]

_REQUEST_FROM: dict[Protocol, Callable[[dict], Request]] = {
    Protocol.CHAT: openai_chat.request_from_chat,
    Protocol.RESPONSES: openai_responses.request_from_responses,
    Protocol.MESSAGES: anthropic.request_from_messages,
    Protocol.GEMINI: gemini_client.request_from_gemini,
}
_REQUEST_TO: dict[Protocol, Callable[[Request, str], dict]] = {
    Protocol.CHAT: openai_chat.request_to_chat,
    Protocol.RESPONSES: openai_responses.request_to_responses,
    Protocol.MESSAGES: anthropic.request_to_messages,
    Protocol.GEMINI: gemini.request_to_gemini,
}
_RESPONSE_FROM: dict[Protocol, Callable[[dict, str], Response]] = {
    Protocol.CHAT: lambda body, _rid: openai_chat.response_from_chat(body),
    Protocol.RESPONSES: lambda body, _rid: openai_responses.response_from_responses(body),
    Protocol.MESSAGES: lambda body, _rid: anthropic.response_from_messages(body),
    Protocol.GEMINI: gemini.response_from_gemini,
}
_RESPONSE_TO: dict[Protocol, Callable[[Response, str, str], dict]] = {
    Protocol.CHAT: openai_chat.response_to_chat,
    Protocol.MESSAGES: anthropic.response_to_messages,
    Protocol.GEMINI: gemini_client.response_to_gemini,
}
_PARSERS: dict[Protocol, type[Any]] = {  # each: (request_id, emit) -> .parse(event), .usage
    Protocol.CHAT: ChatStreamParser,
    Protocol.RESPONSES: ResponsesStreamParser,
    Protocol.MESSAGES: MessagesStreamParser,
    Protocol.GEMINI: gemini.GeminiStreamParser,
}
_RENDERERS: dict[Protocol, type[Any]] = {
    Protocol.CHAT: ChatStreamRenderer,
    Protocol.MESSAGES: MessagesStreamRenderer,
    Protocol.GEMINI: GeminiStreamRenderer,
}


def validate_request(client: Protocol, body: dict) -> None:
    """Deep validation of a client request; raises ProtocolError with the field path.

    A Gemini request is validated by translating it (and dropping the result):
    the translation checks every field, and pass-through requests to Gemini
    nodes need the same checks as translated ones."""
    if client == Protocol.CHAT:
        validate_chat(body)
    elif client == Protocol.GEMINI:
        gemini_client.request_from_gemini(body)
    elif client == Protocol.MESSAGES:
        validate_messages(body)
    elif client == Protocol.RESPONSES:
        validate_responses(body)


class Prepared:
    """A client request parsed once into canonical form, and translated once per node protocol.

    Built before any node is tried, so a request that no candidate node can
    take is the client's 400 at once (contract §3), and a failover to another
    node of the same protocol reuses the translation (only the model differs).
    ``request`` also carries the tools dropped for other protocols and the
    client's own tool names.
    """

    __slots__ = ("request", "_client", "_bodies", "_errors")

    def __init__(self, request: Request, client: Protocol) -> None:
        self.request = request
        self._client = client
        self._bodies: dict[str, dict] = {}
        self._errors: dict[str, ProtocolError] = {}

    def body_for(self, node: Protocol, upstream_model: str) -> dict:
        """The node's body with its own model id; raises the ProtocolError if this protocol cannot take it."""
        template = self._bodies.get(node)
        if template is None:
            error = self._errors.get(node)
            if error is not None:
                raise error
            try:
                template = self._bodies[node] = _REQUEST_TO[node](_for_node(self._client, self.request, node), "")
            except ProtocolError as exc:
                self._errors[node] = exc
                raise
        body = dict(template)
        if "model" in body:  # Gemini's model is in the URL
            body["model"] = upstream_model
        return body


def prepare(client: Protocol, body: dict, node_protocols: set[Protocol], stream: bool = False) -> Prepared:
    """Translate ``body`` for every protocol in ``node_protocols`` other than the client's own.

    Raises the ProtocolError (400, naming the field) when the request cannot
    be parsed, or when no protocol in the set can take it; nodes of a
    protocol that cannot take it are skipped (``body_for`` raises) while
    others serve the request. ``stream``: the request streams (Gemini clients
    say so in the URL, not the body).
    """
    request = _REQUEST_FROM[client](body)
    request.stream = request.stream or stream
    prepared = Prepared(request, client)
    servable = client in node_protocols
    first_error: ProtocolError | None = None
    for node in sorted(node_protocols - {client}):
        try:
            prepared.body_for(node, "")
            servable = True
        except ProtocolError as exc:
            first_error = first_error or exc
    if not servable and first_error is not None:
        raise first_error
    return prepared


def _for_node(client: Protocol, request: Request, node: Protocol) -> Request:
    """Anthropic has no JSON mode. Gemini clients ask for one on helper calls whose prompt describes the
    JSON anyway (Gemini CLI's JSON utilities), so for them it is dropped rather than refused."""
    if client == Protocol.GEMINI and node == Protocol.MESSAGES and request.response_format is not None:
        return replace(request, response_format=None)
    return request


def translate_request(client: Protocol, body: dict, node: Protocol, upstream_model: str, stream: bool = False) -> dict:
    """The body to send to a node speaking another protocol.

    The body is rebuilt field by field, so gateway-only fields such as
    ``fallback_models`` are never copied. Gemini's model belongs in the URL,
    so its body has none. ``stream``: the request streams (Gemini clients say
    so in the URL, not the body).
    """
    request = _REQUEST_FROM[client](body)
    request.stream = request.stream or stream
    return _REQUEST_TO[node](_for_node(client, request, node), upstream_model)


def translate_response(node: Protocol, body: dict, client: Protocol, public_model: str, request_id: str,
                       client_tools: dict[str, ClientTool] | None = None) -> tuple[dict, Usage]:
    """A non-streaming node reply as the client's reply, plus its usage.

    ``client_tools`` (from the canonical request) renames tool calls back to
    the client's own tools; only Responses clients have tools that need it.
    """
    response = _RESPONSE_FROM[node](body, request_id)
    if client == Protocol.RESPONSES:
        return openai_responses.response_to_responses(response, public_model, request_id, client_tools), \
            response.usage
    return _RESPONSE_TO[client](response, public_model, request_id), response.usage


def translate_error(node: Protocol, status: int, body: bytes, client: Protocol) -> dict:
    """An upstream error body of any shape as the client protocol's error JSON,
    keeping the upstream's message text."""
    message, upstream_type, code, param = parse_upstream_error(status, body)
    return error_json(client, status, message, code=code, param=param, upstream_type=upstream_type)


def passthrough_request(protocol: Protocol, body: dict, upstream_model: str) -> dict:
    """The client's body for a node of the same protocol: gateway-only fields dropped, model rewritten.

    Gemini keeps the model in the URL (built from config), so its body has none,
    except inside each item of a batch of embeddings."""
    if protocol == Protocol.GEMINI_EMBEDDINGS:
        return gemini_embed.passthrough_request(body, upstream_model)
    out = dict(body)
    out.pop("fallback_models", None)
    if protocol != Protocol.GEMINI:
        out["model"] = upstream_model
    return out


def translate_embeddings_request(client: Protocol, node: Protocol, body: dict, upstream_model: str) -> dict:
    """An embeddings request for a node of another format (OpenAI <-> Gemini, either way)."""
    return gemini_embed.node_request(client, node, body, upstream_model)


def translate_embeddings_response(client: Protocol, node: Protocol, body: dict, public_model: str,
                                  request: dict) -> tuple[dict, Usage]:
    """A node's embeddings reply in the client's format, plus the usage to bill.

    ``request`` is the client's request: its input sizes the usage estimate
    when the node is Gemini (characters / 4, rounded up) and its
    ``encoding_format`` picks float lists or base64 for OpenAI clients.
    """
    return gemini_embed.client_response(client, node, body, public_model, request)


class _Sink:
    """Where the parser delivers canonical events: to the renderer, noting an upstream error."""

    __slots__ = ("_renderer", "error", "seen")

    def __init__(self, renderer: object) -> None:
        self._renderer = renderer
        self.error: str | None = None
        self.seen: set[type] = set()  # which of Finish and StreamEnd the node sent

    def __call__(self, event: object) -> None:
        kind = type(event)
        if kind is StreamError:
            self.error = event.message  # type: ignore[attr-defined]
        elif kind is Finish or kind is StreamEnd:
            self.seen.add(kind)
        self._renderer.handle(event)  # type: ignore[attr-defined]


class StreamTranslator:
    """One streamed reply, node protocol in, client protocol out, sans-IO.

    Three layers: ``SSEDecoder`` frames the node's bytes (split anywhere), a
    parser turns each node event into canonical events, and a renderer turns
    those into the client's SSE bytes, keeping whatever state its protocol's
    closing events need.
    """

    __slots__ = ("_decoder", "_parser", "_renderer", "_sink", "_final")

    def __init__(self, node: Protocol, client: Protocol, public_model: str, request_id: str, include_usage: bool,
                 price: Price | None = None, client_tools: dict[str, ClientTool] | None = None,
                 max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._renderer: StreamRenderer
        if client == Protocol.RESPONSES:
            self._renderer = ResponsesStreamRenderer(public_model, request_id, include_usage, price, client_tools)
        else:
            self._renderer = _RENDERERS[client](public_model, request_id, include_usage, price)
        self._sink = _Sink(self._renderer)  # not a bound method of ours: that would be a reference cycle
        self._parser = _PARSERS[node](request_id, self._sink)
        self._decoder = SSEDecoder(max_event_bytes)
        # The node's own last word: Gemini has no end event, its last chunk carries the finishReason.
        self._final: type = Finish if node == Protocol.GEMINI else StreamEnd

    @property
    def upstream_error(self) -> str | None:
        """The error the node reported inside its stream, if it did (already rendered for the client)."""
        return self._sink.error

    def _handle(self, event: object) -> None:
        self._sink(event)

    def feed(self, chunk: bytes) -> bytes:
        """Node bytes (any split) -> client SSE bytes, possibly empty."""
        for event in self._decoder.feed(chunk):
            self._parse(event)
        if self._decoder.overflowed and self._sink.error is None:
            self._handle(StreamError("the upstream sent a stream event over the size limit", 502))
        return self._renderer.take()

    def _parse(self, event: SSEEvent) -> None:
        try:
            if not well_formed(event.data):  # an empty ``data:`` too: not an event any SDK parses
                raise ValueError("not a JSON object")
            self._parser.parse(event)
        except (ValueError, AttributeError):  # not JSON, or JSON of the wrong shape
            self._handle(StreamError("upstream sent a malformed stream event", 502))

    def finish(self) -> bytes:
        """The node's stream ended: flush, then close the client's stream, properly only if the node
        said its last word; a stream cut short ends with the client protocol's error event."""
        for event in self._decoder.flush():
            self._parse(event)
        if self._final in self._sink.seen or self._sink.error is not None:
            self._renderer.handle(STREAM_END)
        else:
            self._handle(StreamError("the upstream stream ended without its final event", 502))
        return self._renderer.take()

    @property
    def complete(self) -> bool:
        """The node said its last word (its end event; Gemini's finish reason)."""
        return self._final in self._sink.seen

    @property
    def usage(self) -> Usage | None:
        """Usage as the node reported it so far; None until it reports any."""
        return self._parser.usage

    @property
    def output_chars(self) -> int:
        """Characters of text and tool arguments sent to the client so far."""
        return self._renderer.output_chars

    @property
    def output_tokens_estimate(self) -> int:
        """A quarter of the characters sent so far, rounded up."""
        return (self._renderer.output_chars + 3) // 4
