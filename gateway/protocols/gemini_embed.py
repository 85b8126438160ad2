"""Embeddings between the two wire formats: OpenAI ``/v1/embeddings`` and Gemini's embed actions.

Client endpoints: ``embeddings`` (OpenAI), ``gemini_embed`` (``:embedContent``,
one content) and ``gemini_embeddings`` (``:batchEmbedContents``). Node
protocols: ``embeddings`` (OpenAI-compatible and mock nodes) and
``gemini_embeddings`` (Gemini nodes are always asked with
``batchEmbedContents``, so one content is a batch of one). Between them the
only common ground is a list of texts, an optional dimension, and a list of
vectors: that is the whole canonical form here.

Gemini reports no token counts for embeddings, so usage from a Gemini node is
estimated as characters / 4, rounded up (OpenAI's rule of thumb for English).
``taskType`` and ``title`` have no OpenAI equivalent and are dropped for
OpenAI nodes (kept on Gemini nodes).
"""

from __future__ import annotations

from typing import Any

from gateway.protocols.canonical import ProtocolError, Usage
from gateway.protocols.embedding_format import decode_vector, encode_vector
from gateway.protocols.names import Protocol


def texts_of(client: Protocol, body: dict) -> tuple[list[str], int | None]:
    """The texts to embed and the requested dimension, from any client's request."""
    if client == Protocol.EMBEDDINGS:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise ProtocolError("input must be a string or a non-empty list of strings", "input")
        for i, text in enumerate(inputs):
            if not isinstance(text, str):
                raise ProtocolError("Gemini embedding models accept only text input, not token arrays", f"input[{i}]")
        return inputs, body.get("dimensions")
    items = [body] if client == Protocol.GEMINI_EMBED else body.get("requests")
    if not isinstance(items, list) or not items or len(items) > 2048:
        raise ProtocolError("requests must be a non-empty array of at most 2048 items", "requests")
    texts: list[str] = []
    dims: int | None = None
    for i, item in enumerate(items):
        path = "" if client == Protocol.GEMINI_EMBED else f"requests[{i}]."
        content = item.get("content") if isinstance(item, dict) else None
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts or not all(
                isinstance(p, dict) and isinstance(p.get("text"), str) for p in parts):
            raise ProtocolError("content must have text parts", path + "content")
        texts.append(" ".join(p["text"] for p in parts))
        size = item.get("outputDimensionality")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 65536:
                raise ProtocolError("outputDimensionality must be an integer from 1 to 65536",
                                    path + "outputDimensionality")
            dims = size
    return texts, dims


def node_request(client: Protocol, node: Protocol, body: dict, upstream_model: str) -> dict:
    """The embeddings request for the node, from any client's request."""
    texts, dims = texts_of(client, body)
    if node == Protocol.EMBEDDINGS:
        out: dict[str, Any] = {"model": upstream_model, "input": texts, "encoding_format": "float"}
        if dims:
            out["dimensions"] = dims
        return out
    if client == Protocol.GEMINI_EMBED:  # a Gemini client on a Gemini node: the same item, in a batch of one
        item = {key: value for key, value in body.items() if key != "fallback_models"}
        return {"requests": [{**item, "model": "models/" + upstream_model}]}
    requests = []
    for text in texts:
        request: dict[str, Any] = {"model": "models/" + upstream_model, "content": {"parts": [{"text": text}]}}
        if dims:
            request["outputDimensionality"] = dims
        requests.append(request)
    return {"requests": requests}


def passthrough_request(body: dict, upstream_model: str) -> dict:
    """A Gemini client's batch for a Gemini node: every item names the node's own model."""
    return {"requests": [{**item, "model": "models/" + upstream_model} for item in body.get("requests") or ()]}


def _vectors(node: Protocol, body: dict) -> list[list[float]]:
    if node == Protocol.EMBEDDINGS:
        vectors = []
        for item in sorted(body.get("data") or (), key=lambda d: d.get("index", 0)):
            vector = item.get("embedding")
            if isinstance(vector, str):  # a node that answers base64 whatever was asked
                vector = decode_vector(vector)
            vectors.append(vector or [])
        return vectors
    return [item.get("values") or [] for item in body.get("embeddings") or ()]


def client_response(client: Protocol, node: Protocol, body: dict, public_model: str,
                    request: dict) -> tuple[dict, Usage]:
    """The node's embeddings reply in the client's format, and the usage to bill."""
    vectors = _vectors(node, body)
    if node == Protocol.EMBEDDINGS:
        usage = Usage(int((body.get("usage") or {}).get("prompt_tokens") or 0), 0, 0)
    else:
        chars = sum(len(text) for text in texts_of(client, request)[0])
        usage = Usage(-(-chars // 4), 0, 0)
    if client == Protocol.GEMINI_EMBED:
        return {"embedding": {"values": vectors[0] if vectors else []}}, usage
    if client == Protocol.GEMINI_EMBEDDINGS:
        return {"embeddings": [{"values": vector} for vector in vectors]}, usage
    encoding_format = request.get("encoding_format")
    data = [{"object": "embedding", "index": i, "embedding": encode_vector(v, encoding_format)}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": public_model,
            "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens}}, usage
