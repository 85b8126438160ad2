"""Anthropic Messages <-> canonical: requests, responses and usage.

The stream parser and renderer live in ``anthropic_stream.py``.

Choices made where Anthropic and the other protocols disagree:

* Thinking (``thinking``/``redacted_thinking`` blocks, the ``thinking``
  request option) has no portable form: it is dropped when translating away
  from Anthropic, in requests, responses and streams alike.
* Usage: Anthropic's ``input_tokens`` excludes cache reads and cache writes;
  the canonical input includes both (cache writes are billed as ordinary
  input), and cache reads are the canonical ``cached_tokens``.
* ``temperature`` is clamped to Anthropic's 0..1 range; a missing
  ``max_tokens`` becomes ``DEFAULT_MAX_TOKENS`` because Anthropic requires one.
* ``response_format`` (JSON mode) cannot be expressed and is rejected.
* A ``system`` (or ``developer``) message inside ``messages`` (Claude Code
  sends them for model ids that are not Claude's) joins the system prompt,
  after the top-level ``system``.
* Server tools (``web_search_*``, ``code_execution_*``, ``bash_*``,
  ``text_editor_*``, ``mcp_toolset``, ...: every tool with a ``type`` other
  than ``custom``) exist only on Anthropic: they are dropped for other nodes,
  named in ``x-infermesh-dropped-tools``, and so are the blocks they left in
  the history (``server_tool_use``, ``*_tool_result``).
* Fields with no meaning elsewhere are dropped: ``cache_control``,
  ``thinking`` (incl. ``adaptive``), ``context_management``,
  ``output_config``, ``service_tier``, ``container``, ``mcp_servers``.
  ``metadata.user_id`` becomes the node's end-user id only when it fits
  OpenAI's 64 characters (Claude Code's is a longer JSON text of device ids).
"""

from __future__ import annotations

import orjson

from gateway.protocols.canonical import (
    DEFAULT_MAX_TOKENS,
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
    dumps,
    json_object,
)
from gateway.protocols.usage import usage_from_anthropic, usage_to_anthropic

STOP_FROM_ANTHROPIC = {
    "end_turn": STOP_END,
    "max_tokens": STOP_MAX_TOKENS,
    "stop_sequence": STOP_SEQUENCE,
    "tool_use": STOP_TOOL_USE,
    "refusal": STOP_CONTENT_FILTER,
    "pause_turn": STOP_END,
    "model_context_window_exceeded": STOP_MAX_TOKENS,
}
STOP_TO_ANTHROPIC = {
    STOP_END: "end_turn",
    STOP_MAX_TOKENS: "max_tokens",
    STOP_SEQUENCE: "stop_sequence",
    STOP_TOOL_USE: "tool_use",
    STOP_CONTENT_FILTER: "refusal",
}
# Blocks with no portable form: thinking, and what server tools left in the history.
DROPPED_BLOCKS = frozenset({
    "thinking", "redacted_thinking", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
    "code_execution_tool_result", "bash_code_execution_tool_result", "text_editor_code_execution_tool_result",
    "tool_search_tool_result", "mcp_tool_use", "mcp_tool_result", "container_upload",
})
INSTRUCTION_ROLES = frozenset({"system", "developer"})
_MAX_USER_ID = 64


# --- client request -> canonical -----------------------------------------


