"""Deep validation of Messages and Responses client requests.

Runs before routing so that a malformed request gets a 400 naming the field
at fault (``messages[2].content[0].tool_use_id``) instead of costing an
upstream round trip, whether the request will be passed through or
translated. It checks shapes, not semantics the upstream owns (model limits,
schema validity).
"""

from __future__ import annotations

from gateway.protocols.canonical import ProtocolError

_BLOCK_TYPES = frozenset({"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking", "document"})
_CHOICE_TYPES = frozenset({"auto", "any", "tool", "none"})
_ITEM_CONTENT_TYPES = frozenset({"input_text", "output_text", "input_image", "input_file", "refusal"})
_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})


def _require(ok: bool, message: str, param: str) -> None:
    if not ok:
        raise ProtocolError(message, param)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def validate_messages(body: dict) -> None:
    """An Anthropic Messages request."""
    _require(_positive_int(body.get("max_tokens")), "max_tokens must be a positive integer", "max_tokens")
    messages = body.get("messages")
    _require(isinstance(messages, list) and bool(messages), "messages must be a non-empty list", "messages")
    system = body.get("system")
    if system is not None and not _is_str(system):
        _require(isinstance(system, list), "system must be a string or a list of text blocks", "system")
        for i, block in enumerate(system):
            _require(isinstance(block, dict) and block.get("type") == "text" and _is_str(block.get("text")),
                     "system blocks must be text blocks", f"system[{i}]")
    tool_ids: set[str] = set()
    for i, msg in enumerate(messages):
        path = f"messages[{i}]"
        _require(isinstance(msg, dict), "each message must be an object", path)
        _require(msg.get("role") in ("user", "assistant"), "role must be user or assistant", f"{path}.role")
        content = msg.get("content")
        if _is_str(content):
            continue
        _require(isinstance(content, list), "content must be a string or a list of blocks", f"{path}.content")
        for j, block in enumerate(content):
            _validate_block(block, f"{path}.content[{j}]", tool_ids)
    _validate_anthropic_tools(body)
    stops = body.get("stop_sequences")
    if stops is not None:
        _require(isinstance(stops, list) and all(_is_str(s) for s in stops),
                 "stop_sequences must be a list of strings", "stop_sequences")


def _validate_block(block: object, path: str, tool_ids: set[str]) -> None:
    _require(isinstance(block, dict), "each content block must be an object", path)
    kind = block.get("type")
    _require(kind in _BLOCK_TYPES, f"unsupported content block type {kind!r}", f"{path}.type")
    if kind == "text":
        _require(_is_str(block.get("text")), "text is required", f"{path}.text")
    elif kind in ("image", "document"):
        source = block.get("source")
        _require(isinstance(source, dict), "source is required", f"{path}.source")
        if source.get("type") == "base64":
            _require(_is_str(source.get("data")), "source.data is required", f"{path}.source.data")
            _require(_is_str(source.get("media_type")), "source.media_type is required",
                     f"{path}.source.media_type")
        elif source.get("type") == "url":
            _require(_is_str(source.get("url")), "source.url is required", f"{path}.source.url")
        else:
            _require(kind == "document" and source.get("type") in ("text", "content", "file"),
                     "unsupported source type", f"{path}.source.type")
    elif kind == "tool_use":
        _require(_is_str(block.get("id")) and bool(block["id"]), "id is required", f"{path}.id")
        _require(_is_str(block.get("name")) and bool(block["name"]), "name is required", f"{path}.name")
        _require(isinstance(block.get("input"), dict), "input must be an object", f"{path}.input")
        tool_ids.add(block["id"])
    elif kind == "tool_result":
        tool_use_id = block.get("tool_use_id")
        _require(_is_str(tool_use_id) and tool_use_id in tool_ids,
                 "tool_result must refer to the id of an earlier tool_use block", f"{path}.tool_use_id")
        content = block.get("content")
        if content is not None and not _is_str(content):
            _require(isinstance(content, list), "content must be a string or a list of blocks", f"{path}.content")
            for k, inner in enumerate(content):
                _require(isinstance(inner, dict) and inner.get("type") in ("text", "image", "document", "search_result"),
                         "tool_result content blocks must be text, image, document or search_result",
                         f"{path}.content[{k}]")
    elif kind == "thinking":
        _require(_is_str(block.get("thinking")), "thinking is required", f"{path}.thinking")
    else:  # redacted_thinking
        _require(_is_str(block.get("data")), "data is required", f"{path}.data")


