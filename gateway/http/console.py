"""The console: ``GET /console`` and ``GET /console/static/<file>``, served from ``gateway/console/``.

Static files only, no build step and nothing from a CDN, so it works on a
gateway with no internet access. The page signs in with a management key
held in a JavaScript variable and calls the JSON API (``/v1/balance``,
``/v1/usage``, ``/v1/usage/summary``, ``/v1/keys``, ``/pricing``); see
docs/console.md.

Only the files listed in ``FILES`` are served (no path from the URL ever
reaches the file system). Every answer, 404s included, carries a strict
Content-Security-Policy (scripts and styles from this origin only, no inline
script, no framing, no form submission, no base-uri), ``X-Frame-Options: DENY``,
``Referrer-Policy: no-referrer`` and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from gateway.errors import ErrorKind, GatewayError
from gateway.http.base import BaseHandler

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"

FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
                           "form-action 'none'; frame-ancestors 'none'")

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}

_cache: dict[str, tuple[bytes, str]] = {}


def _load(name: str) -> tuple[bytes, str]:
    """The file's bytes and a strong ETag, read once per process (the files ship with the code)."""
    cached = _cache.get(name)
    if cached is None:
        data = (CONSOLE_DIR / name).read_bytes()
        cached = _cache[name] = (data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"')
    return cached


class ConsoleHandler(BaseHandler):
    """``/console`` (and ``/console/``) -> index.html; ``/console/static/<name>`` -> one of ``FILES``."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def get(self, name: str | None = None) -> None:
        self._serve(name, head=False)

    def head(self, name: str | None = None) -> None:
        self._serve(name, head=True)

    def _serve(self, name: str | None, head: bool) -> None:
        if name is None:
            name = "index.html"
        elif name not in FILES or name == "index.html":
            raise GatewayError(ErrorKind.NOT_FOUND, f"no such file: {self.request.path[:200]}")
        data, etag = _load(name)
        self.set_header("Content-Type", FILES[name])
        # The page is tiny: always revalidate, so an upgraded gateway never runs a stale script.
        self.set_header("Cache-Control", "no-cache")
        self.set_header("ETag", etag)
        if self.request.headers.get("If-None-Match") == etag:
            self.set_status(304)
            self.finish()
            return
        self.set_header("Content-Length", str(len(data)))
        self.finish(b"" if head else data)
