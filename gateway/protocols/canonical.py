"""The hub types every protocol converts to and from.

Each client protocol and each provider protocol translates to these types and
back, so N protocols need N translators, not N x N.

Conventions that every translator relies on:

* A conversation is a list of :class:`Message` whose roles are only ``user``
  and ``assistant`` and alternate: :func:`append_parts` merges consecutive
  turns of the same role. Tool results are parts of a *user* message (the
  Anthropic and Gemini model); the Chat renderer splits them back into
  ``role: tool`` messages.
* Tool-call arguments stay JSON *text* (``ToolCallPart.arguments``): OpenAI
  sends text and may send invalid JSON, so parsing happens only where a target
  protocol needs an object.
* Stop reasons use Anthropic's vocabulary (the richest of the four) plus
  ``content_filter``; see the ``STOP_*`` constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Union

import orjson


@dataclass(slots=True)
class Usage:
    """Token counts of one request, as the upstream reported them.

    ``input_tokens`` includes ``cached_tokens`` (cache reads) and
    ``cache_write_tokens`` (OpenAI's convention); the Anthropic translator adds
    both back in so that every protocol reports the same total.
    ``cache_write_1h_tokens`` is the part of the writes that went to
    Anthropic's 1-hour cache, priced apart (see ``protocols/usage.py``).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0


class ProtocolError(Exception):
    """A client request that is invalid, or that the target protocol cannot express.

    ``param`` is the JSON path of the field at fault (``messages[2].content``)
    so the client's 400 names it.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def under(self, where: str) -> ProtocolError:
        """This error, raised by the checks of the element at ``where``, with its path (relative to that
        element; none for the element itself) put under ``where``.

        The validator and the translators walk every message and block of a request, and an agent's request
        carries its whole session: so each loop adds an element's place (``messages[12]``) only to an error
        on its way out, instead of building a path for each of the hundreds of valid elements.
        """
        return ProtocolError(self.message, f"{where}.{self.param}" if self.param else where)


# Canonical stop reasons.
STOP_END = "end_turn"
STOP_MAX_TOKENS = "max_tokens"
STOP_SEQUENCE = "stop_sequence"
STOP_TOOL_USE = "tool_use"
STOP_CONTENT_FILTER = "content_filter"

# Default output budget when a Chat/Responses client sends none but the target
# (Anthropic) requires one. 8192 fits every current Claude model's limit.
DEFAULT_MAX_TOKENS = 8192


def dumps(obj: object) -> str:
    """Compact JSON text, UTF-8 kept as is: the one serializer of this package."""
    return orjson.dumps(obj).decode()


def dumpb(obj: object) -> bytes:
    """:func:`dumps` as bytes, ready for SSE framing."""
    return orjson.dumps(obj)


# --- content -------------------------------------------------------------


@dataclass(slots=True)
class TextPart:
    text: str


@dataclass(slots=True)
class ImagePart:
    """An image, either inline (``data`` is base64) or by ``url``."""

    media_type: str | None
    data: str | None = None
    url: str | None = None


@dataclass(slots=True)
class FilePart:
    """A document (PDF and the like), inline base64 ``data`` or by ``url``."""

    media_type: str
    data: str | None = None
    url: str | None = None
    filename: str | None = None


@dataclass(slots=True)
class ToolCallPart:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


@dataclass(slots=True)
class ToolResultPart:
    tool_call_id: str
    content: list[TextPart | ImagePart]
    is_error: bool = False


Part = Union[TextPart, ImagePart, FilePart, ToolCallPart, ToolResultPart]


@dataclass(slots=True)
class Message:
    role: str  # "user" | "assistant"
    parts: list[Part]


def append_parts(messages: list[Message], role: str, parts: list[Part]) -> None:
    """Append a turn, merging it into the previous one when the role repeats.

    Chat sends one ``tool`` message per result and often a user message right
    after; Anthropic and Gemini want those as one user turn.
    """
    if not parts:
        return
    if messages and messages[-1].role == role:
        messages[-1].parts.extend(parts)
    else:
        messages.append(Message(role, list(parts)))


def split_result(content: list[TextPart | ImagePart]) -> tuple[str, list[ImagePart]]:
    """A tool result's text, and its images, for targets whose tool results carry only text (Chat,
    Gemini): those send the images right after the results, in the same user turn, so a screenshot
    or an image file a tool read still reaches the model."""
    texts: list[str] = []
    images: list[ImagePart] = []
    for part in content:  # one loop, not two comprehensions: this runs for every tool result of a session
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ImagePart):
            images.append(part)
    return "".join(texts), images


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:<media type>;base64,<data>`` -> (media type, data); None for other URLs."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url.partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    return header[5:-7] or "application/octet-stream", data


def image_from_url(url: str) -> ImagePart:
    """An OpenAI-style image URL (data URL or http) as an :class:`ImagePart`."""
    inline = parse_data_url(url)
    if inline is not None:
        return ImagePart(inline[0], data=inline[1])
    return ImagePart(None, url=url)


def data_url(media_type: str | None, data: str) -> str:
    return f"data:{media_type or 'application/octet-stream'};base64,{data}"


def json_object(arguments: str, param: str | None) -> dict:
    """Tool-call arguments as the object Anthropic and Gemini require."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except ValueError:
        raise ProtocolError("tool call arguments are not valid JSON", param) from None
    if not isinstance(value, dict):
        raise ProtocolError("tool call arguments must be a JSON object", param)
    return value


