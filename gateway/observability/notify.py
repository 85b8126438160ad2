"""The systemd notification protocol (``sd_notify``), in a few lines and no dependency.

With ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``: a Unix datagram socket,
a filesystem path or, when it starts with ``@``, a name in the abstract
namespace. Each notification is one datagram of ``KEY=VALUE`` lines. The
gateway sends ``READY=1`` once the ledger is loaded and the port is bound,
``RELOADING=1`` then ``READY=1`` around a reload, and ``STOPPING=1`` when it
starts draining. Outside systemd (no variable) every call is a no-op.

Failures are swallowed: a lost notification must never take the gateway down
(systemd then times the start out, which is its own, visible, signal).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Mapping


class Notifier:
    """Sends notifications to one socket address, or nowhere when there is none."""

    def __init__(self, address: str | None) -> None:
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # the abstract namespace: a leading NUL byte, no file
        self.address = address or None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        return cls((os.environ if environ is None else environ).get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *states: str) -> bool:
        """Send ``states`` (``"READY=1"``, ``"STATUS=..."``) as one datagram; True if it was sent."""
        if self.address is None or not states:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall("\n".join(states).encode())
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        # systemd >= 253 wants the monotonic time with RELOADING=1 to order it against the reload request.
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))