def _validate_anthropic_tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is not None:
        _require(isinstance(tools, list), "tools must be a list", "tools")
        for i, tool in enumerate(tools):
            _require(isinstance(tool, dict), "each tool must be an object", f"tools[{i}]")
            _require(_is_str(tool.get("name")) and bool(tool["name"]), "name is required", f"tools[{i}].name")
            if tool.get("type") in (None, "custom"):
                _require(isinstance(tool.get("input_schema"), dict), "input_schema must be an object",
                         f"tools[{i}].input_schema")
    choice = body.get("tool_choice")
    if choice is not None:
        _require(isinstance(choice, dict) and choice.get("type") in _CHOICE_TYPES,
                 "tool_choice.type must be auto, any, tool or none", "tool_choice")
        if choice["type"] == "tool":
            _require(_is_str(choice.get("name")) and bool(choice["name"]), "name is required", "tool_choice.name")
        flag = choice.get("disable_parallel_tool_use")
        _require(flag is None or isinstance(flag, bool), "disable_parallel_tool_use must be a boolean",
                 "tool_choice.disable_parallel_tool_use")


def validate_responses(body: dict) -> None:
    """An OpenAI Responses request."""
    items = body.get("input")
    if not _is_str(items):
        _require(isinstance(items, list), "input must be a string or a list of items", "input")
        for i, item in enumerate(items):
            _validate_item(item, f"input[{i}]")
    instructions = body.get("instructions")
    _require(instructions is None or _is_str(instructions), "instructions must be a string", "instructions")
    limit = body.get("max_output_tokens")
    _require(limit is None or _positive_int(limit), "max_output_tokens must be a positive integer",
             "max_output_tokens")
    tools = body.get("tools")
    if tools is not None:
        _require(isinstance(tools, list), "tools must be a list", "tools")
        for i, tool in enumerate(tools):
            _require(isinstance(tool, dict) and _is_str(tool.get("type")), "each tool needs a type", f"tools[{i}]")
            if tool["type"] == "function":
                _require(_is_str(tool.get("name")) and bool(tool["name"]), "name is required", f"tools[{i}].name")
                params = tool.get("parameters")
                _require(params is None or isinstance(params, dict), "parameters must be an object",
                         f"tools[{i}].parameters")


def _validate_item(item: object, path: str) -> None:
    _require(isinstance(item, dict), "each input item must be an object", path)
    kind = item.get("type") or "message"
    if kind == "message":
        _require(item.get("role") in _MESSAGE_ROLES, "role must be user, assistant, system or developer",
                 f"{path}.role")
        content = item.get("content")
        if _is_str(content):
            return
        _require(isinstance(content, list), "content must be a string or a list of parts", f"{path}.content")
        for j, part in enumerate(content):
            _require(isinstance(part, dict) and part.get("type") in _ITEM_CONTENT_TYPES,
                     "unsupported content part type", f"{path}.content[{j}].type")
    elif kind == "function_call":
        for key in ("call_id", "name", "arguments"):
            _require(_is_str(item.get(key)), f"{key} must be a string", f"{path}.{key}")
    elif kind == "function_call_output":
        _require(_is_str(item.get("call_id")), "call_id must be a string", f"{path}.call_id")
        output = item.get("output")
        _require(_is_str(output) or isinstance(output, list), "output must be a string or a list", f"{path}.output")