# --- requests and responses ----------------------------------------------


@dataclass(slots=True)
class ToolDef:
    name: str
    description: str | None
    parameters: dict
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ClientTool:
    """What a node-facing tool name stands for in the client's request, when the two differ.

    Responses ``namespace`` tools are flattened (``namespace__name``) and
    ``custom`` tools become functions with one string parameter; the answer
    must name them the client's way again (``namespace`` beside ``name``, or a
    ``custom_tool_call`` with its ``input`` text).
    """

    name: str
    namespace: str | None = None
    custom: bool = False


@dataclass(slots=True)
class ToolChoice:
    mode: str  # "auto" | "none" | "required" | "tool"
    name: str | None = None


@dataclass(slots=True)
class Request:
    """One generation request, independent of wire protocol.

    ``response_format`` is ``{"type": "json_object"}`` or
    ``{"type": "json_schema", "name", "schema", "strict"}``.
    """

    messages: list[Message]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[ToolDef] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict | None = None
    stream: bool = False
    user: str | None = None
    # Tools the node cannot run (hosted and server tools), by type, for x-infermesh-dropped-tools.
    dropped_tools: list[str] = field(default_factory=list)
    # node-facing tool name -> the client's own tool, for names that differ (see ClientTool).
    client_tools: dict[str, ClientTool] = field(default_factory=dict)


@dataclass(slots=True)
class Response:
    """A finished (non-streaming) generation: text and tool calls in order."""

    parts: list[TextPart | ToolCallPart]
    stop_reason: str
    usage: Usage
    stop_sequence: str | None = None


def settle_stop(stop_reason: str, has_tool_calls: bool) -> str:
    """OpenAI Responses and Gemini say "completed"/STOP even when the turn ends in
    tool calls; Chat and Anthropic clients need to hear "tool_use"."""
    if has_tool_calls and stop_reason == STOP_END:
        return STOP_TOOL_USE
    return stop_reason


# --- stream events -------------------------------------------------------
#
# Parsers turn node SSE events into these and hand each to an ``Emit``
# callback (the client renderer); no lists are built per event.


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ToolCallStart:
    key: int  # the node's own index for this call; renderers map it to theirs
    id: str
    name: str


@dataclass(slots=True)
class ToolCallDelta:
    key: int
    arguments: str  # a fragment of the JSON text


@dataclass(slots=True)
class UsageUpdate:
    usage: Usage  # cumulative so far, not an increment


@dataclass(slots=True)
class Finish:
    stop_reason: str
    stop_sequence: str | None = None


@dataclass(slots=True)
class StreamEnd:
    """The node signalled the end of the generation (message_stop, [DONE], ...)."""


@dataclass(slots=True)
class StreamError:
    """An error the node reported inside the stream."""

    message: str
    status: int = 500  # the HTTP status it would have had; picks the client's error type


StreamEvent = Union[TextDelta, ToolCallStart, ToolCallDelta, UsageUpdate, Finish, StreamEnd, StreamError]
Emit = Callable[[StreamEvent], None]
Price = Callable[[Usage], int]  # usage -> its cost in nano-dollars, at the serving model's prices

STREAM_END = StreamEnd()


class StreamRenderer:
    """Base of the client-side renderers: canonical events in, SSE bytes out.

    Subclasses implement one method per event type; ``handle`` dispatches by
    type through a table built once. Output accumulates in ``_out`` until the
    translator ``take``s it, so one upstream chunk yields one bytes object.
    """

    _dispatch: dict[type, Callable[..., None]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Build the dispatch table once per class, of plain functions.

        A per-instance table of bound methods would make every renderer a
        reference cycle (instance -> table -> method -> instance), left for the
        cyclic garbage collector once per streamed request.
        """
        super().__init_subclass__(**kwargs)
        cls._dispatch = {
            TextDelta: cls.on_text,
            ToolCallStart: cls.on_tool_start,
            ToolCallDelta: cls.on_tool_delta,
            UsageUpdate: cls.on_usage,
            Finish: cls.on_finish,
            StreamEnd: cls.on_end,
            StreamError: cls.on_error,
        }

    def __init__(self, price: Price | None = None) -> None:
        """``price``: when given, the final usage the client sees carries its cost (``usage.cost``)."""
        self.price = price
        self._out: list[bytes] = []
        self.output_chars = 0
        self.ended = False

    def handle(self, event: StreamEvent) -> None:
        if not self.ended:
            self._dispatch[type(event)](self, event)

    def take(self) -> bytes:
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def on_text(self, event: TextDelta) -> None:
        raise NotImplementedError

    def on_tool_start(self, event: ToolCallStart) -> None:
        raise NotImplementedError

    def on_tool_delta(self, event: ToolCallDelta) -> None:
        raise NotImplementedError

    def on_usage(self, event: UsageUpdate) -> None:
        raise NotImplementedError

    def on_finish(self, event: Finish) -> None:
        raise NotImplementedError

    def on_end(self, event: StreamEnd) -> None:
        raise NotImplementedError

    def on_error(self, event: StreamError) -> None:
        raise NotImplementedError
