"""OpenAI Chat Completions <-> canonical: requests, responses and usage.

The stream parser and renderer live in ``openai_chat_stream.py``.

Choices made where Chat and the other protocols disagree:

* ``system`` and ``developer`` messages anywhere are joined into the one
  canonical system prompt (Anthropic and Gemini have only one, up front).
* Tool results become ``role: tool`` messages placed before any other content
  of the same user turn, because OpenAI requires them right after the
  assistant's ``tool_calls``. Chat tool results carry text only, and no error
  flag: an Anthropic ``is_error`` result is sent as its text, and images in a
  result follow in the user message after the tool messages.
* The node body uses ``max_completion_tokens`` (OpenAI's current name; the
  reasoning models reject ``max_tokens``).
* ``n`` > 1, audio and stored files (``file_id``) cannot be expressed
  elsewhere and are rejected; sampling knobs other protocols lack
  (``seed``, penalties, ``logprobs``) are dropped.
"""

from __future__ import annotations

import time

from gateway.protocols.canonical import (
    STOP_CONTENT_FILTER,
    STOP_END,
    STOP_MAX_TOKENS,
    STOP_SEQUENCE,
    STOP_TOOL_USE,
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
    Usage,
    append_parts,
    data_url,
    image_from_url,
    parse_data_url,
    split_result,
)
from gateway.protocols.usage import usage_from_chat, usage_to_chat

FINISH_FROM_CHAT = {
    "stop": STOP_END,
    "length": STOP_MAX_TOKENS,
    "tool_calls": STOP_TOOL_USE,
    "function_call": STOP_TOOL_USE,
    "content_filter": STOP_CONTENT_FILTER,
}
FINISH_TO_CHAT = {
    STOP_END: "stop",
    STOP_SEQUENCE: "stop",
    STOP_MAX_TOKENS: "length",
    STOP_TOOL_USE: "tool_calls",
    STOP_CONTENT_FILTER: "content_filter",
}


# --- client request -> canonical -----------------------------------------


def request_from_chat(body: dict) -> Request:
    """A Chat Completions request body as a canonical :class:`Request`."""
    if (body.get("n") or 1) != 1:
        raise ProtocolError("only n=1 can be translated for this model", "n")
    system: list[str] = []
    messages: list[Message] = []
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise ProtocolError("messages must be a list", "messages")
    for i, msg in enumerate(raw_messages):
        try:
            _add_message(msg, system, messages)
        except ProtocolError as exc:
            raise exc.under(f"messages[{i}]") from None
    tools: list[ToolDef] = []
    for i, tool in enumerate(body.get("tools") or ()):
        try:
            tools.append(_tool_from_chat(tool))
        except ProtocolError as exc:
            raise exc.under(f"tools[{i}]") from None
    stop = body.get("stop")
    return Request(
        messages=messages,
        system="\n\n".join(system) if system else None,
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        stop=[stop] if isinstance(stop, str) else list(stop or ()),
        tools=tools,
        tool_choice=_choice_from_chat(body.get("tool_choice")),
        parallel_tool_calls=body.get("parallel_tool_calls"),
        response_format=_format_from_chat(body.get("response_format")),
        stream=bool(body.get("stream")),
        user=body.get("user"),
    )


def _add_message(msg: object, system: list[str], messages: list[Message]) -> None:
    """One Chat message into the system prompt or the conversation; an error's path is relative to it."""
    if not isinstance(msg, dict):
        raise ProtocolError("each message must be an object")
    role = msg.get("role")
    content = msg.get("content")
    if role in ("system", "developer"):
        system.append(_text_only(content))
    elif role == "user":
        append_parts(messages, "user", _user_parts(content))
    elif role == "assistant":
        append_parts(messages, "assistant", _assistant_parts(msg))
    elif role == "tool":
        append_parts(messages, "user", [ToolResultPart(str(msg.get("tool_call_id") or ""),
                                                       [TextPart(_text_only(content))])])
    else:
        raise ProtocolError(f"unsupported message role {role!r}", "role")


