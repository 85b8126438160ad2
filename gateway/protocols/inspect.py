"""The little the pipeline must know of a client request before routing it.

Pass-through requests are not translated, so this is the only parse of their
fields: validate what the gateway relies on (model, stream flag, token limits,
the gateway-only ``fallback_models``) and leave the rest to the upstream.
Every number from a client is checked here, with the field named on failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.protocols.canonical import ProtocolError
from gateway.protocols.names import GEMINI_ENDPOINTS, Protocol

MAX_OUTPUT_TOKENS = 1_000_000  # above any real model's limit: larger is a client bug
DEFAULT_OUTPUT_RESERVE = 4096  # reserved when the client names no limit
MAX_FALLBACKS = 8


@dataclass(slots=True)
class RequestFacts:
    model: str
    stream: bool
    max_output_tokens: int | None
    include_usage: bool  # chat: the client asked for the usage chunk
    fallback_models: list[str] | None
    prompt_tokens_estimate: int


def inspect_request(endpoint: Protocol, body: Any, body_size: int, url_model: str | None = None,
                    url_stream: bool = False) -> RequestFacts:
    """Validate the common fields of a request to ``endpoint``; raise ProtocolError naming the field.

    Gemini endpoints carry the model and the stream flag in the URL
    (``models/{model}:streamGenerateContent``): the handler passes them as
    ``url_model`` and ``url_stream``.
    """
    if not isinstance(body, dict):
        raise ProtocolError(f"the request body must be a JSON object, not {_json_type(body)}")
    gemini = endpoint in GEMINI_ENDPOINTS
    model = url_model if gemini else body.get("model")
    if not isinstance(model, str) or not model:
        raise ProtocolError("'model' is required and must be a non-empty string", "model")
    if len(model) > 256 or not model.isprintable():
        raise ProtocolError("'model' contains control characters or is too long", "model")
    stream = url_stream if gemini else body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ProtocolError("'stream' must be a boolean", "stream")
    fallbacks = body.get("fallback_models")
    if fallbacks is not None:
        if (not isinstance(fallbacks, list) or len(fallbacks) > MAX_FALLBACKS
                or not all(isinstance(f, str) and f and f.isprintable() for f in fallbacks)):
            raise ProtocolError(f"'fallback_models' must be a list of at most {MAX_FALLBACKS} model ids",
                                "fallback_models")
    include_usage = False
    max_output: int | None = None
    if endpoint == Protocol.CHAT:
        _require_list(body, "messages")
        max_output = _tokens(body, "max_completion_tokens") or _tokens(body, "max_tokens")
        options = body.get("stream_options")
        if options is not None:
            if not isinstance(options, dict):
                raise ProtocolError("'stream_options' must be an object", "stream_options")
            include_usage = options.get("include_usage") is True
        _number(body, "temperature", 0, 2)
        _number(body, "top_p", 0, 1)
        n = body.get("n")
        if n is not None and n != 1:
            raise ProtocolError("only 'n': 1 is supported", "n")
    elif endpoint == Protocol.RESPONSES:
        max_output = _tokens(body, "max_output_tokens")
        _number(body, "temperature", 0, 2)
    elif endpoint == Protocol.MESSAGES:
        _require_list(body, "messages")
        max_output = _tokens(body, "max_tokens")
        if max_output is None:
            raise ProtocolError("'max_tokens' is required", "max_tokens")
        _number(body, "temperature", 0, 1)
    elif endpoint == Protocol.GEMINI:
        _require_list(body, "contents")
        config = body.get("generationConfig") or body.get("generation_config")  # Google takes either spelling
        if config is not None:
            if not isinstance(config, dict):
                raise ProtocolError("'generationConfig' must be an object", "generationConfig")
            max_output = _tokens(config, "maxOutputTokens") or _tokens(config, "max_output_tokens")
    elif endpoint == Protocol.COUNT_TOKENS:
        _require_list(body, "messages")
    elif endpoint == Protocol.EMBEDDINGS:
        _embedding_input(body)
        fmt = body.get("encoding_format")
        if fmt is not None and fmt not in ("float", "base64"):
            raise ProtocolError("'encoding_format' must be 'float' or 'base64'", "encoding_format")
        dims = body.get("dimensions")
        if dims is not None and (not _is_int(dims) or not 1 <= dims <= 65536):
            raise ProtocolError("'dimensions' must be an integer from 1 to 65536", "dimensions")
    return RequestFacts(model, stream, max_output, include_usage, fallbacks, max(1, body_size // 4))


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "null"}.get(type(value), "something else")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_list(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if not isinstance(value, list) or not value:
        raise ProtocolError(f"'{name}' is required and must be a non-empty array", name)
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ProtocolError(f"'{name}[{i}]' must be an object", f"{name}[{i}]")


def _tokens(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value) or not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise ProtocolError(f"'{name}' must be an integer from 1 to {MAX_OUTPUT_TOKENS}", name)
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ProtocolError(f"'{name}' must be a number from {low} to {high}", name)


def _embedding_input(body: dict[str, Any]) -> None:
    value = body.get("input")
    if isinstance(value, str) and value:
        return
    if isinstance(value, list) and value and len(value) <= 2048:
        if all(isinstance(v, str) and v for v in value):
            return
        if all(_is_int(v) for v in value) or all(isinstance(v, list) and v and all(_is_int(t) for t in v)
                                                 for v in value):
            return
    raise ProtocolError("'input' must be a non-empty string or an array of at most 2048 strings or token arrays",
                        "input")


# Structural fields whose strings are not prompt text (ids, roles, media, base64 data).
_NOT_TEXT = frozenset({"role", "type", "id", "tool_call_id", "tool_use_id", "call_id", "media_type", "url",
                       "data", "detail", "image_url", "file_id", "cache_control", "signature",
                       "mimeType", "fileUri", "thoughtSignature", "model"})
_PROMPT_FIELDS = ("system", "instructions", "messages", "input", "tools",
                  "systemInstruction", "contents", "content", "requests")  # the last four: Gemini's


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """Tokens of the prompt's text (about four characters a token), for billing when a node reports none.

    Only the estimated-usage path calls it (an abandoned stream, a node without
    usage): the request body's size would also count JSON syntax, ids and
    base64 images, and overcharge a short prompt several times over.
    """
    chars = 0
    stack: list[Any] = [body.get(name) for name in _PROMPT_FIELDS]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(item for key, item in value.items() if key not in _NOT_TEXT)
    return max(1, (chars + 3) // 4)
