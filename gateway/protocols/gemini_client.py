"""Gemini as a *client* protocol: a generateContent request in, a GenerateContentResponse out.

The node side of Gemini (canonical -> generateContent, replies -> canonical)
is ``gemini.py``; this module is the other direction, for the ``google-genai``
SDK and Gemini CLI. Streams are rendered by ``gemini_stream.py``.

Choices made where Gemini and the other protocols disagree:

* Roles: ``user`` (and the legacy ``function``) are the user turn, ``model``
  the assistant turn. ``systemInstruction`` becomes the system prompt.
* Function calls keep their ``id``. Gemini's own API sends calls without one;
  those get ``call_<n>`` by position, and a ``functionResponse`` without an id
  answers the earliest unanswered call of the same name, so a history replayed
  to an OpenAI or Anthropic node has matching pairs. Replies carry the node's
  call id, which the SDK and Gemini CLI echo back in ``functionResponse.id``.
* ``functionResponse.response`` is an object; OpenAI and Anthropic tool
  results are text: ``output`` (or ``error``) when it is a string, otherwise
  the object as JSON text.
* Declarations: ``parametersJsonSchema`` is JSON Schema already; the older
  ``parameters`` (OpenAPI subset, upper-case types, ``nullable``) is converted
  to JSON Schema. Non-function tools (``googleSearch``, ``codeExecution``,
  ...) exist only on Gemini nodes: dropped for the others and named in
  ``x-infermesh-dropped-tools``.
* ``generationConfig``: ``maxOutputTokens``, ``temperature``, ``topP``,
  ``topK``, ``stopSequences``, ``responseMimeType: application/json`` with
  ``responseSchema``/``responseJsonSchema`` map to the canonical request.
  ``thinkingConfig``, ``safetySettings``, penalties and seeds have no
  canonical form: they reach Gemini nodes untouched (pass-through) and are
  dropped for the others, as Anthropic's ``thinking`` is. ``candidateCount``
  above 1 is refused.
* Thought parts (``thought: true``) in a replayed history are dropped.
"""

from __future__ import annotations

from typing import Any

from gateway.protocols.canonical import (
    STOP_CONTENT_FILTER,
    STOP_MAX_TOKENS,
    FilePart,
    ImagePart,
    Message,
    Part,
    ProtocolError,
    Request,
    Response,
    TextPart,
    ToolCallPart,
    ToolChoice,
    ToolDef,
    ToolResultPart,
    append_parts,
    dumps,
    json_object,
)
from gateway.protocols.usage import usage_to_gemini

FINISH_TO_GEMINI = {STOP_MAX_TOKENS: "MAX_TOKENS", STOP_CONTENT_FILTER: "SAFETY"}  # everything else: STOP
_ROLES = {"user": "user", "function": "user", "model": "assistant"}
_CHOICE_MODES = {"AUTO": "auto", "MODE_UNSPECIFIED": "auto", "VALIDATED": "auto", "NONE": "none", "ANY": "required"}
_MAX_TOKENS = 1_000_000
_FUNCTION_KEYS = frozenset({"functionDeclarations", "function_declarations"})


# --- request: generateContent -> canonical --------------------------------------


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


_SNAKE: dict[str, str] = {}


def _get(obj: dict, name: str) -> Any:
    """A field by its JSON name or its proto name (``maxOutputTokens`` / ``max_output_tokens``).

    Google's API accepts both, and the google-genai SDK sends some fields in
    snake case (``parameters_json_schema``), so every reader here accepts both.
    """
    value = obj.get(name)
    if value is None:
        snake = _SNAKE.get(name)
        if snake is None:
            snake = _SNAKE[name] = _snake(name)
        value = obj.get(snake)
    return value


