"""The one route table, and the services built once for the whole process."""

from __future__ import annotations

from typing import Any

from tornado.web import Application, RequestHandler

from gateway.http.accounts import (
    AdminAccountsHandler,
    AdminCreditHandler,
    AdminKeyHandler,
    AdminKeysHandler,
    AdminUsageHandler,
    BalanceHandler,
    UsageHandler,
)
from gateway.http.admin import NodesHandler, ReloadHandler
from gateway.http.base import NotFoundHandler
from gateway.http.console import ConsoleHandler
from gateway.http.count_tokens import CountTokensHandler
from gateway.http.gemini import GeminiHandler
from gateway.http.handlers import (
    GeminiModelsHandler,
    HealthHandler,
    MetricsHandler,
    ModelHandler,
    ModelsHandler,
    PricingHandler,
    ReadyHandler,
)
from gateway.http.keys import KeyHandler, KeysHandler, UsageSummaryHandler
from gateway.pipeline import Pipeline
from gateway.protocols.names import Protocol
from gateway.services import Services

MODEL_ENDPOINTS = {
    "/v1/chat/completions": Protocol.CHAT,
    "/v1/responses": Protocol.RESPONSES,
    "/v1/messages": Protocol.MESSAGES,
    "/v1/embeddings": Protocol.EMBEDDINGS,
}


def make_app(services: Services) -> Application:
    pipeline = Pipeline(services)
    shared: dict[str, Any] = {"services": services}
    routes: list[tuple[str, type[RequestHandler], dict[str, Any]]] = [
        (path, ModelHandler, {**shared, "pipeline": pipeline, "endpoint": endpoint})
        for path, endpoint in MODEL_ENDPOINTS.items()
    ]
    routes.append((r"/v1/messages/count_tokens", CountTokensHandler, shared))  # Anthropic token counting, unbilled
    routes += [  # the Gemini API (google-genai SDK, Gemini CLI); POST actions also under /v1, the SDK's default
        (r"/v1beta/models/([^/:]+):([A-Za-z]+)", GeminiHandler, {**shared, "pipeline": pipeline}),
        # under /v1 only Gemini's own actions: an OpenAI model id may contain a colon (GET /v1/models/acme:davinci)
        (r"/v1/models/([^/:]+):(generateContent|streamGenerateContent|countTokens|embedContent|batchEmbedContents)",
         GeminiHandler, {**shared, "pipeline": pipeline}),
        (r"/v1beta/models", GeminiModelsHandler, shared),
        (r"/v1beta/models/([^/:]+)", GeminiModelsHandler, shared),
    ]
    routes += [
        (r"/v1/models", ModelsHandler, shared),
        (r"/v1/models/([^/]+)", ModelsHandler, shared),
        (r"/pricing", PricingHandler, shared),
        (r"/healthz", HealthHandler, shared),
        (r"/readyz", ReadyHandler, shared),
        (r"/admin/nodes", NodesHandler, shared),
        (r"/admin/reload", ReloadHandler, shared),
    ]
    routes += [  # the ledger: a caller's own view (API key) and the admin API (admin token)
        (r"/v1/balance", BalanceHandler, shared),
        (r"/v1/usage", UsageHandler, shared),
        (r"/admin/accounts", AdminAccountsHandler, shared),
        (r"/admin/accounts/([^/]+)", AdminAccountsHandler, shared),
        (r"/admin/accounts/([^/]+)/credit", AdminCreditHandler, shared),
        (r"/admin/accounts/([^/]+)/keys", AdminKeysHandler, shared),
        (r"/admin/keys/([^/]+)", AdminKeyHandler, shared),
        (r"/admin/usage", AdminUsageHandler, shared),
    ]
    routes += [  # the console (docs/console.md): static page + self-service keys (management key) and usage summary
        (r"/console/?", ConsoleHandler, shared),
        (r"/console/static/([^/]+)", ConsoleHandler, shared),
        (r"/v1/keys", KeysHandler, shared),
        (r"/v1/keys/([^/]+)", KeyHandler, shared),
        (r"/v1/usage/summary", UsageSummaryHandler, shared),
    ]
    if services.config.listen.metrics_port is None:
        routes.append((r"/metrics", MetricsHandler, shared))
    return Application(routes, default_handler_class=NotFoundHandler, default_handler_args=shared,
                       compress_response=False, log_function=_no_tornado_access_log)


def make_metrics_app(services: Services) -> Application:
    """``/metrics`` alone, for ``listen.metrics_port``: a scrape port that can stay private."""
    shared = {"services": services}
    return Application([(r"/metrics", MetricsHandler, shared)], default_handler_class=NotFoundHandler,
                       default_handler_args=shared, log_function=_no_tornado_access_log)


def _no_tornado_access_log(handler: object) -> None:
    """Our own access log (one JSON line, no keys) replaces Tornado's."""
