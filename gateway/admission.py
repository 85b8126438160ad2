"""Admission: what every model request passes before any upstream is asked.

One entry point, :func:`admit`, for every endpoint family that reaches a model:
the model pipeline (chat, responses, messages, embeddings), Anthropic's
``count_tokens``, and any new client protocol (Gemini's ``/v1beta`` endpoints).
In order, it

1. authenticates the key (an API key; management keys get 403),
2. parses the body (valid UTF-8 JSON, ``protocols/body.py``),
3. inspects the few fields the gateway must check (``protocols/inspect.py``)
   and validates the request where its protocol has deep checks,
4. resolves the model (and any ``fallback_models``) through the catalogue,
   refusing a model of the wrong kind (chat vs embedding),
5. checks the key may use each of them,

and returns an :class:`Admission`, or raises ``GatewayError`` with the same
status, message and code whichever endpoint was called. A billed endpoint then
calls :func:`reserve` (the estimate held against the balance; the ledger's own
exceptions propagate and are mapped once, ``gateway.errors.ledger_error``);
an unbilled one (``count_tokens``) does not.

A protocol passes its own ``endpoint`` name (which ``inspect_request`` must
know). Gemini's endpoints name the model and the stream flag in the URL
(``/v1beta/models/{model}:streamGenerateContent``): pass them as ``url_model``
and ``url_stream``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from gateway.auth import Caller, authenticate
from gateway.config import Model, normalize_model_id
from gateway.errors import ErrorKind, GatewayError
from gateway.ledger.backend import Reservation
from gateway.ledger.keys import KeyInfo
from gateway.protocols import translate
from gateway.protocols.body import parse_body
from gateway.protocols.canonical import ProtocolError
from gateway.protocols.inspect import DEFAULT_OUTPUT_RESERVE, RequestFacts, inspect_request
from gateway.protocols.names import EMBEDDING_ENDPOINTS, Protocol
from gateway.services import Services

@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted request: who asks, what they sent, and which model(s) may serve it."""

    key: KeyInfo
    body: dict[str, Any]
    facts: RequestFacts
    model: Model
    fallbacks: list[Model] | None  # the request's own fallback_models, resolved; None: the model's configured ones


async def admit(services: Services, endpoint: Protocol, raw: bytes, api_key: str | None, *,
                url_model: str | None = None, url_stream: bool = False,
                on_authenticated: Callable[[KeyInfo], None] | None = None) -> Admission:
    """Authenticate, parse, inspect, resolve and permit (see the module doc); raises GatewayError.

    ``on_authenticated`` learns the key as soon as it is known, so the access log names the account
    even of a request that is then refused.
    """
    key = await authenticate(services.ledger, api_key, Caller.MODELS)
    if on_authenticated is not None:
        on_authenticated(key)
    try:
        body = parse_body(raw)
        facts = inspect_request(endpoint, body, len(raw), url_model, url_stream)
        if endpoint not in EMBEDDING_ENDPOINTS:
            translate.validate_request(endpoint, body)  # deep checks where the protocol has them
    except ProtocolError as exc:
        raise GatewayError(ErrorKind.INVALID_REQUEST, exc.message, exc.param) from None
    model = _resolve(services, facts.model, endpoint, "model")
    _check_allowed(key, model)
    fallbacks = None
    if facts.fallback_models is not None:
        fallbacks = [_resolve(services, m, endpoint, "fallback_models") for m in facts.fallback_models]
        for fallback in fallbacks:
            _check_allowed(key, fallback)
    return Admission(key, body, facts, model, fallbacks)


async def reserve(services: Services, admission: Admission, request_id: str) -> Reservation:
    """Hold the request's estimated cost (prompt estimate at the input price + its output limit at the
    output price) and count it against the key's rate limits; the ledger's exceptions propagate."""
    facts = admission.facts
    max_output = facts.max_output_tokens or DEFAULT_OUTPUT_RESERVE
    estimate = services.prices.estimate_nano(normalize_model_id(admission.model.id), facts.prompt_tokens_estimate,
                                             max_output)
    return await services.ledger.reserve(admission.key, estimate, request_id,
                                         tokens=facts.prompt_tokens_estimate + max_output)


def _resolve(services: Services, model_id: str, endpoint: Protocol, param: str) -> Model:
    model = services.config.find_model(model_id)
    if model is None:
        raise GatewayError(ErrorKind.NOT_FOUND, f"the model '{model_id}' does not exist", param,
                           code="model_not_found")
    if (model.kind == "embedding") != (endpoint in EMBEDDING_ENDPOINTS):
        kind = "an embedding model" if model.kind == "embedding" else "not an embedding model"
        raise GatewayError(ErrorKind.INVALID_REQUEST, f"the model '{model_id}' is {kind}", param)
    return model


def _check_allowed(key: KeyInfo, model: Model) -> None:
    if not key.allows(normalize_model_id(model.id)):
        raise GatewayError(ErrorKind.PERMISSION, f"this key may not use the model '{model.id}'", "model",
                           code="model_not_allowed")