def request_from_messages(body: dict) -> Request:
    """A Messages request body (already validated) as a canonical :class:`Request`."""
    messages: list[Message] = []
    system = _system_text(body.get("system"))
    instructions = [system] if system else []
    for i, msg in enumerate(body.get("messages") or ()):
        role = msg.get("role")
        if role in INSTRUCTION_ROLES:
            text = _system_text(msg.get("content"))
            if text:
                instructions.append(text)
            continue
        if role not in ("user", "assistant"):
            raise ProtocolError(f"unsupported message role {role!r}", f"messages[{i}].role")
        try:
            parts = _parts_from_content(msg.get("content"))
        except ProtocolError as exc:
            raise exc.under(f"messages[{i}]") from None
        append_parts(messages, role, parts)
    metadata = body.get("metadata") or {}
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    tools: list[ToolDef] = []
    dropped: list[str] = []
    for tool in body.get("tools") or ():
        if tool.get("type") in (None, "custom"):
            tools.append(_tool_from_anthropic(tool))
        else:
            dropped.append(tool["type"])
    return Request(
        messages=messages,
        system="\n\n".join(instructions) or None,
        max_tokens=body.get("max_tokens"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        top_k=body.get("top_k"),
        stop=list(body.get("stop_sequences") or ()),
        tools=tools,
        tool_choice=_choice_from_anthropic(body.get("tool_choice")),
        parallel_tool_calls=False if (body.get("tool_choice") or {}).get("disable_parallel_tool_use") else None,
        stream=bool(body.get("stream")),
        user=user if isinstance(user, str) and len(user) <= _MAX_USER_ID else None,
        dropped_tools=dropped,
    )


def _system_text(system: object) -> str:
    """A system prompt (string or text blocks, ``cache_control`` ignored) as one text."""
    if isinstance(system, list):
        return "\n\n".join(block.get("text") or "" for block in system if isinstance(block, dict))
    return system if isinstance(system, str) else ""


def _parts_from_content(content: object) -> list[Part]:
    """A message's ``content`` as parts; an error's path starts at ``content`` (``ProtocolError.under``)."""
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[Part] = []
    for j, block in enumerate(content or ()):
        kind = block.get("type")
        try:
            if kind == "text":
                parts.append(TextPart(block.get("text") or ""))
            elif kind == "image":
                parts.append(_image_from_source(block.get("source") or {}))
            elif kind == "document":
                parts.append(_document_from_source(block))
            elif kind == "tool_use":
                parts.append(ToolCallPart(block.get("id") or "", block.get("name") or "",
                                          dumps(block.get("input") or {})))
            elif kind == "tool_result":
                parts.append(ToolResultPart(block.get("tool_use_id") or "", _result_content(block.get("content")),
                                            bool(block.get("is_error"))))
            elif kind not in DROPPED_BLOCKS:
                raise ProtocolError(f"content block type {kind!r} cannot be translated for this model", "type")
        except ProtocolError as exc:
            raise exc.under(f"content[{j}]") from None
    return parts


def _image_from_source(source: dict) -> ImagePart:
    if source.get("type") == "base64":
        return ImagePart(source.get("media_type"), data=source.get("data") or "")
    if source.get("type") == "url":
        return ImagePart(None, url=source.get("url") or "")
    raise ProtocolError("image source must be base64 or url to be translated", "source")


def _document_from_source(block: dict) -> Part:
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "base64":
        return FilePart(source.get("media_type") or "application/pdf", data=source.get("data") or "",
                        filename=block.get("title"))
    if kind == "url":
        return FilePart("application/pdf", url=source.get("url") or "", filename=block.get("title"))
    if kind == "text":
        return TextPart(source.get("data") or "")
    raise ProtocolError(f"document source type {kind!r} cannot be translated", "source.type")


def _result_content(content: object) -> list[TextPart | ImagePart]:
    """A tool_result's ``content``; an error's path starts at ``content``."""
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    out: list[TextPart | ImagePart] = []
    for k, block in enumerate(content):
        try:
            if block.get("type") == "text":
                out.append(TextPart(block.get("text") or ""))
            elif block.get("type") == "image":
                out.append(_image_from_source(block.get("source") or {}))
            else:
                raise ProtocolError("tool results can carry only text and images here", "type")
        except ProtocolError as exc:
            raise exc.under(f"content[{k}]") from None
    return out


def _tool_from_anthropic(tool: dict) -> ToolDef:
    return ToolDef(tool.get("name") or "", tool.get("description"),
                   tool.get("input_schema") or {"type": "object", "properties": {}})


def _choice_from_anthropic(choice: object) -> ToolChoice | None:
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "tool":
        return ToolChoice("tool", choice.get("name"))
    return ToolChoice({"auto": "auto", "any": "required", "none": "none"}.get(kind, "auto"))


# --- canonical -> node request --------------------------------------------


def request_to_messages(req: Request, model: str) -> dict:
    """A canonical request as a Messages body for an Anthropic node."""
    if req.response_format is not None:
        raise ProtocolError("response_format cannot be translated for Anthropic models", "response_format")
    messages = []
    for i, msg in enumerate(req.messages):
        # One loop per turn, no comprehension or sort key (a frame each, for every turn of a session).
        # Anthropic wants a user turn's tool_result blocks before its other content: ``later`` holds the rest.
        blocks: list[dict] = []
        later: list[dict] = []
        try:
            for part in msg.parts:
                if isinstance(part, TextPart) and not part.text:
                    continue
                block = _block_to_anthropic(part)
                if msg.role == "user" and block["type"] != "tool_result":
                    later.append(block)
                else:
                    blocks.append(block)
        except ProtocolError as exc:
            raise exc.under(f"messages[{i}]") from None
        blocks += later
        if blocks:
            messages.append({"role": msg.role, "content": blocks})
    body: dict = {"model": model, "max_tokens": req.max_tokens or DEFAULT_MAX_TOKENS, "messages": messages}
    if req.system:
        body["system"] = req.system
    if req.temperature is not None:
        body["temperature"] = min(max(req.temperature, 0.0), 1.0)
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.top_k is not None:
        body["top_k"] = req.top_k
    if req.stop:
        body["stop_sequences"] = req.stop
    if req.tools:
        body["tools"] = [_tool_to_anthropic(t) for t in req.tools]
    choice = _choice_to_anthropic(req.tool_choice, req.parallel_tool_calls)
    if choice is not None:
        body["tool_choice"] = choice
    if req.user:
        body["metadata"] = {"user_id": req.user}
    if req.stream:
        body["stream"] = True
    return body


def _block_to_anthropic(part: Part) -> dict:
    """One part as a Messages block; an error's path is relative to the message (``tool_calls``)."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        return {"type": "image", "source": _source(part.media_type, part.data, part.url)}
    if isinstance(part, FilePart):
        block = {"type": "document", "source": _source(part.media_type, part.data, part.url)}
        if part.filename:
            block["title"] = part.filename
        return block
    if isinstance(part, ToolCallPart):
        return {"type": "tool_use", "id": part.id, "name": part.name,
                "input": json_object(part.arguments, "tool_calls")}
    content: list[dict] = []
    for p in part.content:
        if not (isinstance(p, TextPart) and not p.text):
            content.append(_block_to_anthropic(p))
    block = {"type": "tool_result", "tool_use_id": part.tool_call_id, "content": content}
    if part.is_error:
        block["is_error"] = True
    return block


def _source(media_type: str | None, data: str | None, url: str | None) -> dict:
    if url is not None:
        return {"type": "url", "url": url}
    return {"type": "base64", "media_type": media_type or "image/png", "data": data or ""}


def _tool_to_anthropic(tool: ToolDef) -> dict:
    out: dict = {"name": tool.name, "input_schema": tool.parameters}
    if tool.description:
        out["description"] = tool.description
    return out


def _choice_to_anthropic(choice: ToolChoice | None, parallel: bool | None) -> dict | None:
    if choice is None:
        return {"type": "auto", "disable_parallel_tool_use": True} if parallel is False else None
    if choice.mode == "none":
        return {"type": "none"}
    out = ({"type": "tool", "name": choice.name} if choice.mode == "tool"
           else {"type": "any" if choice.mode == "required" else "auto"})
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


# --- responses ------------------------------------------------------------


def response_from_messages(body: dict) -> Response:
    """A node's Messages response as a canonical :class:`Response`; thinking is dropped."""
    parts: list[TextPart | ToolCallPart] = []
    for block in body.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            parts.append(TextPart(block.get("text") or ""))
        elif kind == "tool_use":
            parts.append(ToolCallPart(block.get("id") or "", block.get("name") or "",
                                      dumps(block.get("input") or {})))
    stop = STOP_FROM_ANTHROPIC.get(body.get("stop_reason") or "end_turn", STOP_END)
    return Response(parts, stop, usage_from_anthropic(body.get("usage")) or Usage(), body.get("stop_sequence"))


def tool_input(arguments: str) -> dict:
    """Arguments from a non-Anthropic model as the object a tool_use block needs.

    Models behind OpenAI-compatible nodes occasionally emit invalid JSON; the
    text is then kept under ``"arguments"`` rather than failing a paid reply.
    """
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def response_to_messages(resp: Response, model: str, request_id: str) -> dict:
    """A canonical response as the client's Messages ``message`` object."""
    content: list[dict] = []
    for part in resp.parts:
        if isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        else:
            content.append({"type": "tool_use", "id": part.id, "name": part.name,
                            "input": tool_input(part.arguments)})
    return {
        "id": "msg_" + request_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_TO_ANTHROPIC.get(resp.stop_reason, "end_turn"),
        "stop_sequence": resp.stop_sequence,
        "usage": usage_to_anthropic(resp.usage),
    }
