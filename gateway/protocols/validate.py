"""Deep validation of Messages and Responses client requests.

Runs before routing so that a malformed request gets a 400 naming the field
at fault (``messages[2].content[0].tool_use_id``) instead of costing an
upstream round trip, whether the request will be passed through or
translated. It checks shapes, not semantics the upstream owns (model limits,
schema validity).
"""

from __future__ import annotations

from gateway.protocols.anthropic import DROPPED_BLOCKS, INSTRUCTION_ROLES
from gateway.protocols.canonical import ProtocolError

_BLOCK_TYPES = frozenset({"text", "image", "tool_use", "tool_result", "document", "search_result"}) | DROPPED_BLOCKS
_CHOICE_TYPES = frozenset({"auto", "any", "tool", "none"})
_ITEM_CONTENT_TYPES = frozenset({"input_text", "output_text", "input_image", "input_file", "refusal"})
_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})
_CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_ID_CHARS = 512  # ids and names are echoed back and logged: far above any provider's own limit (64-256)
MAX_NAME_CHARS = 256


def _require(ok: bool, message: str, param: str) -> None:
    if not ok:
        raise ProtocolError(message, param)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _one_of(value: object, allowed: frozenset[str]) -> bool:
    """``value in allowed`` that a list or dict from the client cannot turn into a TypeError."""
    return isinstance(value, str) and value in allowed


