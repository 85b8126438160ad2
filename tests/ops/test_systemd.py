"""``systemd/infermesh.service``: the directives operations rely on, and ``systemd-analyze verify`` when present."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNIT = ROOT / "systemd" / "infermesh.service"


def _directives() -> dict[str, list[str]]:
    """``Key`` -> every value, across sections (systemd allows repeated keys)."""
    found: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_has_the_required_directives():
    unit = _directives()
    one = {key: values[-1] for key, values in unit.items()}
    assert one["Type"] == "notify"
    start = one["ExecStart"].split()
    assert start[0] == "/opt/infermesh/venv/bin/python" and start[1].endswith("/gateway.py")
    assert start[start.index("--config") + 1] == "/etc/infermesh/gateway.yaml"
    assert "/bin/kill -HUP $MAINPID" in unit["ExecReload"]
    assert one["Restart"] == "on-failure"
    assert one["User"] == "infermesh"
    assert one["StateDirectory"] == "infermesh"
    assert "INFERMESH_STATE_DIR=/var/lib/infermesh" in unit["Environment"]
    assert one["EnvironmentFile"] == "-/etc/infermesh/infermesh.env"
    assert one["LimitNOFILE"] == "65536"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectControlGroups", "RestrictNamespaces", "LockPersonality",
                "MemoryDenyWriteExecute"):
        assert one[key] == "yes", key
    assert one["ProtectSystem"] == "strict"
    assert one["RestrictAddressFamilies"].split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert one["SystemCallArchitectures"] == "native"
    assert one["CapabilityBoundingSet"] == ""
    assert one["WantedBy"] == "multi-user.target"


def test_stop_timeout_outlasts_the_drain_grace():
    unit = _directives()
    start = unit["ExecStart"][-1].split()
    grace = float(start[start.index("--drain-grace") + 1]) if "--drain-grace" in start else 30.0
    assert float(unit["TimeoutStopSec"][-1]) >= grace + 5


def test_shipped_config_reads_the_state_directory_from_the_environment():
    assert "${INFERMESH_STATE_DIR:-data}" in (ROOT / "conf" / "gateway.yaml").read_text()
    example = (ROOT / "systemd" / "infermesh.env.example").read_text()
    assert "INFERMESH_ADMIN_TOKEN=" in example


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path: Path):
    """Verify a copy whose executables exist here (verify checks them); any warning fails the test."""
    text = UNIT.read_text().replace("/opt/infermesh/venv/bin/python", sys.executable) \
        .replace("/opt/infermesh/gateway.py", str(ROOT / "gateway.py"))
    unit = tmp_path / "infermesh.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=30)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output
