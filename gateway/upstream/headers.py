"""Upstream request headers, encoded once per node for libcurl.

libcurl takes request headers as a list of ``b"Name: value"`` lines
(``CURLOPT_HTTPHEADER``). Tornado's client rebuilt that list on every request
(a header dict copied into ``HTTPHeaders``, each line encoded and checked
against a regex). A node's headers only change on reload, so the list is
built when the node's endpoints are, and a request that forwards a client
header (``anthropic-beta``) derives a new block from it without touching
the node's.
"""

from __future__ import annotations

from typing import Mapping

# libcurl adds "Expect: 100-continue" to large POSTs (a round trip of delay, badly supported upstream)
# and "Pragma: no-cache" to some requests; a header with nothing after its colon is libcurl's way to drop one.
_SUPPRESSED = {"expect": "Expect", "pragma": "Pragma"}


class HeaderBlock:
    """Immutable request header lines; ``lines`` is what ``CURLOPT_HTTPHEADER`` receives."""

    __slots__ = ("lines", "_headers")

    def __init__(self, headers: Mapping[str, str]) -> None:
        """Raises ValueError for a CR, LF or NUL in a name or value (header injection)."""
        lines: list[bytes] = []
        lower: set[str] = set()
        for name, value in headers.items():
            raw_name, raw_value = name.strip().encode("ascii"), value.strip().encode("latin-1")
            if not raw_name or b":" in raw_name or any(c in raw_name + raw_value for c in b"\r\n\0"):
                raise ValueError(f"illegal character in upstream header {name!r}")
            lines.append(raw_name + b": " + raw_value if raw_value else raw_name + b":")
            lower.add(name.strip().lower())
        lines += [name.encode("ascii") + b":" for key, name in _SUPPRESSED.items() if key not in lower]
        self.lines: tuple[bytes, ...] = tuple(lines)
        self._headers = dict(headers)

    def with_overrides(self, overrides: Mapping[str, str]) -> HeaderBlock:
        """A new block: these headers replace any of the same name (case-insensitive), the rest kept."""
        replaced = {name.lower() for name in overrides}
        kept = {name: value for name, value in self._headers.items() if name.lower() not in replaced}
        return HeaderBlock({**kept, **overrides})
