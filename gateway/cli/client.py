"""A small HTTP client for the admin API (stdlib only: the CLI must start fast and need nothing extra)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT_S = 30.0


class AdminError(Exception):
    """Anything that ends a command with exit 1; the message is the one line the operator sees."""


class AdminClient:
    """``request`` one admin endpoint and get its JSON (or text) back; an error answer raises AdminError
    carrying the API's own message."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                query: dict[str, str] | None = None) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return _decode(response.read(), response.headers.get_content_type())
        except urllib.error.HTTPError as error:
            raise AdminError(_error_message(error)) from None
        except urllib.error.URLError as error:
            reason = error.reason.strerror if isinstance(error.reason, OSError) else error.reason
            raise AdminError(f"cannot reach the gateway at {self.base_url}: {reason} "
                             f"(is it running? pass --url)") from None
        except (socket.timeout, TimeoutError):
            raise AdminError(f"the gateway at {self.base_url} did not answer within {TIMEOUT_S:.0f} s") from None


def _decode(raw: bytes, content_type: str) -> Any:
    if content_type == "application/json":
        return json.loads(raw)
    return raw.decode("utf-8", "replace")


def _error_message(error: urllib.error.HTTPError) -> str:
    """The API's message (``{"error": {"message"}}``), or the status line when the answer is not ours."""
    try:
        body = json.loads(error.read())
        message = body["error"]["message"]
        problems = body.get("problems")
        if problems:
            message += ": " + "; ".join(str(p) for p in problems)
        if error.code == 404 and message.startswith("no such endpoint"):
            message += " (the admin API is off until admin.token is set in the gateway's config)"
        return f"{message} (HTTP {error.code})"
    except (ValueError, KeyError, TypeError):
        pass
    return f"HTTP {error.code} {error.reason}"
