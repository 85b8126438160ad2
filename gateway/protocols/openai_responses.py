"""OpenAI Responses <-> canonical: requests, responses and usage.

The stream parser and renderer live in ``openai_responses_stream.py``.

Choices made where Responses and the other protocols disagree:

* The gateway keeps no conversation state: ``previous_response_id``,
  ``conversation`` and ``item_reference`` inputs are rejected; ``reasoning``
  and ``compaction`` input items are dropped (their content is encrypted for
  OpenAI's models). Requests sent to a Responses node set ``store: false``
  for the same reason.
* ``namespace``, ``custom`` and hosted tools: see ``responses_tools.py``.
  Function tools sent to a Responses node get ``strict: false`` unless the
  client chose, because the Responses API defaults to strict schemas that
  ordinary Chat/Anthropic schemas fail.
* Fields with no meaning elsewhere are dropped: ``reasoning``, ``include``,
  ``store``, ``prompt_cache_key``, ``client_metadata``, ``metadata``,
  ``truncation``, ``service_tier``, ``text.verbosity``.
* Responses has no stop sequences: a request with ``stop`` is rejected there.
"""

from __future__ import annotations

import time

from gateway.protocols.canonical import (
    STOP_CONTENT_FILTER,
    ClientTool,
    STOP_END,
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
    Usage,
    append_parts,
    data_url,
    image_from_url,
    parse_data_url,
    settle_stop,
    split_result,
)
from gateway.protocols.responses_tools import (
    DROPPED_ITEMS,
    call_item,
    custom_arguments,
    flat_name,
    is_hosted,
    tools_from_responses,
)
from gateway.protocols.usage import usage_from_responses, usage_to_responses

_INCOMPLETE_FROM = {"max_output_tokens": STOP_MAX_TOKENS, "content_filter": STOP_CONTENT_FILTER}
_INCOMPLETE_TO = {STOP_MAX_TOKENS: "max_output_tokens", STOP_CONTENT_FILTER: "content_filter"}


# --- client request -> canonical -----------------------------------------


