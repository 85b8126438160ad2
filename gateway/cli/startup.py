"""Checks made before the gateway serves, each ending in one line an operator can act on.

* The demo key ``sk-demo-0000000000000000`` is public (it is in the README). A
  gateway that listens beyond loopback while that key still works gives its
  upstream quota to anyone, so it refuses to start unless ``--allow-demo-key``.
  "Still works" is asked of the ledger, not the YAML: accounts in the YAML only
  bootstrap an empty ledger, so deleting the demo account from the file does
  not revoke a key the ledger already holds.
* Binding errors (port in use, address not on this machine, port below 1024)
  become one sentence instead of a traceback.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

from gateway.ledger.keys import AuthStatus

DEMO_KEY = "sk-demo-0000000000000000"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; ``0.0.0.0`` and any other name are not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def demo_key_refusal(ledger: Any, config_has_demo_key: bool, host: str, allowed: bool) -> str | None:
    """The line to print and exit 1 with, or None when starting is safe (or explicitly allowed)."""
    if allowed or is_loopback(host):
        return None
    live = config_has_demo_key
    try:
        status, _ = await ledger.authenticate(DEMO_KEY)
        live = status is AuthStatus.OK
    except Exception:  # the ledger is unreachable (Redis down): judge by the config alone
        pass
    if not live:
        return None
    return (f"refusing to listen on {host}: the public demo key {DEMO_KEY} still works. Revoke it "
            f"(python gateway.py admin keys revoke KEY_ID; see docs/operations.md), listen on 127.0.0.1, "
            f"or pass --allow-demo-key")


def port_problem(host: str, port: int) -> str | None:
    """For ``--workers``: bind the port once (as the workers will, SO_REUSEPORT) before forking them, so a busy
    port is one line here instead of workers that fail and are restarted."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return bind_problem(error, host, port)
    return None


def bind_problem(error: OSError, host: str, port: int) -> str:
    """One line for an OSError from binding the listening socket."""
    where = f"{host}:{port}"
    if error.errno == errno.EADDRINUSE:
        return (f"cannot listen on {where}: the port is already in use (another gateway?); "
                f"stop it or choose another port with --port")
    if error.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: that address is not on this machine (check listen.host / --host)"
    if error.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges; use 8080)"
    return f"cannot listen on {where}: {error.strerror or error}"
