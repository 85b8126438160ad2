"""The error-log guard every test runs under (tests/support/logs.py)."""

from __future__ import annotations

import logging

import pytest

from tests.support.logs import expect_log, guard


def test_an_unexpected_error_record_is_caught_and_an_expected_one_is_not() -> None:
    log = logging.getLogger("infermesh.test")
    with expect_log("infermesh.test", "boom|expected"):  # for the autouse guard around this test
        with guard() as inner:
            with expect_log("infermesh.test", r"expected \d"):
                log.error("expected 1")
            log.error("boom")
            log.warning("a warning is not an error")
    assert [record.getMessage() for record in inner.unexpected] == ["boom"]


def test_an_expected_record_that_never_comes_fails() -> None:
    with pytest.raises(AssertionError, match="none was logged"):
        with expect_log("infermesh.test", "never"):
            pass
