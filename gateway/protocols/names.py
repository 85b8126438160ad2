"""The protocols the gateway speaks, by name: one enum instead of bare strings.

A client endpoint (the API a request arrived on) and a node protocol (the API
the gateway speaks to an upstream) are both named by a ``Protocol``. It is a
``StrEnum``, so each member *is* its old string: metrics labels, log fields,
dict lookups and comparisons with plain strings keep their values, while mypy
rejects a misspelt name in code that is typed with it.
"""

from __future__ import annotations

from enum import StrEnum


class Protocol(StrEnum):
    CHAT = "chat"  # OpenAI Chat Completions
    RESPONSES = "responses"  # OpenAI Responses
    MESSAGES = "messages"  # Anthropic Messages
    GEMINI = "gemini"  # Gemini generateContent / streamGenerateContent
    EMBEDDINGS = "embeddings"  # OpenAI embeddings
    GEMINI_EMBED = "gemini_embed"  # Gemini embedContent (one item)
    GEMINI_EMBEDDINGS = "gemini_embeddings"  # Gemini batchEmbedContents
    COUNT_TOKENS = "count_tokens"  # Anthropic /v1/messages/count_tokens (a client endpoint only)
    GEMINI_COUNT_TOKENS = "gemini_count_tokens"  # Gemini :countTokens (a client endpoint only)


EMBEDDING_ENDPOINTS = frozenset({Protocol.EMBEDDINGS, Protocol.GEMINI_EMBED, Protocol.GEMINI_EMBEDDINGS})
# model and stream in the URL
GEMINI_ENDPOINTS = frozenset({Protocol.GEMINI, Protocol.GEMINI_EMBED, Protocol.GEMINI_EMBEDDINGS,
                              Protocol.GEMINI_COUNT_TOKENS})
