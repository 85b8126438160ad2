"""Responses tools beyond plain functions, for nodes that do not speak Responses.

Codex sends, besides ``function`` tools, a ``namespace`` of functions
(``multi_agent_v1``), a ``custom`` (free-form) ``apply_patch`` tool, and
hosted tools (``web_search``, ``tool_search``). What real clients send is
never a reason to fail (contract §3), so for a node speaking another protocol:

* ``namespace`` tools are flattened into their functions, named
  ``<namespace>__<name>``; a call to one comes back as a ``function_call``
  with the function's own ``name`` and its ``namespace``;
* ``custom`` tools become function tools with one string parameter,
  ``input`` (a grammar, if the tool has one, is quoted in the description);
  a call comes back as a ``custom_tool_call`` carrying that string;
* hosted tools (run by OpenAI's servers, or schema-less client tools only
  OpenAI's models know) are dropped and named in ``x-infermesh-dropped-tools``,
  along with the items they left in the history.

An unknown tool type is the client's 400, naming ``tools[i].type``.
"""

from __future__ import annotations

import orjson

from gateway.protocols.canonical import ClientTool, ProtocolError, ToolCallPart, ToolDef, dumps

NAMESPACE_SEPARATOR = "__"
HOSTED_TOOLS = frozenset({
    "web_search", "web_search_preview", "file_search", "code_interpreter", "image_generation", "computer",
    "computer_use", "computer_use_preview", "local_shell", "shell", "apply_patch", "mcp", "tool_search",
})
# History items no other node can read: reasoning and compaction (encrypted for OpenAI's models) and what
# hosted tools produced. Dropped, like their tools.
DROPPED_ITEMS = frozenset({
    "reasoning", "compaction", "web_search_call", "file_search_call", "code_interpreter_call",
    "image_generation_call", "computer_call", "computer_call_output", "local_shell_call", "local_shell_call_output",
    "shell_call", "shell_call_output", "apply_patch_call", "apply_patch_call_output", "mcp_call", "mcp_list_tools",
    "mcp_approval_request", "mcp_approval_response", "tool_search_call", "tool_search_output",
})
_EMPTY_SCHEMA = {"type": "object", "properties": {}}


def is_hosted(kind: object) -> bool:
    """Versioned names count too: ``web_search_2025_08_26``, ``web_search_preview_2025_03_11``."""
    return isinstance(kind, str) and (kind in HOSTED_TOOLS or kind.startswith(("web_search", "computer_use")))


def tools_from_responses(tools: list[dict]) -> tuple[list[ToolDef], dict[str, ClientTool], list[str]]:
    """Function definitions for the node, the names that differ from the client's, the dropped types."""
    defs: list[ToolDef] = []
    renamed: dict[str, ClientTool] = {}
    dropped: list[str] = []
    for i, tool in enumerate(tools):
        kind = tool.get("type")
        if kind == "function":
            defs.append(_function(tool))
        elif kind == "namespace":
            space = tool.get("name") or ""
            for j, inner in enumerate(tool.get("tools") or ()):
                if inner.get("type") == "function":
                    flat = f"{space}{NAMESPACE_SEPARATOR}{inner.get('name') or ''}"
                    defs.append(ToolDef(flat, inner.get("description"), inner.get("parameters") or _EMPTY_SCHEMA,
                                        inner.get("strict")))
                    renamed[flat] = ClientTool(inner.get("name") or "", namespace=space)
                elif is_hosted(inner.get("type")):
                    dropped.append(inner["type"])
                else:
                    raise ProtocolError(f"tool type {inner.get('type')!r} cannot be translated for this model",
                                        f"tools[{i}].tools[{j}].type")
        elif kind == "custom":
            name = tool.get("name") or ""
            defs.append(_custom(tool))
            renamed[name] = ClientTool(name, custom=True)
        elif is_hosted(kind):
            dropped.append(kind)  # type: ignore[arg-type]
        else:
            raise ProtocolError(f"tool type {kind!r} cannot be translated for this model", f"tools[{i}].type")
    return defs, renamed, dropped


def _function(tool: dict) -> ToolDef:
    return ToolDef(tool.get("name") or "", tool.get("description"), tool.get("parameters") or _EMPTY_SCHEMA,
                   tool.get("strict"))


def _custom(tool: dict) -> ToolDef:
    description = tool.get("description") or ""
    fmt = tool.get("format") or {}
    if fmt.get("type") == "grammar" and fmt.get("definition"):
        description += f"\n\nThe input follows this {fmt.get('syntax') or ''} grammar:\n{fmt['definition']}"
    schema = {"type": "object", "properties": {"input": {"type": "string", "description": "the tool's input, as raw text"}},
              "required": ["input"], "additionalProperties": False}
    return ToolDef(tool.get("name") or "", description or None, schema, None)


def flat_name(name: str, namespace: object) -> str:
    """A replayed ``function_call`` of a namespaced tool, under the name the node knows it by."""
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if isinstance(namespace, str) and namespace else name


def custom_arguments(text: str) -> str:
    """A replayed ``custom_tool_call`` input as the arguments of its one-parameter function."""
    return dumps({"input": text})


def custom_input(arguments: str) -> str:
    """The free-form input from a node's call of the one-parameter function (its raw text if not that shape)."""
    try:
        value = orjson.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return value["input"]
    return arguments


def call_item(part: ToolCallPart, client_tools: dict[str, ClientTool], item_id: str) -> dict:
    """A node's tool call as the client's output item, under the client's own tool name."""
    tool = client_tools.get(part.name)
    if tool is not None and tool.custom:
        return {"type": "custom_tool_call", "id": item_id, "call_id": part.id, "name": tool.name,
                "input": custom_input(part.arguments), "status": "completed"}
    item: dict[str, object] = {"type": "function_call", "id": item_id, "call_id": part.id, "name": part.name,
            "arguments": part.arguments, "status": "completed"}
    if tool is not None:
        item["name"] = tool.name
        item["namespace"] = tool.namespace
    return item
