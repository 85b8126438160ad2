"""The API keys tests use, each defined once."""

from __future__ import annotations

# The demo account's key in conf/gateway.yaml (and the ledger unit tests' bootstrap account).
DEMO_KEY = "sk-demo-0000000000000000"

# The funded "test" account of tests.conftest.base_config.
TEST_KEY = "sk-test-0000000000000000"
