"""Upstream secrets never leave the gateway: every configured provider key and the admin token
become ``[redacted]`` in whatever is sent to a client or written to a log.

Some providers quote the credential they were sent in their errors ("invalid
key sk-..."), and a client that triggers such an error on purpose would
otherwise collect the operator's key. The matcher is built when a config is
loaded: a tuple of the secrets as bytes and as text (plus the ``\\/`` form a
JSON encoder may give a ``/``), longest first. On the hot path each relayed
chunk costs one substring search per secret (C speed, no regex, no copy); only
a hit pays for a replace.

One redactor per process, and it only grows: a reloaded config adds its
secrets, and a key rotated out of the config is still worth hiding. (Several
gateways in one process, as in the tests, share it; hiding one's secrets from
another's output is never wrong.)
"""

from __future__ import annotations

from typing import Iterable

from gateway.config_types import Config

MASK = "[redacted]"
MIN_SECRET_CHARS = 8  # shorter "secrets" (a placeholder like "x") would mangle ordinary text


class Redactor:
    __slots__ = ("secrets", "_bytes", "_texts")

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = frozenset(s for s in secrets if len(s) >= MIN_SECRET_CHARS)
        forms = {form for s in self.secrets for form in (s, s.replace("/", "\\/"))}
        ordered = sorted(forms, key=len, reverse=True)  # a key containing another key goes first
        self._texts = tuple(ordered)
        self._bytes = tuple(form.encode() for form in ordered)

    def bytes(self, data: bytes) -> bytes:
        for secret in self._bytes:
            if data.find(secret) >= 0:  # not ``in`` (slow for bytes): see gateway/protocols/sse.py
                data = data.replace(secret, b"[redacted]")
        return data

    def text(self, text: str) -> str:
        for secret in self._texts:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


_current = Redactor(())


def secrets_of(config: Config) -> set[str]:
    return {node.api_key for node in config.nodes if node.api_key} | ({config.admin.token} - {""})


def register(config: Config) -> Redactor:
    """Add a loaded config's secrets to the process's redactor (at start and on every reload)."""
    global _current
    secrets = secrets_of(config)
    if not secrets <= _current.secrets:
        _current = Redactor(_current.secrets | secrets)
    return _current


def current() -> Redactor:
    return _current
