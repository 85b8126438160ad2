"""The operator's API under ``/admin``: one bearer token, compared in constant time.

With ``admin.token`` empty the whole API is switched off and every admin path
answers 404 exactly like an unknown path, so a gateway without a token does
not even reveal that the API exists. The token is read from the running
config on every request, so a reload that changes or clears it applies at once.
"""

from __future__ import annotations

import hmac
from typing import Any

from gateway.errors import ErrorKind, GatewayError
from gateway.http.base import BaseHandler


INVALID_ADMIN_TOKEN = "invalid_admin_token"


def _bearer(header: str) -> str | None:
    if header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None


class AdminHandler(BaseHandler):
    """Base of every admin handler: 404 when the API is disabled, 401 without the right token."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")  # on every answer, errors included

    def prepare(self) -> None:
        token = self.services.config.admin.token
        if not token:
            raise GatewayError(ErrorKind.NOT_FOUND, f"no such endpoint: {self.request.path}")
        given = _bearer(self.request.headers.get("Authorization", ""))
        # Bytes, not str: compare_digest refuses non-ASCII str, and a client must not turn that into a 500.
        if given is None or not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
            raise GatewayError(ErrorKind.AUTHENTICATION, "missing or invalid admin token", code=INVALID_ADMIN_TOKEN)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if getattr(kwargs.get("exc_info", (None, None, None))[1], "code", None) == INVALID_ADMIN_TOKEN:
            self.set_header("WWW-Authenticate", 'Bearer realm="infermesh-admin"')
        super().write_error(status_code, **kwargs)


class ReloadHandler(AdminHandler):
    """``POST /admin/reload``: the same as SIGHUP; an invalid file is rejected with every problem listed."""

    def post(self) -> None:
        reload = self.services.reload
        if reload is None:
            raise GatewayError(ErrorKind.OVERLOADED, "reload is not available yet", retry_after_s=1)
        if reload():
            self.send_json(200, {"reloaded": True, "nodes": len(self.services.config.nodes),
                                 "models": len(self.services.config.models)})
        else:
            self.send_json(400, {"reloaded": False, "problems": self.services.reload_problems,
                                 "error": {"message": "the config file was rejected; the running config is kept",
                                           "type": "invalid_request_error", "param": None, "code": None}})


class NodesHandler(AdminHandler):
    """``GET /admin/nodes``: one row per (node, model) with breaker, latency, in-flight and recent verdicts."""

    def get(self) -> None:
        self.send_json(200, {"data": self.services.router.status()})