def _text_only(content: object) -> str:
    """A message's ``content`` that may carry only text, joined; an error's path starts at ``content``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise ProtocolError("only text content is allowed here", f"content[{j}]")
            texts.append(part.get("text") or "")
        return "".join(texts)
    raise ProtocolError("content must be a string or a list of parts", "content")


def _user_parts(content: object) -> list[Part]:
    """A user message's ``content`` as parts; an error's path starts at ``content``."""
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise ProtocolError("content must be a string or a list of parts", "content")
    parts: list[Part] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(TextPart(part.get("text") or ""))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise ProtocolError("image_url.url is required", f"content[{j}].image_url.url")
            parts.append(image_from_url(url))
        elif kind == "file":
            file = part.get("file") or {}
            inline = parse_data_url(file.get("file_data") or "")
            if inline is None:
                raise ProtocolError("only inline file_data (a base64 data URL) can be translated",
                                    f"content[{j}].file")
            parts.append(FilePart(inline[0], data=inline[1], filename=file.get("filename")))
        else:
            raise ProtocolError(f"content part type {kind!r} cannot be translated for this model",
                                f"content[{j}].type")
    return parts


def _assistant_parts(msg: dict) -> list[Part]:
    """An assistant message's text and tool calls as parts; an error's path is relative to the message."""
    content = msg.get("content")
    parts: list[Part] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("text", "refusal"):
                parts.append(TextPart(part.get("text") or part.get("refusal") or ""))
    elif content:
        parts.append(TextPart(_text_only(content)))
    for k, call in enumerate(msg.get("tool_calls") or ()):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not fn.get("name"):
            raise ProtocolError("tool call needs function.name", f"tool_calls[{k}].function")
        parts.append(ToolCallPart(str(call.get("id") or ""), fn["name"], fn.get("arguments") or ""))
    return parts


def _tool_from_chat(tool: dict) -> ToolDef:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if tool.get("type", "function") != "function" or not isinstance(fn, dict) or not fn.get("name"):
        raise ProtocolError("only function tools with a name can be translated")
    return ToolDef(fn["name"], fn.get("description"),
                   fn.get("parameters") or {"type": "object", "properties": {}}, fn.get("strict"))


def _choice_from_chat(choice: object) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise ProtocolError(f"unknown tool_choice {choice!r}", "tool_choice")
        return ToolChoice(choice)
    name = ((choice or {}).get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not name:
        raise ProtocolError("tool_choice must name a function", "tool_choice")
    return ToolChoice("tool", name)


def _format_from_chat(fmt: object) -> dict | None:
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        schema = fmt.get("json_schema") or {}
        return {"type": "json_schema", "name": schema.get("name") or "response",
                "schema": schema.get("schema") or {}, "strict": schema.get("strict")}
    raise ProtocolError(f"unknown response_format type {fmt['type']!r}", "response_format.type")


# --- canonical -> node request --------------------------------------------


def request_to_chat(req: Request, model: str) -> dict:
    """A canonical request as a Chat Completions body for an OpenAI node."""
    messages: list[dict] = []
    if req.system:
        messages.append({"role": "system", "content": req.system})
    for i, msg in enumerate(req.messages):
        if msg.role == "assistant":
            messages.append(_assistant_to_chat(msg))
            continue
        try:
            _add_user_turn(msg, messages)
        except ProtocolError as exc:
            raise exc.under(f"messages[{i}]") from None
    body: dict = {"model": model, "messages": messages}
    if req.max_tokens is not None:
        body["max_completion_tokens"] = req.max_tokens
    for key in ("temperature", "top_p", "parallel_tool_calls", "user"):
        value = getattr(req, key)
        if value is not None:
            body[key] = value
    if req.stop:
        body["stop"] = req.stop
    if req.tools:
        body["tools"] = [_tool_to_chat(t) for t in req.tools]
    if req.tool_choice is not None:
        choice = req.tool_choice
        body["tool_choice"] = ({"type": "function", "function": {"name": choice.name}}
                               if choice.mode == "tool" else choice.mode)
    if req.response_format is not None:
        fmt = req.response_format
        body["response_format"] = fmt if fmt["type"] == "json_object" else {
            "type": "json_schema",
            "json_schema": {k: fmt[k] for k in ("name", "schema", "strict") if fmt.get(k) is not None},
        }
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _add_user_turn(msg: Message, messages: list[dict]) -> None:
    """A user turn as Chat messages: one ``tool`` message per result, then the rest as one user message."""
    content: list[dict] = []
    for part in msg.parts:
        if isinstance(part, ToolResultPart):
            text, images = split_result(part.content)
            if images and not text:
                text = "(the result is the image in the next message)"
            messages.append({"role": "tool", "tool_call_id": part.tool_call_id, "content": text})
            if images:
                content.append({"type": "text", "text": f"(images returned by tool call {part.tool_call_id})"})
                content.extend(_user_part_to_chat(image) for image in images)
        else:
            content.append(_user_part_to_chat(part))
    if content:
        if len(content) == 1 and content[0]["type"] == "text":
            messages.append({"role": "user", "content": content[0]["text"]})
        else:
            messages.append({"role": "user", "content": content})


def _assistant_to_chat(msg: Message) -> dict:
    """An assistant turn as one Chat message: its texts joined, its tool calls as ``tool_calls``.

    One loop over the parts (a generator and a comprehension cost a frame each, per turn of the session).
    """
    texts: list[str] = []
    calls: list[dict] = []
    for p in msg.parts:
        if isinstance(p, TextPart):
            texts.append(p.text)
        elif isinstance(p, ToolCallPart):
            calls.append({"id": p.id, "type": "function", "function": {"name": p.name,
                                                                       "arguments": p.arguments or "{}"}})
    out: dict = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        out["tool_calls"] = calls
    return out


def _user_part_to_chat(part: Part) -> dict:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        url = part.url or data_url(part.media_type, part.data or "")
        return {"type": "image_url", "image_url": {"url": url}}
    if isinstance(part, FilePart):
        if part.data is None:
            raise ProtocolError("chat nodes accept documents only as base64 data")
        return {"type": "file", "file": {"file_data": data_url(part.media_type, part.data),
                                         "filename": part.filename or "document.pdf"}}
    raise ProtocolError("a tool call cannot appear in a user message")


def _tool_to_chat(tool: ToolDef) -> dict:
    fn: dict = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        fn["description"] = tool.description
    if tool.strict is not None:
        fn["strict"] = tool.strict
    return {"type": "function", "function": fn}


# --- responses ------------------------------------------------------------


def response_from_chat(body: dict) -> Response:
    """A node's chat.completion as a canonical :class:`Response` (first choice only)."""
    choices = body.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    parts: list[TextPart | ToolCallPart] = []
    text = message.get("content") or message.get("refusal")
    if text:
        parts.append(TextPart(text))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        parts.append(ToolCallPart(call.get("id") or "", fn.get("name") or "", fn.get("arguments") or ""))
    stop = FINISH_FROM_CHAT.get(choice.get("finish_reason") or "stop", STOP_END)
    return Response(parts, stop, usage_from_chat(body.get("usage")) or Usage())


def response_to_chat(resp: Response, model: str, request_id: str) -> dict:
    """A canonical response as the client's chat.completion object."""
    text = "".join(p.text for p in resp.parts if isinstance(p, TextPart))
    message: dict = {"role": "assistant", "content": text or None, "refusal": None}
    calls = [{"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments}}
             for p in resp.parts if isinstance(p, ToolCallPart)]
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-" + request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": FINISH_TO_CHAT.get(resp.stop_reason, "stop")}],
        "usage": usage_to_chat(resp.usage),
    }