def request_from_gemini(body: dict) -> Request:
    """A generateContent body (model and stream are in the URL, not here) as a canonical request."""
    messages: list[Message] = []
    calls = _CallIds()
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise ProtocolError("contents is required and must be a non-empty array", "contents")
    for i, content in enumerate(contents):
        try:
            _add_content(content, calls, messages)
        except ProtocolError as exc:
            raise exc.under(f"contents[{i}]") from None
    if not messages:
        raise ProtocolError("contents has no content", "contents")
    request = Request(messages, system=_system(_get(body, "systemInstruction"), "systemInstruction"))
    _generation(_get(body, "generationConfig"), request)
    request.tools = _tools(body.get("tools"), request.dropped_tools)
    request.tool_choice = _tool_choice(_get(body, "toolConfig"))
    return request


def _add_content(content: Any, calls: _CallIds, messages: list[Message]) -> None:
    """One content (a turn) into the conversation; an error's path is relative to it."""
    if not isinstance(content, dict):
        raise ProtocolError("each content must be an object")
    role = _ROLES.get(content.get("role") or "user")
    if role is None:
        raise ProtocolError("role must be 'user' or 'model'", "role")
    raw_parts = content.get("parts")
    if not isinstance(raw_parts, list):
        raise ProtocolError("parts must be an array", "parts")
    parts: list[Part] = []
    for j, raw in enumerate(raw_parts):
        try:
            part = _part(raw, calls)
        except ProtocolError as exc:
            raise exc.under(f"parts[{j}]") from None
        if part is not None:
            parts.append(part)
    append_parts(messages, role, parts)


class _CallIds:
    """Ids for function calls that carry none, and the call each id-less response answers."""

    def __init__(self) -> None:
        self.count = 0
        self.open: list[tuple[str, str]] = []  # (name, id) of calls not yet answered, oldest first

    def call(self, call_id: Any, name: str) -> str:
        self.count += 1
        if not isinstance(call_id, str) or not call_id:
            call_id = f"call_{self.count}"
        self.open.append((name, call_id))
        return call_id

    def answer(self, call_id: Any, name: str) -> str:
        if isinstance(call_id, str) and call_id:
            self.open = [entry for entry in self.open if entry[1] != call_id]
            return call_id
        for n, (open_name, open_id) in enumerate(self.open):
            if open_name == name:
                del self.open[n]
                return open_id
        raise ProtocolError(f"functionResponse {name!r} answers no earlier functionCall", None)


def _part(raw: Any, calls: _CallIds) -> Part | None:
    """One part (None for what has no canonical form); an error's path is relative to the part."""
    if not isinstance(raw, dict):
        raise ProtocolError("each part must be an object")
    if raw.get("thought"):
        return None
    if "text" in raw:
        text = raw["text"]
        if not isinstance(text, str):
            raise ProtocolError("text must be a string", "text")
        return TextPart(text) if text else None
    # Each field looked up once (``_get`` tries both spellings): a part is read for every turn of a session.
    if (value := _get(raw, "inlineData")) is not None:
        data = _object(value, "inlineData")
        mime, payload = _get(data, "mimeType"), data.get("data")
        if not isinstance(mime, str) or not isinstance(payload, str):
            raise ProtocolError("inlineData needs mimeType and base64 data", "inlineData")
        return ImagePart(mime, data=payload) if mime.startswith("image/") else FilePart(mime, data=payload)
    if (value := _get(raw, "fileData")) is not None:
        data = _object(value, "fileData")
        mime, uri = _get(data, "mimeType") or "", _get(data, "fileUri")
        if not isinstance(uri, str) or not uri:
            raise ProtocolError("fileData needs a fileUri", "fileData")
        return FilePart(mime, url=uri) if mime and not mime.startswith("image/") else ImagePart(mime or None, url=uri)
    if (value := _get(raw, "functionCall")) is not None:
        call = _object(value, "functionCall")
        name = _name(call, "functionCall")
        args = call.get("args") or {}
        if not isinstance(args, dict):
            raise ProtocolError("args must be an object", "functionCall.args")
        return ToolCallPart(calls.call(call.get("id"), name), name, dumps(args))
    if (value := _get(raw, "functionResponse")) is not None:
        answer = _object(value, "functionResponse")
        name = _name(answer, "functionResponse")
        response = answer.get("response")
        if response is None:
            response = {}
        if not isinstance(response, dict):
            raise ProtocolError("response must be an object", "functionResponse.response")
        try:
            call_id = calls.answer(answer.get("id"), name)
        except ProtocolError as exc:
            raise exc.under("functionResponse") from None
        text, is_error = _result(response)
        return ToolResultPart(call_id, [TextPart(text)], is_error)
    if _get(raw, "executableCode") is not None or _get(raw, "codeExecutionResult") is not None:
        return None  # server-side code execution happens only on Gemini nodes
    raise ProtocolError("a part needs text, inlineData, fileData, functionCall or functionResponse")


