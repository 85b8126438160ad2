"""One admission step: every model endpoint family refuses the same request the same way.

Chat, Messages, Anthropic's count_tokens and Gemini's generateContent/countTokens
all pass through ``gateway/admission.py``: an unknown model is a 404 with
``model_not_found`` and a model the key may not use a 403 with
``model_not_allowed``, in each endpoint's own error shape.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.keys import TEST_KEY
from tests.conftest import RunningGateway
from tests.support.http import request

MESSAGES = [{"role": "user", "content": "hi"}]


def post(gateway: RunningGateway, path: str, body: dict[str, Any], key: str) -> tuple[int, Any]:
    reply = request(int(gateway.url.rsplit(":", 1)[1]), "POST", path, body, key=key,
                    headers={"x-goog-api-key": key})
    return reply.status, reply.json()


def code_of(body: Any) -> Any:
    """The machine-readable code: OpenAI's ``code``; Anthropic and Google have none, so their type/status."""
    error = body["error"]
    return error.get("code") if "type" in error and "param" in error else error.get("type") or error.get("status")


def restricted_key(gateway: RunningGateway) -> str:
    created = gateway.call(lambda: gateway.services.ledger.create_key("test", "restricted", ["gpt-4o-mini"]))
    return str(created["key"])


CASES = [
    ("/v1/chat/completions", lambda model: {"model": model, "messages": MESSAGES}, "model_not_found",
     "model_not_allowed"),
    ("/v1/messages", lambda model: {"model": model, "max_tokens": 5, "messages": MESSAGES}, "not_found_error",
     "permission_error"),
    ("/v1/messages/count_tokens", lambda model: {"model": model, "messages": MESSAGES}, "not_found_error",
     "permission_error"),
    ("/v1beta/models/{model}:generateContent", lambda model: {"contents": [{"parts": [{"text": "hi"}]}]},
     "NOT_FOUND", "PERMISSION_DENIED"),
    ("/v1beta/models/{model}:countTokens", lambda model: {"contents": [{"parts": [{"text": "hi"}]}]},
     "NOT_FOUND", "PERMISSION_DENIED"),
]


@pytest.mark.parametrize("path, body, missing, forbidden", CASES, ids=[case[0] for case in CASES])
def test_every_endpoint_family_admits_alike(openai_gateway: RunningGateway, path: str, body: Any, missing: str,
                                            forbidden: str) -> None:
    def call(model: str, key: str) -> tuple[int, Any]:
        return post(openai_gateway, path.format(model=model), body(model), key)

    status, answer = call("no-such-model", TEST_KEY)
    assert status == 404 and code_of(answer) == missing, answer
    status, answer = call("claude-sonnet-4-6", restricted_key(openai_gateway))
    assert status == 403 and code_of(answer) == forbidden, answer
    status, answer = call("gpt-4o-mini", "sk-not-a-key-0000000000")
    assert status == 401, answer
