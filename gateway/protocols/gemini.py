"""Google Gemini (generateContent / streamGenerateContent?alt=sse) <-> canonical.

Gemini is only ever a node protocol, so this module builds requests and reads
responses and streams; it never renders for a client.

Wire format: ``contents[{role: user|model, parts[{text} | {inlineData}
| {functionCall: {name, args}} | {functionResponse: {name, response}}]}]``,
``systemInstruction``, ``tools[{functionDeclarations}]``, ``toolConfig``,
``generationConfig``; replies are ``candidates[0].content.parts`` with a
``finishReason`` and ``usageMetadata``. A stream is ``data: {GenerateContentResponse}``
events with no end marker.

Choices made where Gemini and the other protocols disagree:

* Tool schemas go in ``parametersJsonSchema`` (full JSON Schema), not the
  OpenAPI-subset ``parameters`` that rejects ``additionalProperties`` and co.
* A function response needs the function's *name*, which Chat and Anthropic
  results do not carry: it is looked up from the earlier call with that id.
  The result text goes under ``output`` (or ``error`` for Anthropic
  ``is_error`` results), the keys Gemini documents.
* Gemini 3 rejects replayed function calls without a ``thoughtSignature``;
  other protocols cannot carry one, so replayed calls use the documented
  ``skip_thought_signature_validator`` sentinel.
* Images and documents must be inline (base64); URLs are rejected. Images
  a tool returned follow its function response as inline parts of the same
  turn (a function response carries text only).
* Gemini calls carry no id and pair function responses with calls by
  position: the responses of a turn are sent in the order of its calls,
  whatever order the client answered them in.
* Calls without an ``id`` get ``call_<request id>_<n>``; thought parts are dropped.
* Usage: thinking tokens (``thoughtsTokenCount``) are billed as output, and
  tool-use prompt tokens as input.
"""

from __future__ import annotations

import orjson

from gateway.protocols.canonical import (
    STOP_CONTENT_FILTER,
    STOP_END,
    STOP_MAX_TOKENS,
    Emit,
    FilePart,
    Finish,
    ImagePart,
    Part,
    ProtocolError,
    Request,
    Response,
    StreamError,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
    UsageUpdate,
    dumps,
    json_object,
    settle_stop,
    split_result,
)
from gateway.protocols.sse import SSEEvent
from gateway.protocols.usage import usage_from_gemini

SKIP_SIGNATURE = "skip_thought_signature_validator"

FINISH_FROM_GEMINI = {
    "STOP": STOP_END,
    "MAX_TOKENS": STOP_MAX_TOKENS,
    "SAFETY": STOP_CONTENT_FILTER,
    "RECITATION": STOP_CONTENT_FILTER,
    "BLOCKLIST": STOP_CONTENT_FILTER,
    "PROHIBITED_CONTENT": STOP_CONTENT_FILTER,
    "SPII": STOP_CONTENT_FILTER,
    "IMAGE_SAFETY": STOP_CONTENT_FILTER,
}
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}


# --- canonical -> node request --------------------------------------------


def request_to_gemini(req: Request, model: str) -> dict:
    """A canonical request as a generateContent body (the model goes in the URL)."""
    contents: list[dict] = []
    names: dict[str, str] = {}  # tool call id -> function name, for functionResponse
    order: dict[str, int] = {}  # tool call id -> its place among the calls of the latest model turn
    for i, msg in enumerate(req.messages):
        turn = msg.parts
        if msg.role == "assistant":
            order = {}
            calls = 0
            for part in turn:
                if isinstance(part, ToolCallPart):
                    order[part.id] = calls
                    calls += 1
        elif order:  # Gemini pairs responses with calls by position: answer in the order of the calls
            turn = sorted(turn, key=lambda p: order.get(p.tool_call_id, len(order)) if isinstance(p, ToolResultPart)
                          else len(order) + 1)
        try:
            parts = []
            for part in turn:
                converted = _part_to_gemini(part, names)
                if converted:
                    parts.append(converted)
            for part in msg.parts:  # images a tool returned follow the function responses, in the same turn
                if isinstance(part, ToolResultPart):
                    images = split_result(part.content)[1]
                    if images:
                        parts.extend(_inline(image) for image in images)
        except ProtocolError as exc:
            raise exc.under(f"messages[{i}]") from None
        if parts:
            contents.append({"role": "user" if msg.role == "user" else "model", "parts": parts})
    body: dict = {"contents": contents}
    if req.system:
        body["systemInstruction"] = {"parts": [{"text": req.system}]}
    if req.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t.name, t.description, t.parameters)
                                                   for t in req.tools]}]
    if req.tool_choice is not None:
        config: dict = {"mode": _MODES[req.tool_choice.mode]}
        if req.tool_choice.mode == "tool":
            config["allowedFunctionNames"] = [req.tool_choice.name]
        body["toolConfig"] = {"functionCallingConfig": config}
    generation: dict = {}
    for key, name in (("max_tokens", "maxOutputTokens"), ("temperature", "temperature"),
                      ("top_p", "topP"), ("top_k", "topK")):
        if getattr(req, key) is not None:
            generation[name] = getattr(req, key)
    if req.stop:
        generation["stopSequences"] = req.stop
    if req.response_format is not None:
        generation["responseMimeType"] = "application/json"
        if req.response_format["type"] == "json_schema":
            generation["responseJsonSchema"] = req.response_format.get("schema") or {}
    if generation:
        body["generationConfig"] = generation
    return body


