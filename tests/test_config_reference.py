"""docs/configuration.md names every config key the code accepts, so the reference cannot fall behind.

The keys come from the config reader itself: a reader that records each mapping it
checks (path and allowed keys) reads a config touching every section. A key added
to ``gateway/config.py`` without a line in the reference fails here.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.config import _Reader
from tests.conftest import ROOT

REFERENCE = ROOT / "docs" / "configuration.md"


class RecordingReader(_Reader):
    """The real reader; it also notes every (path, allowed keys) it validates."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env)
        self.keys: set[str] = set()

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        general = re.sub(r"\[\d+\]", "[]", path)
        if general.startswith("models."):
            general = ".".join(["models", "<id>"] + general.split(".")[2:])
        if not general.endswith(".headers"):  # header names are the operator's own
            self.keys.update(f"{general}.{key}" if general else key for key in allowed)
        return super().mapping(value, path, allowed)


def accepted_keys() -> set[str]:
    reader = RecordingReader({})
    reader.config({"nodes": [{"id": "n", "provider": "mock", "models": ["m"], "mock": {}, "headers": {}}],
                   "models": {"m": {"price": {"input": 1}}}, "accounts": [{"id": "a"}]})
    assert not reader.problems, reader.problems
    return reader.keys


def test_every_accepted_key_is_in_the_reference() -> None:
    keys = accepted_keys()
    assert {"listen.host", "nodes[].mock.token_delay_ms", "models.<id>.price.input", "accounts[].keys"} <= keys
    text = REFERENCE.read_text()
    missing = sorted(key for key in keys if f"`{key}`" not in text)
    assert not missing, f"docs/configuration.md does not document: {', '.join(missing)}"


def test_the_reference_documents_no_key_the_code_refuses() -> None:
    keys = accepted_keys()
    documented = set(re.findall(r"^\| `([a-z_<>\[\].0-9]+)` \|", REFERENCE.read_text(), re.MULTILINE))
    assert documented and documented <= keys, sorted(documented - keys)


def test_the_documentation_stands_alone() -> None:
    """README and docs/ are read by people who have only the repository: no "see the contract's §2"."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        assert "§" not in text and "contract" not in text.lower(), path.name