def request_from_responses(body: dict) -> Request:
    """A Responses request body (already validated) as a canonical :class:`Request`."""
    for key in ("previous_response_id", "conversation"):
        if body.get(key):
            raise ProtocolError(f"{key} needs server-side state, which this model's node cannot use", key)
    system: list[str] = []
    if body.get("instructions"):
        system.append(body["instructions"])
    messages: list[Message] = []
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for i, item in enumerate(items or ()):
        try:
            _add_item(item, messages, system)
        except ProtocolError as exc:
            raise exc.under(f"input[{i}]") from None
    text_format = ((body.get("text") or {}).get("format")) or {}
    tools, client_tools, dropped = tools_from_responses(body.get("tools") or [])
    return Request(
        messages=messages,
        system="\n\n".join(system) if system else None,
        max_tokens=body.get("max_output_tokens"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        tools=tools,
        tool_choice=_choice_from_responses(body.get("tool_choice"), client_tools),
        parallel_tool_calls=body.get("parallel_tool_calls"),
        response_format=_format_from_responses(text_format),
        stream=bool(body.get("stream")),
        user=body.get("safety_identifier") or body.get("user"),
        dropped_tools=dropped,
        client_tools=client_tools,
    )


def _add_item(item: dict, messages: list[Message], system: list[str]) -> None:
    """One input item into the system prompt or the conversation; an error's path is relative to it."""
    kind = item.get("type") or "message"
    if kind == "message":
        role = item.get("role")
        parts = _content_parts(item.get("content"), "content")
        if role in ("system", "developer"):
            system.append("".join(p.text for p in parts if isinstance(p, TextPart)))
        elif role in ("user", "assistant"):
            append_parts(messages, role, parts)
        else:
            raise ProtocolError(f"unsupported message role {role!r}", "role")
    elif kind == "function_call":
        name = flat_name(item.get("name") or "", item.get("namespace"))
        append_parts(messages, "assistant", [ToolCallPart(item.get("call_id") or "", name,
                                                          item.get("arguments") or "")])
    elif kind == "custom_tool_call":
        append_parts(messages, "assistant", [ToolCallPart(item.get("call_id") or "", item.get("name") or "",
                                                          custom_arguments(item.get("input") or ""))])
    elif kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output")
        if isinstance(output, str):
            content: list[Part] = [TextPart(output)]
        else:
            content = _content_parts(output, "output")
            if any(not isinstance(p, (TextPart, ImagePart)) for p in content):
                raise ProtocolError(f"{kind} can carry only text and images", "output")
        append_parts(messages, "user", [ToolResultPart(item.get("call_id") or "", content)])
    elif kind not in DROPPED_ITEMS:
        raise ProtocolError(f"input item type {kind!r} cannot be translated for this model", "type")


def _content_parts(content: object, path: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[Part] = []
    for j, part in enumerate(content or ()):
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            parts.append(TextPart(part.get("text") or ""))
        elif kind == "refusal":
            parts.append(TextPart(part.get("refusal") or ""))
        elif kind == "input_image" and part.get("image_url"):
            parts.append(image_from_url(part["image_url"]))
        elif kind == "input_file" and (part.get("file_data") or part.get("file_url")):
            parts.append(_file_part(part))
        else:
            raise ProtocolError(f"content part {kind!r} cannot be translated for this model "
                                "(stored file ids are not supported)", f"{path}[{j}]")
    return parts


def _file_part(part: dict) -> FilePart:
    inline = parse_data_url(part.get("file_data") or "")
    if inline is not None:
        return FilePart(inline[0], data=inline[1], filename=part.get("filename"))
    if part.get("file_data"):  # bare base64, as the Responses API also accepts
        return FilePart("application/pdf", data=part["file_data"], filename=part.get("filename"))
    return FilePart("application/pdf", url=part["file_url"], filename=part.get("filename"))


def _choice_from_responses(choice: object, client_tools: dict[str, ClientTool]) -> ToolChoice | None:
    """A forced hosted tool was dropped with its tool: the choice falls back to ``auto``."""
    if choice is None:
        return None
    if isinstance(choice, str):
        return ToolChoice(choice)
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom") and choice.get("name"):
        return ToolChoice("tool", flat_name(choice["name"], choice.get("namespace")))
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return ToolChoice("required" if choice.get("mode") == "required" else "auto")
    if isinstance(choice, dict) and is_hosted(choice.get("type")):
        return ToolChoice("auto")
    raise ProtocolError("tool_choice must be auto, none, required, a function or a custom tool", "tool_choice")


def _format_from_responses(fmt: dict) -> dict | None:
    kind = fmt.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        return {"type": "json_schema", "name": fmt.get("name") or "response",
                "schema": fmt.get("schema") or {}, "strict": fmt.get("strict")}
    raise ProtocolError(f"unknown text.format type {kind!r}", "text.format.type")


# --- canonical -> node request --------------------------------------------


def request_to_responses(req: Request, model: str) -> dict:
    """A canonical request as a Responses body for an OpenAI node."""
    if req.stop:
        raise ProtocolError("stop sequences cannot be translated for this model", "stop")
    items: list[dict] = []
    for i, msg in enumerate(req.messages):
        content: list[dict] = []
        for part in msg.parts:
            if isinstance(part, ToolCallPart):
                items.append({"type": "function_call", "call_id": part.id, "name": part.name,
                              "arguments": part.arguments or "{}"})
            elif isinstance(part, ToolResultPart):
                items.append({"type": "function_call_output", "call_id": part.tool_call_id,
                              "output": _result_output(part)})
            elif msg.role == "assistant":
                if not isinstance(part, TextPart):
                    raise ProtocolError("assistant messages can carry only text and tool calls",
                                        f"messages[{i}]")
                if part.text:
                    items.append({"role": "assistant", "content": part.text})
            else:
                content.append(_input_part(part))
        if content:
            items.append({"role": "user", "content": content})
    body: dict = {"model": model, "input": items, "store": False}
    if req.system:
        body["instructions"] = req.system
    if req.max_tokens is not None:
        body["max_output_tokens"] = req.max_tokens
    for key in ("temperature", "top_p", "parallel_tool_calls"):
        if getattr(req, key) is not None:
            body[key] = getattr(req, key)
    if req.user:
        body["safety_identifier"] = req.user
    if req.tools:
        body["tools"] = [_tool_to_responses(t) for t in req.tools]
    if req.tool_choice is not None:
        choice = req.tool_choice
        body["tool_choice"] = {"type": "function", "name": choice.name} if choice.mode == "tool" else choice.mode
    if req.response_format is not None:
        fmt = dict(req.response_format)
        if fmt.get("strict") is None:
            fmt.pop("strict", None)
        body["text"] = {"format": fmt}
    if req.stream:
        body["stream"] = True
    return body


def _tool_to_responses(tool: ToolDef) -> dict:
    out: dict = {"type": "function", "name": tool.name, "parameters": tool.parameters, "strict": bool(tool.strict)}
    if tool.description:
        out["description"] = tool.description
    return out


def _input_part(part: Part) -> dict:
    if isinstance(part, TextPart):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, ImagePart):
        return {"type": "input_image", "image_url": part.url or data_url(part.media_type, part.data or ""),
                "detail": "auto"}
    if isinstance(part, FilePart):
        if part.url is not None:
            return {"type": "input_file", "file_url": part.url}
        return {"type": "input_file", "filename": part.filename or "document.pdf",
                "file_data": data_url(part.media_type, part.data or "")}
    raise ProtocolError("unexpected part in a user message", "messages")


def _result_output(part: ToolResultPart) -> str | list[dict]:
    """A tool result's output: its text, or input parts when it carries an image."""
    text, images = split_result(part.content)
    if not images:
        return text
    return [_input_part(p) for p in part.content]


# --- responses ------------------------------------------------------------


def stop_from_response(resp: dict, has_tool_calls: bool) -> str:
    """Responses has a status, not a stop reason: incomplete_details says why it stopped early."""
    if resp.get("status") == "incomplete":
        reason = (resp.get("incomplete_details") or {}).get("reason")
        return _INCOMPLETE_FROM.get(reason, STOP_MAX_TOKENS)
    return settle_stop(STOP_END, has_tool_calls)


def response_from_responses(body: dict) -> Response:
    """A node's Responses object as a canonical :class:`Response`; reasoning items are dropped."""
    parts: list[TextPart | ToolCallPart] = []
    for item in body.get("output") or ():
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                text = part.get("text") if part.get("type") == "output_text" else part.get("refusal")
                if text:
                    parts.append(TextPart(text))
        elif kind == "function_call":
            parts.append(ToolCallPart(item.get("call_id") or "", item.get("name") or "", item.get("arguments") or ""))
    has_calls = any(isinstance(p, ToolCallPart) for p in parts)
    return Response(parts, stop_from_response(body, has_calls), usage_from_responses(body.get("usage")) or Usage())


def response_object(request_id: str, model: str, created_at: int, status: str, output: list[dict],
                    usage: Usage | None, stop_reason: str | None) -> dict:
    """The Responses ``response`` object, shared by the non-streaming reply and
    the stream's created/in_progress/completed events."""
    incomplete = None
    if status == "incomplete":
        incomplete = {"reason": _INCOMPLETE_TO.get(stop_reason or "", "max_output_tokens")}
    return {
        "id": "resp_" + request_id, "object": "response", "created_at": created_at, "status": status,
        "error": None, "incomplete_details": incomplete, "instructions": None, "max_output_tokens": None,
        "model": model, "output": output, "parallel_tool_calls": True, "previous_response_id": None,
        "temperature": None, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
        "top_p": None, "truncation": "disabled", "metadata": {}, "store": False,
        "usage": usage_to_responses(usage) if usage is not None else None,
    }


def status_for(stop_reason: str) -> str:
    return "incomplete" if stop_reason in _INCOMPLETE_TO else "completed"


def response_to_responses(resp: Response, model: str, request_id: str,
                          client_tools: dict[str, ClientTool] | None = None) -> dict:
    """A canonical response as the client's Responses object, tool calls under the client's tool names."""
    output: list[dict] = []
    for n, part in enumerate(resp.parts):
        if isinstance(part, TextPart):
            if output and output[-1]["type"] == "message":
                output[-1]["content"][0]["text"] += part.text
                continue
            output.append({"type": "message", "id": f"msg_{request_id}_{n}", "status": "completed",
                           "role": "assistant",
                           "content": [{"type": "output_text", "text": part.text, "annotations": []}]})
        else:
            output.append(call_item(part, client_tools or {}, f"fc_{request_id}_{n}"))
    return response_object(request_id, model, int(time.time()), status_for(resp.stop_reason), output,
                           resp.usage, resp.stop_reason)