def _declaration(name: str, description: str | None, parameters: dict) -> dict:
    out: dict = {"name": name, "parametersJsonSchema": parameters}
    if description:
        out["description"] = description
    return out


def _inline(part: ImagePart | FilePart) -> dict:
    if part.data is None:
        raise ProtocolError("Gemini models accept images and documents only as base64 data, not URLs")
    return {"inlineData": {"mimeType": part.media_type or "image/png", "data": part.data}}


def _part_to_gemini(part: Part, names: dict[str, str]) -> dict | None:
    """One part as a Gemini part (None for an empty text); an error names no field: the message is at fault."""
    if isinstance(part, TextPart):
        return {"text": part.text} if part.text else None
    if isinstance(part, (ImagePart, FilePart)):
        return _inline(part)
    if isinstance(part, ToolCallPart):
        names[part.id] = part.name
        return {"functionCall": {"name": part.name, "args": json_object(part.arguments, None)},
                "thoughtSignature": SKIP_SIGNATURE}
    name = names.get(part.tool_call_id)
    if name is None:
        raise ProtocolError(f"tool result {part.tool_call_id!r} has no earlier tool call")
    text = split_result(part.content)[0]
    return {"functionResponse": {"name": name, "response": {"error" if part.is_error else "output": text}}}


# --- responses ------------------------------------------------------------


def _finish(body: dict, candidate: dict) -> str | None:
    if (body.get("promptFeedback") or {}).get("blockReason"):
        return STOP_CONTENT_FILTER
    reason = candidate.get("finishReason")
    if not reason or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    return FINISH_FROM_GEMINI.get(reason, STOP_END)


def response_from_gemini(body: dict, request_id: str) -> Response:
    """A generateContent reply as a canonical :class:`Response` (first candidate only)."""
    candidate = (body.get("candidates") or [{}])[0]
    parts: list[TextPart | ToolCallPart] = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "functionCall" in part:
            call = part["functionCall"]
            calls = sum(isinstance(p, ToolCallPart) for p in parts)  # ids match the stream parser's
            parts.append(ToolCallPart(call.get("id") or f"call_{request_id}_{calls}", call.get("name") or "",
                                      dumps(call.get("args") or {})))
        elif part.get("text") and not part.get("thought"):
            parts.append(TextPart(part["text"]))
    has_calls = any(isinstance(p, ToolCallPart) for p in parts)
    stop = settle_stop(_finish(body, candidate) or STOP_END, has_calls)
    return Response(parts, stop, usage_from_gemini(body.get("usageMetadata")) or Usage())


class GeminiStreamParser:
    """``streamGenerateContent?alt=sse`` events -> canonical events.

    Each event is a whole GenerateContentResponse; a function call arrives
    complete in one part, so it becomes a start plus one argument fragment.
    Gemini sends no end marker: the translator's ``finish`` ends the stream.
    """

    __slots__ = ("_emit", "_request_id", "_calls", "usage")

    def __init__(self, request_id: str, emit: Emit) -> None:
        self._emit = emit
        self._request_id = request_id
        self._calls = 0
        self.usage: Usage | None = None

    def parse(self, event: SSEEvent) -> None:
        if not event.data:
            return
        body = orjson.loads(event.data)
        if isinstance(body, list):  # a stream opened without alt=sse is a JSON array
            body = body[0] if body else {}
        emit = self._emit
        error = body.get("error")
        if error:
            emit(StreamError(error.get("message") or "upstream stream error", error.get("code") or 500))
            return
        # Usage first: every chunk repeats the prompt count, so a Messages client's
        # message_start (rendered with the first text) can carry the input tokens.
        if body.get("usageMetadata"):
            self.usage = usage_from_gemini(body["usageMetadata"]) or Usage()
            emit(UsageUpdate(self.usage))
        candidate = (body.get("candidates") or [{}])[0]
        for part in (candidate.get("content") or {}).get("parts") or ():
            if "functionCall" in part:
                call = part["functionCall"]
                key = self._calls
                self._calls += 1
                emit(ToolCallStart(key, call.get("id") or f"call_{self._request_id}_{key}", call.get("name") or ""))
                emit(ToolCallDelta(key, dumps(call.get("args") or {})))
            elif part.get("text") and not part.get("thought"):
                emit(TextDelta(part["text"]))
        stop = _finish(body, candidate)
        if stop is not None:
            emit(Finish(settle_stop(stop, self._calls > 0)))
