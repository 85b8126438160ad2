"""Google Gemini's wire, as ``generativelanguage.googleapis.com`` speaks it.

``POST /v1beta/models/{model}:generateContent``,
``:streamGenerateContent?alt=sse`` (``data: {GenerateContentResponse}`` events
framed with CRLF and no end marker; without ``alt=sse`` the stream is one JSON
array), ``:batchEmbedContents`` and ``:countTokens``.

Requests are checked as the real API checks them: the key must come in the
``x-goog-api-key`` header and never as a ``key=`` query parameter (a URL ends
up in logs), unknown fields are rejected (protobuf JSON: ``Unknown name
"model"``), every ``functionResponse`` turn must answer the function call turn
just before it, name for name and count for count, a declaration has
``parameters`` or ``parametersJsonSchema`` but not both, and each embedding
request names the model of the path. Errors are ``google.rpc.Status``:
``{"error": {"code", "message", "status"}}``.

Function calls carry no ``id`` (the Gemini API sends none) but do carry a
``thoughtSignature``, as Gemini 3 models send.
"""

from __future__ import annotations

import re
from typing import Any, Mapping
from urllib.parse import parse_qs, unquote

import orjson

from bench.wire_common import Reply, dumps, json_reply, short_hash, sse
from gateway.upstream.mock_script import ANY_TOOL, Script, embedding, write_script

PATH = re.compile(r"^/v1beta/models/([^/:]+):([A-Za-z]+)$")
GENERATE_FIELDS = frozenset({"contents", "systemInstruction", "system_instruction", "tools", "toolConfig",
                             "generationConfig", "safetySettings", "cachedContent", "labels"})
GENERATION_FIELDS = frozenset({"maxOutputTokens", "temperature", "topP", "topK", "stopSequences",
                               "responseMimeType", "responseSchema", "responseJsonSchema", "candidateCount",
                               "thinkingConfig", "seed", "presencePenalty", "frequencyPenalty",
                               "responseModalities", "responseLogprobs", "logprobs", "mediaResolution"})
PART_DATA = frozenset({"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
                       "codeExecutionResult"})
PART_FIELDS = PART_DATA | {"thought", "thoughtSignature", "videoMetadata", "partMetadata"}
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
SIGNATURE = "CiQBbW9jay10aG91Z2h0LXNpZ25hdHVyZQ=="  # base64, as real signatures are (the SDK decodes it)