def _object(value: Any, path: str | None) -> dict:
    """``value`` if it is an object; else the error at ``path`` (None: the element being read)."""
    if not isinstance(value, dict):
        raise ProtocolError("must be an object", path)
    return value


def _name(value: dict, path: str | None) -> str:
    """``value``'s non-empty ``name``; else the error at ``path.name`` (``name`` for the element being read)."""
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError("name is required", f"{path}.name" if path else "name")
    return name


def _result(response: dict) -> tuple[str, bool]:
    """A functionResponse's object as tool-result text; ``error`` marks a failed call."""
    if len(response) == 1:
        ((key, value),) = response.items()
        if isinstance(value, str) and key in ("output", "result", "content", "error"):
            return value, key == "error"
    return dumps(response), "error" in response and "output" not in response


def _system(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    content = _object(value, path)
    parts = content.get("parts")
    if not isinstance(parts, list):
        raise ProtocolError("parts must be an array", path + ".parts")
    texts = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            raise ProtocolError("the system instruction takes only text parts", f"{path}.parts[{j}]")
        texts.append(part["text"])
    return "\n".join(texts) or None


def _generation(config: Any, request: Request) -> None:
    if config is None:
        return
    config = _object(config, "generationConfig")
    path = "generationConfig."
    request.max_tokens = _int(config, "maxOutputTokens", path, 1, _MAX_TOKENS)
    request.temperature = _float(config, "temperature", path, 0, 2)
    request.top_p = _float(config, "topP", path, 0, 1)
    request.top_k = _int(config, "topK", path, 1, _MAX_TOKENS)
    count = _get(config, "candidateCount")
    if count is not None and count != 1:
        raise ProtocolError("only candidateCount 1 is supported", path + "candidateCount")
    stops = _get(config, "stopSequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > 16:
            raise ProtocolError("stopSequences must be an array of at most 16 strings", path + "stopSequences")
        request.stop = list(stops)
    if _get(config, "responseMimeType") == "application/json":
        schema = _get(config, "responseJsonSchema")
        if schema is None and _get(config, "responseSchema") is not None:
            schema = openapi_to_json_schema(_get(config, "responseSchema"))
        request.response_format = ({"type": "json_schema", "name": "response", "schema": schema, "strict": False}
                                   if isinstance(schema, dict) else {"type": "json_object"})


def _int(config: dict, name: str, path: str, low: int, high: int) -> int | None:
    value = _get(config, name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(f"{name} must be an integer from {low} to {high}", path + name)
    return value


def _float(config: dict, name: str, path: str, low: float, high: float) -> float | None:
    value = _get(config, name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ProtocolError(f"{name} must be a number from {low} to {high}", path + name)
    return value


def _tools(tools: Any, dropped: list[str]) -> list[ToolDef]:
    """Function declarations as canonical tools; the other tool kinds (``googleSearch``, ...) go
    into ``dropped``, named as the client named them, for ``x-infermesh-dropped-tools``."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ProtocolError("tools must be an array", "tools")
    out: list[ToolDef] = []
    for i, tool in enumerate(tools):
        try:
            _add_declarations(tool, out, dropped)
        except ProtocolError as exc:
            raise exc.under(f"tools[{i}]") from None
    return out


def _add_declarations(tool: Any, out: list[ToolDef], dropped: list[str]) -> None:
    """One tool object's function declarations into ``out``; an error's path is relative to the tool."""
    tool = _object(tool, None)
    dropped.extend(key for key in tool if key not in _FUNCTION_KEYS)
    for j, decl in enumerate(_get(tool, "functionDeclarations") or ()):
        try:
            decl = _object(decl, None)
            schema = _get(decl, "parametersJsonSchema")
            if schema is None and decl.get("parameters") is not None:
                schema = openapi_to_json_schema(decl["parameters"])
            if schema is not None and not isinstance(schema, dict):
                raise ProtocolError("parameters must be an object", "parameters")
            description = decl.get("description")
            out.append(ToolDef(_name(decl, None), description if isinstance(description, str) else None,
                               schema or {"type": "object", "properties": {}}))
        except ProtocolError as exc:
            raise exc.under(f"functionDeclarations[{j}]") from None


def _tool_choice(config: Any) -> ToolChoice | None:
    if config is None:
        return None
    calling = _get(_object(config, "toolConfig"), "functionCallingConfig")
    if calling is None:
        return None
    calling = _object(calling, "toolConfig.functionCallingConfig")
    mode = _CHOICE_MODES.get(calling.get("mode") or "AUTO")
    if mode is None:
        raise ProtocolError("mode must be AUTO, ANY, NONE or VALIDATED", "toolConfig.functionCallingConfig.mode")
    names = _get(calling, "allowedFunctionNames")
    if mode == "required" and isinstance(names, list) and len(names) == 1 and isinstance(names[0], str):
        return ToolChoice("tool", names[0])
    return ToolChoice(mode)


_SCHEMA_KEYS = frozenset({"type", "format", "description", "enum", "properties", "required", "items", "anyOf",
                          "minimum", "maximum", "minItems", "maxItems", "minLength", "maxLength", "pattern",
                          "default", "title", "example"})
_CAMEL = {_snake(key): key for key in _SCHEMA_KEYS}


def openapi_to_json_schema(schema: Any) -> Any:
    """Gemini's OpenAPI-subset ``Schema`` (``type: OBJECT``, ``nullable``) as JSON Schema.

    ``propertyOrdering`` and other Gemini-only keys are dropped; the rest keeps its meaning.
    """
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        key = _CAMEL.get(key, key)
        if key not in _SCHEMA_KEYS:
            continue
        if key == "type" and isinstance(value, str):
            value = value.lower()
        elif key == "properties" and isinstance(value, dict):
            value = {name: openapi_to_json_schema(sub) for name, sub in value.items()}
        elif key == "items":
            value = openapi_to_json_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            value = [openapi_to_json_schema(sub) for sub in value]
        elif key == "example":
            key, value = "examples", [value]
        out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


# --- response: canonical -> GenerateContentResponse -------------------------------


def call_part(call_id: str, name: str, args: dict) -> dict:
    return {"functionCall": {"id": call_id, "name": name, "args": args}}


def call_args(arguments: str) -> dict:
    """Tool-call arguments as Gemini's ``args`` object; text that is not a JSON object is wrapped, not lost."""
    try:
        return json_object(arguments, "arguments")
    except ProtocolError:
        return {"arguments": arguments}


def response_to_gemini(response: Response, public_model: str, request_id: str) -> dict:
    parts: list[dict] = []
    for part in response.parts:
        if isinstance(part, TextPart):
            parts.append({"text": part.text})
        else:
            parts.append(call_part(part.id, part.name, call_args(part.arguments)))
    if not parts:
        parts.append({"text": ""})
    candidate = {"content": {"role": "model", "parts": parts},
                 "finishReason": FINISH_TO_GEMINI.get(response.stop_reason, "STOP"), "index": 0}
    return {"candidates": [candidate], "usageMetadata": usage_to_gemini(response.usage),
            "modelVersion": public_model, "responseId": request_id}


def count_tokens_passthrough(body: dict, upstream_model: str) -> dict:
    """A ``countTokens`` body for a Gemini node: a nested ``generateContentRequest`` names the node's model."""
    out = {key: value for key, value in body.items() if key != "fallback_models"}
    inner = _get(out, "generateContentRequest")
    if isinstance(inner, dict):
        out.pop("generate_content_request", None)
        out["generateContentRequest"] = {**inner, "model": "models/" + upstream_model}
    return out
