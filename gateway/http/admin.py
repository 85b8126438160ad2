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


def _bearer(header: str) -> str | None:
    if header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None


class AdminHandler(BaseHandler):
    """Base of every admin handler: 404 when the API is disabled, 401 without the right token."""

    def prepare(self) -> None:
        token = self.services.config.admin.token
        if not token:
            self.send_error_json(GatewayError(ErrorKind.NOT_FOUND, f"no such endpoint: {self.request.path}"))
            return
        given = _bearer(self.request.headers.get("Authorization", ""))
        # Bytes, not str: compare_digest refuses non-ASCII str, and a client must not turn that into a 500.
        if given is None or not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
            self.set_header("WWW-Authenticate", 'Bearer realm="infermesh-admin"')
            self.send_error_json(GatewayError(ErrorKind.AUTHENTICATION, "missing or invalid admin token",
                                              code="invalid_admin_token"))
            return
        self.set_header("Cache-Control", "no-store")

    def send_json(self, status: int, payload: Any) -> None:
        self.set_header("Cache-Control", "no-store")
        super().send_json(status, payload)


class ReloadHandler(AdminHandler):
    """``POST /admin/reload``: the same as SIGHUP; an invalid file is rejected with every problem listed."""

    def post(self) -> None:
        reload = self.services.reload
        if reload is None:
            self.send_error_json(GatewayError(ErrorKind.OVERLOADED, "reload is not available yet", retry_after_s=1))
        elif reload():
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
