"""Embedding vectors in OpenAI's two wire encodings: a list of floats, or base64 of little-endian float32s.

The official OpenAI SDKs ask for ``encoding_format: base64`` unless the caller names a format, and decode it
themselves; a caller who asks for base64 explicitly gets the string. So every embeddings answer in OpenAI's
shape honours the field, whichever node made the vectors (a Gemini node, an OpenAI-compatible one, the
built-in mock), and a node that answers base64 when floats were asked is read either way.
"""

from __future__ import annotations

import base64
import struct


def encode_vector(vector: list[float], encoding_format: object) -> list[float] | str:
    """``vector`` as an OpenAI client asked for it (``encoding_format``: ``"base64"``, or anything else: floats)."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def decode_vector(value: str) -> list[float]:
    """A base64 vector back to floats."""
    raw = base64.b64decode(value)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))
