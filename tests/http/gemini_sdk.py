"""The ``gemini`` row of the protocol matrix: the official ``google-genai`` SDK as the client.

The SDK is given the gateway as ``base_url`` and nothing else, as a user
would: it then calls ``/v1/models/{model}:generateContent`` (its default API
version) with the key in ``x-goog-api-key``. Each function returns what the
matrix checks (the answer text; the tool arguments and the final answer).
"""

from __future__ import annotations

from typing import Any

from google import genai
from google.genai import types

from tests.support.keys import TEST_KEY
from tests.conftest import RunningGateway

PROMPT = "hello from the matrix"
QUESTION = "What is the weather in Paris? Please call get_weather."
SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "description": "a city"}},
          "required": ["city"]}
TOOL_DESCRIPTION = "Current weather for a city"


def client(gateway: RunningGateway, api_version: str | None = None) -> genai.Client:
    options = types.HttpOptions(base_url=gateway.url, timeout=20_000, api_version=api_version,
                                retry_options=types.HttpRetryOptions(attempts=1))
    return genai.Client(api_key=TEST_KEY, http_options=options)


def _tools_config() -> types.GenerateContentConfig:
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", description=TOOL_DESCRIPTION, parameters_json_schema=SCHEMA)])
    return types.GenerateContentConfig(
        tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))


def gemini_plain(gw: RunningGateway, model: str) -> tuple[str, dict[str, str]]:
    sdk = client(gw)  # held: a Client closes its HTTP connection pool when collected
    reply = sdk.models.generate_content(
        model=model, contents=PROMPT, config=types.GenerateContentConfig(system_instruction="Be brief."))
    candidate = reply.candidates[0]
    assert candidate.finish_reason == types.FinishReason.STOP and candidate.content.role == "model"
    usage = reply.usage_metadata
    assert usage.prompt_token_count > 0 and usage.candidates_token_count > 0
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    return reply.text, dict(reply.sdk_http_response.headers)


def gemini_stream(gw: RunningGateway, model: str) -> str:
    sdk = client(gw)
    chunks = list(sdk.models.generate_content_stream(model=model, contents=PROMPT))
    assert len(chunks) > 1
    finishes = [c.candidates[0].finish_reason for c in chunks if c.candidates[0].finish_reason]
    assert finishes == [types.FinishReason.STOP]
    assert chunks[-1].usage_metadata.candidates_token_count > 0
    assert chunks[-1].usage_metadata.prompt_token_count > 0
    return "".join(c.text or "" for c in chunks)


def _turn(sdk: genai.Client, model: str, contents: list[types.Content], stream: bool) -> types.Content:
    """One model turn, plain or streamed, as the Content the SDK would keep in its history."""
    if not stream:
        reply = sdk.models.generate_content(model=model, contents=contents, config=_tools_config())
        assert reply.candidates[0].finish_reason == types.FinishReason.STOP
        return reply.candidates[0].content
    parts: list[types.Part] = []
    finishes = []
    for chunk in sdk.models.generate_content_stream(model=model, contents=contents, config=_tools_config()):
        parts += chunk.candidates[0].content.parts or []
        if chunk.candidates[0].finish_reason:
            finishes.append(chunk.candidates[0].finish_reason)
    assert finishes == [types.FinishReason.STOP]
    return types.Content(role="model", parts=parts)


def gemini_tools(gw: RunningGateway, model: str, stream: bool) -> tuple[dict[str, Any], str]:
    sdk = client(gw)
    contents = [types.Content(role="user", parts=[types.Part(text=QUESTION)])]
    first = _turn(sdk, model, contents, stream)
    (call,) = [part.function_call for part in first.parts if part.function_call]
    assert call.name == "get_weather"
    arguments = dict(call.args)
    answer = types.FunctionResponse(id=call.id, name=call.name,
                                    response={"output": f"18C and sunny in {arguments['city']}"})
    contents += [first, types.Content(role="user", parts=[types.Part(function_response=answer)])]
    final = _turn(sdk, model, contents, stream)
    assert not any(part.function_call for part in final.parts)
    return arguments, "".join(part.text or "" for part in final.parts)
