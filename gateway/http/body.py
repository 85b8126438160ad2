"""Reading a client's JSON body under ``limits.max_body_bytes``, refusing early what cannot be one.

Tornado's own body limit answers a bare, empty ``400`` and closes (for a
chunked body over it, or a ``Content-Length`` over it on a non-streaming
handler): not the endpoint's error shape, and not the 413 the contract asks
for. So these handlers lift Tornado's limit for their connection and count
the bytes themselves as they arrive; past the limit the answer is a 413 in the
endpoint's shape, after which Tornado stops reading and closes once the answer
is written. What is read is the limit plus at most one read buffer.
"""

from __future__ import annotations

from tornado.web import stream_request_body

from gateway.errors import ErrorKind, GatewayError
from gateway.http.base import BaseHandler

_UNLIMITED = 1 << 62


@stream_request_body
class JsonBodyHandler(BaseHandler):
    """A POST endpoint whose body is one JSON document; ``body_bytes()`` once ``post`` runs."""

    _parts: list[bytes]
    _size = 0
    _refused = False

    def prepare(self) -> None:
        self._parts = []
        if self.services.draining:  # every model endpoint refuses new work while the gateway drains
            self._refuse(GatewayError(ErrorKind.OVERLOADED, "the gateway is shutting down", retry_after_s=5))
            return
        limit = self.services.config.limits.max_body_bytes
        self.request.connection.set_max_body_size(_UNLIMITED)  # type: ignore[union-attr]
        content_type = self.request.headers.get("Content-Type")
        if content_type is not None and not _is_json(content_type):
            self._refuse(GatewayError(ErrorKind.INVALID_REQUEST, "Content-Type must be application/json",
                                      "Content-Type"))
            return
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            self._refuse_size(limit)

    def data_received(self, chunk: bytes) -> None:
        if self._finished or self._refused:
            return
        self._size += len(chunk)
        limit = self.services.config.limits.max_body_bytes
        if self._size > limit:
            self._parts = []
            self._refuse_size(limit)
            return
        self._parts.append(chunk)

    def body_bytes(self) -> bytes:
        parts, self._parts = self._parts, []
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _refuse_size(self, limit: int) -> None:
        self._refuse(GatewayError(ErrorKind.PAYLOAD_TOO_LARGE, f"the request body is over {limit} bytes"))

    def _refuse(self, error: GatewayError) -> None:
        self._refused = True
        self.fail(error)


def _is_json(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type, any parameters (``; charset=utf-8``)."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))