def _short_str(value: object, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit


def _optional_short_str(body: dict, key: str, limit: int, path: str) -> None:
    if body.get(key) is not None:
        _short_field(body, key, limit, path)


def _short_field(body: dict, key: str, limit: int, path: str) -> None:
    """``body[key]`` is a string of 1 to ``limit`` characters (``path``: where ``body`` is, dot-terminated)."""
    _require(_short_str(body.get(key), limit), f"{key} must be a string of 1 to {limit} characters", f"{path}{key}")


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
        role = msg.get("role")
        _require(_one_of(role, _MESSAGE_ROLES), "role must be user, assistant, system or developer", f"{path}.role")
        content = msg.get("content")
        if _is_str(content):
            continue
        if role in INSTRUCTION_ROLES:  # joins the system prompt: text only, as the top-level system
            _require(isinstance(content, list) and all(
                isinstance(b, dict) and b.get("type") == "text" and _is_str(b.get("text")) for b in content),
                "system messages must be a string or text blocks", f"{path}.content")
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
    _require(_one_of(kind, _BLOCK_TYPES), f"unsupported content block type {str(kind)[:40]!r}", f"{path}.type")
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
        _short_field(block, "id", MAX_ID_CHARS, f"{path}.")
        _short_field(block, "name", MAX_NAME_CHARS, f"{path}.")
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
    elif kind == "redacted_thinking":
        _require(_is_str(block.get("data")), "data is required", f"{path}.data")


def _validate_anthropic_tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is not None:
        _require(isinstance(tools, list), "tools must be a list", "tools")
        for i, tool in enumerate(tools):
            _require(isinstance(tool, dict), "each tool must be an object", f"tools[{i}]")
            kind = tool.get("type")
            _require(kind is None or (_is_str(kind) and bool(kind)), "type must be a string", f"tools[{i}].type")
            if kind in (None, "custom"):  # server tools are Anthropic's to check (mcp_toolset has no name)
                _short_field(tool, "name", MAX_NAME_CHARS, f"tools[{i}].")
                _require(isinstance(tool.get("input_schema"), dict), "input_schema must be an object",
                         f"tools[{i}].input_schema")
    choice = body.get("tool_choice")
    if choice is not None:
        _require(isinstance(choice, dict) and _one_of(choice.get("type"), _CHOICE_TYPES),
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
            _validate_responses_tool(tool, f"tools[{i}]")


def _validate_responses_tool(tool: object, path: str) -> None:
    if not isinstance(tool, dict) or not _is_str(tool.get("type")):
        raise ProtocolError("each tool needs a type", path)
    kind = tool["type"]
    if kind in ("function", "custom", "namespace"):
        _short_field(tool, "name", MAX_NAME_CHARS, f"{path}.")
    if kind == "function":
        params = tool.get("parameters")
        _require(params is None or isinstance(params, dict), "parameters must be an object", f"{path}.parameters")
    elif kind == "namespace":
        inner = tool.get("tools")
        _require(isinstance(inner, list), "tools must be a list", f"{path}.tools")
        for j, member in enumerate(inner):
            _validate_responses_tool(member, f"{path}.tools[{j}]")


def _validate_item(item: object, path: str) -> None:
    _require(isinstance(item, dict), "each input item must be an object", path)
    kind = item.get("type") or "message"
    _require(_is_str(kind), "type must be a string", f"{path}.type")
    if kind == "message":
        _require(_one_of(item.get("role"), _MESSAGE_ROLES), "role must be user, assistant, system or developer",
                 f"{path}.role")
        content = item.get("content")
        if _is_str(content):
            return
        _require(isinstance(content, list), "content must be a string or a list of parts", f"{path}.content")
        for j, part in enumerate(content):
            _require(isinstance(part, dict) and _one_of(part.get("type"), _ITEM_CONTENT_TYPES),
                     "unsupported content part type", f"{path}.content[{j}].type")
    elif kind == "function_call":
        _short_field(item, "call_id", MAX_ID_CHARS, f"{path}.")
        _short_field(item, "name", MAX_NAME_CHARS, f"{path}.")
        _require(_is_str(item.get("arguments")), "arguments must be a string", f"{path}.arguments")
    elif kind == "custom_tool_call":
        _short_field(item, "call_id", MAX_ID_CHARS, f"{path}.")
        _short_field(item, "name", MAX_NAME_CHARS, f"{path}.")
        _require(_is_str(item.get("input")), "input must be a string", f"{path}.input")
    elif kind in ("function_call_output", "custom_tool_call_output"):
        _short_field(item, "call_id", MAX_ID_CHARS, f"{path}.")
        output = item.get("output")
        _require(_is_str(output) or isinstance(output, list), "output must be a string or a list", f"{path}.output")
        for j, part in enumerate(output if isinstance(output, list) else ()):
            _require(isinstance(part, dict) and _is_str(part.get("type")), "each output part needs a type",
                     f"{path}.output[{j}]")


def validate_chat(body: dict) -> None:
    """An OpenAI Chat Completions request: types and sizes of the fields the gateway or a translator reads."""
    messages = body.get("messages")
    _require(isinstance(messages, list) and bool(messages), "messages must be a non-empty list", "messages")
    for i, msg in enumerate(messages):
        path = f"messages[{i}]"
        _require(isinstance(msg, dict), "each message must be an object", path)
        _require(_one_of(msg.get("role"), _CHAT_ROLES),
                 "role must be system, developer, user, assistant or tool", f"{path}.role")
        _optional_short_str(msg, "name", MAX_NAME_CHARS, f"{path}.")
        _optional_short_str(msg, "tool_call_id", MAX_ID_CHARS, f"{path}.")
        content = msg.get("content")
        if content is not None and not _is_str(content):
            _require(isinstance(content, list), "content must be a string or a list of parts", f"{path}.content")
            for j, part in enumerate(content):
                _require(isinstance(part, dict) and _is_str(part.get("type")), "each content part needs a type",
                         f"{path}.content[{j}]")
                _require(part["type"] != "text" or _is_str(part.get("text")), "text must be a string",
                         f"{path}.content[{j}].text")
        calls = msg.get("tool_calls")
        if calls is not None:
            _require(isinstance(calls, list), "tool_calls must be a list", f"{path}.tool_calls")
            for j, call in enumerate(calls):
                where = f"{path}.tool_calls[{j}]"
                _require(isinstance(call, dict) and isinstance(call.get("function"), dict),
                         "each tool call must be an object with a function", where)
                _optional_short_str(call, "id", MAX_ID_CHARS, f"{where}.")
                _optional_short_str(call["function"], "name", MAX_NAME_CHARS, f"{where}.function.")
    tools = body.get("tools")
    if tools is not None:
        _require(isinstance(tools, list), "tools must be a list", "tools")
        for i, tool in enumerate(tools):
            _require(isinstance(tool, dict), "each tool must be an object", f"tools[{i}]")
            if tool.get("type", "function") == "function":
                function = tool.get("function")
                _require(isinstance(function, dict), "function must be an object", f"tools[{i}].function")
                _short_field(function, "name", MAX_NAME_CHARS, f"tools[{i}].function.")
    _optional_short_str(body, "user", MAX_ID_CHARS, "")