def error_body(status: int, message: str | None = None) -> bytes:
    return dumps({"error": {"code": status, "message": message or f"mock upstream error {status}",
                            "status": STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")}})


def _error(status: int, message: str) -> Reply:
    return Reply(error_body(status, message), status=status)


def _check_auth(query: str, headers: Mapping[str, str]) -> Reply | None:
    if "key" in parse_qs(query):
        return _error(400, "the API key was sent in the URL (key=); send it in the x-goog-api-key header")
    if headers.get("authorization"):
        return _error(401, "Request had invalid authentication credentials (unexpected Authorization header).")
    if not headers.get("x-goog-api-key"):
        return _error(403, "Method doesn't allow unregistered callers (callers without established identity). "
                           "Please use API Key or other form of API consumer identity to call this API.")
    return None


def _unknown(name: str) -> Reply:
    return _error(400, f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')


def _check_generate(body: dict[str, Any]) -> Reply | None:
    extra = sorted(set(body) - GENERATE_FIELDS)
    if extra:
        return _unknown(extra[0])
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return _error(400, "* GenerateContentRequest.contents: contents is not specified")
    previous_calls: list[str] = []
    for i, content in enumerate(contents):
        role = content.get("role") if isinstance(content, dict) else None
        if role not in ("user", "model", "function"):
            return _error(400, f"Please use a valid role: user, model. (contents[{i}].role)")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return _error(400, f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        calls: list[str] = []
        answers: list[str] = []
        for j, part in enumerate(parts):
            if not isinstance(part, dict):
                return _error(400, f"contents[{i}].parts[{j}] must be an object")
            extra = sorted(set(part) - PART_FIELDS)
            if extra:
                return _unknown(f"contents[{i}].parts[{j}].{extra[0]}")
            data = [key for key in part if key in PART_DATA]
            if len(data) != 1:
                return _error(400, f"contents[{i}].parts[{j}] must have exactly one data field")
            if "text" in part and not isinstance(part["text"], str):
                return _error(400, f"contents[{i}].parts[{j}].text must be a string")
            if "functionCall" in part:
                call = part["functionCall"]
                if role != "model" or not call.get("name") or not isinstance(call.get("args", {}), dict):
                    return _error(400, f"contents[{i}].parts[{j}].functionCall is malformed")
                calls.append(call["name"])
            if "functionResponse" in part:
                answer = part["functionResponse"]
                if not answer.get("name") or not isinstance(answer.get("response"), dict):
                    return _error(400, f"contents[{i}].parts[{j}].functionResponse needs a name and a response "
                                       "object")
                answers.append(answer["name"])
        if answers and sorted(answers) != sorted(previous_calls):
            return _error(400, "Please ensure that the number of function response parts is equal to the number "
                               "of function call parts of the function call turn.")
        previous_calls = calls
    for tool in body.get("tools") or ():
        for declaration in tool.get("functionDeclarations") or ():
            if not declaration.get("name"):
                return _error(400, "tools[].functionDeclarations[].name is required")
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                return _error(400, "parameters and parametersJsonSchema are mutually exclusive")
    generation = body.get("generationConfig") or {}
    extra = sorted(set(generation) - GENERATION_FIELDS)
    if extra:
        return _unknown(f"generation_config.{extra[0]}")
    return None


def _texts(parts: list[dict[str, Any]]) -> str:
    return " ".join(p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought"))


def _last_text(parts: list[dict[str, Any]]) -> str:
    """The last text part: what the user typed, after any context the client put before it."""
    texts = [p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought")]
    return texts[-1] if texts else ""


def _result_text(response: dict[str, Any]) -> str:
    for key in ("output", "result", "content", "error"):
        if isinstance(response.get(key), str):
            return response[key]
    return orjson.dumps(response).decode()


def script_for(body: dict[str, Any], tokens: int) -> Script:
    contents = body["contents"]
    system = body.get("systemInstruction") or body.get("system_instruction") or {}
    texts = [_texts(system.get("parts") or [])] + [_texts(c["parts"]) for c in contents]
    last_user = next((_last_text(c["parts"]) for c in reversed(contents) if c["role"] == "user"), "")
    answers = [p["functionResponse"] for p in contents[-1]["parts"] if "functionResponse" in p]
    tool_result = " ".join(_result_text(a.get("response") or {}) for a in answers) if answers else None
    if tool_result is not None:
        texts.append(tool_result)
    tools = [{"name": d["name"], "parameters": d.get("parametersJsonSchema") or d.get("parameters_json_schema")
              or d.get("parameters")}
             for tool in body.get("tools") or () for d in tool.get("functionDeclarations") or ()]
    max_tokens = (body.get("generationConfig") or {}).get("maxOutputTokens")
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    forced = ((calling.get("allowedFunctionNames") or [ANY_TOOL])[0]) if calling.get("mode") == "ANY" else None
    return write_script(" ".join(t for t in texts if t), last_user, tools, tool_result, max_tokens, tokens, forced)


def _usage(script: Script, output: int | None) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": script.input_tokens,
                             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": script.input_tokens}]}
    if script.cache_read:  # Gemini reports cache reads (context caching), never writes
        usage["cachedContentTokenCount"] = script.cache_read
    if output is not None:
        usage["candidatesTokenCount"] = output
    usage["totalTokenCount"] = script.input_tokens + (output or 0)
    return usage


def _chunk(parts: list[dict[str, Any]], script: Script, model: str, finish: str | None,
           output: int | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": _usage(script, output), "modelVersion": model,
            "responseId": "mock" + short_hash(model + script.text)}


def _call_parts(script: Script) -> list[dict[str, Any]]:
    """Parallel calls are parts of one candidate; only the first carries the thought signature, as Gemini 3."""
    parts: list[dict[str, Any]] = [{"functionCall": {"name": call.name, "args": orjson.loads(call.arguments)}}
                                   for call in script.tool_calls]
    if parts:
        parts[0]["thoughtSignature"] = SIGNATURE
    return parts


def generate(model: str, query: str, body: dict[str, Any], tokens: int, stream: bool) -> Reply:
    problem = _check_generate(body)
    if problem is not None:
        return problem
    script = script_for(body, tokens)
    finish = FINISH[script.finish]
    if not stream:
        parts = _call_parts(script) or [{"text": script.text}]
        return json_reply(_chunk(parts, script, model, finish, script.output_tokens))
    chunks: list[dict[str, Any]] = []
    if script.tool_calls:
        chunks.append(_chunk(_call_parts(script), script, model, finish, script.output_tokens))
    else:
        last = len(script.tokens) - 1
        for n, token in enumerate(script.tokens):
            done = n == last
            chunks.append(_chunk([{"text": token}], script, model, finish if done else None,
                                 script.output_tokens if done else None))
    if "sse" not in parse_qs(query).get("alt", []):
        return Reply(dumps(chunks))  # without alt=sse Gemini streams one JSON array
    return Reply(frames=[sse(chunk, newline=b"\r\n") for chunk in chunks])


def embed(model: str, body: dict[str, Any]) -> Reply:
    extra = sorted(set(body) - {"requests"})
    if extra:
        return _unknown(extra[0])
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        return _error(400, "* BatchEmbedContentsRequest.requests: requests is not specified")
    vectors = []
    for i, item in enumerate(requests):
        if item.get("model") != "models/" + model:
            return _error(400, f"Model names should be identical across requests and the batch: "
                               f"requests[{i}].model is {item.get('model')!r}, the batch is models/{model}")
        parts = (item.get("content") or {}).get("parts") or []
        if not parts or not all(isinstance(p.get("text"), str) for p in parts):
            return _error(400, f"requests[{i}].content.parts must be text parts")
        dim = item.get("outputDimensionality") or 8
        vectors.append({"values": embedding(" ".join(p["text"] for p in parts), dim)})
    return json_reply({"embeddings": vectors})


def count_tokens(model: str, body: dict[str, Any]) -> Reply:
    """``{"contents"}`` or ``{"generateContentRequest": {"model", "contents", ...}}`` -> ``{"totalTokens"}``."""
    inner = body.get("generateContentRequest")
    if inner is not None:
        if inner.get("model") != "models/" + model:
            return _error(400, f"generateContentRequest.model must be models/{model}")
        body = {key: value for key, value in inner.items() if key != "model"}
    extra = sorted(set(body) - GENERATE_FIELDS)
    if extra:
        return _unknown(extra[0])
    if not body.get("contents"):
        return _error(400, "* CountTokensRequest.contents: contents is not specified")
    return json_reply({"totalTokens": script_for(body, 1).input_tokens})


def handle(path: str, query: str, body: dict[str, Any], tokens: int, headers: Mapping[str, str]) -> Reply:
    match = PATH.match(path)
    if match is None:
        return _error(404, f"path {path} not found")
    problem = _check_auth(query, headers)
    if problem is not None:
        return problem
    model, action = unquote(match.group(1)), match.group(2)
    if action == "generateContent":
        return generate(model, query, body, tokens, stream=False)
    if action == "streamGenerateContent":
        return generate(model, query, body, tokens, stream=True)
    if action == "batchEmbedContents":
        return embed(model, body)
    if action == "countTokens":
        return count_tokens(model, body)
    return _error(404, f"method {action} not found")


def matches(path: str) -> bool:
    return PATH.match(path) is not None
