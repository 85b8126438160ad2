"""Tests fail on any ERROR log record they did not expect (tornado.testing.ExpectLog's habit).

An autouse fixture (tests/conftest.py) puts an :class:`ErrorLogGuard` on the
root logger for each test. A gateway running in the test process (a thread of
its own, see ``RunningGateway``) logs there too, so an "Uncaught exception",
an "Exception in callback" or a ledger error fails the test that caused it.
A test that provokes an error on purpose says so::

    with expect_log("infermesh.ledger", "Redis .* is unreachable"):
        ...

and fails if the expected record never came (``required=False`` when it may not).
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from typing import Iterator

_current: ErrorLogGuard | None = None


class _Expected:
    def __init__(self, logger: str, pattern: str) -> None:
        self.logger = logger
        self.regex = re.compile(pattern)
        self.seen = 0

    def matches(self, record: logging.LogRecord) -> bool:
        name = record.name
        return ((name == self.logger or name.startswith(self.logger + "."))
                and self.regex.search(record.getMessage()) is not None)


class ErrorLogGuard(logging.Handler):
    """Collects the ERROR (and worse) records nobody expected."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.unexpected: list[logging.LogRecord] = []
        self._expected: list[_Expected] = []

    def emit(self, record: logging.LogRecord) -> None:
        for expected in self._expected:
            if expected.matches(record):
                expected.seen += 1
                return
        self.unexpected.append(record)

    def report(self) -> str:
        return "\n".join(f"{r.name} {r.levelname}: {r.getMessage()}" for r in self.unexpected)


@contextmanager
def guard() -> Iterator[ErrorLogGuard]:
    """Install a guard on the root logger for the duration (the autouse fixture's body)."""
    global _current
    handler, outer = ErrorLogGuard(), _current
    root = logging.getLogger()
    root.addHandler(handler)
    _current = handler
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        _current = outer


@contextmanager
def expect_log(logger: str, pattern: str, required: bool = True) -> Iterator[None]:
    """ERROR records from ``logger`` (or its children) matching ``pattern`` are expected inside the block."""
    if _current is None:
        raise RuntimeError("expect_log needs the error-log guard (tests/conftest.py installs it for every test)")
    expected = _Expected(logger, pattern)
    _current._expected.append(expected)
    try:
        yield
    finally:
        _current._expected.remove(expected)
    if required and not expected.seen:
        raise AssertionError(f"expected an ERROR record from {logger!r} matching {pattern!r}; none was logged")
