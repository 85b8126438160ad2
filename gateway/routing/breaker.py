"""Circuit breaker for one (node, model) pair, with an injected clock.

A node that keeps failing should stop costing every request a timeout, yet
must get back into rotation by itself once it recovers. The classic three
states do that:

* CLOSED: every request may use it; ``failure_threshold`` consecutive
  failures open it.
* OPEN: nobody may use it for ``open_s`` seconds.
* HALF_OPEN: after that, exactly one request (the probe) may use it. Its
  success closes the breaker; its failure opens it again for a fresh
  ``open_s``. Everyone else keeps away until the probe's verdict is in, so a
  still-dead node costs one request per ``open_s``, not a burst.

HALF_OPEN is not stored: it is OPEN whose time is up, so the breaker needs no
timer and reads correctly whenever it is asked.
"""

from __future__ import annotations

from enum import Enum
from typing import Callable


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    """Consecutive-failure breaker; verdicts are reported by the caller."""

    __slots__ = ("_threshold", "_open_s", "_clock", "_open", "_failures", "_opened_at", "_probing")

    def __init__(self, failure_threshold: int, open_s: float, clock: Callable[[], float]) -> None:
        self._threshold = failure_threshold
        self._open_s = open_s
        self._clock = clock
        self._open = False
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """Time-aware: an OPEN breaker whose ``open_s`` has passed reads HALF_OPEN."""
        if not self._open:
            return BreakerState.CLOSED
        if self._probing or self._clock() - self._opened_at >= self._open_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def probe_in_flight(self) -> bool:
        """True while the single half-open probe is out, so a router can skip the node without claiming."""
        return self._probing

    def allow(self) -> bool:
        """May a request use the node now? In HALF_OPEN the one True claims the probe slot."""
        if not self._open:
            return True
        if self._probing or self._clock() - self._opened_at < self._open_s:
            return False
        self._probing = True
        return True

    def record_success(self) -> None:
        """A success while closed resets the count; the probe's success closes the breaker.

        An open breaker with no probe out admitted nobody, so a verdict arriving
        then comes from an attempt started before it opened: it is ignored, or
        a long stream that began before an outage could close the breaker on a
        node that is down now.
        """
        if self._open and not self._probing:
            return
        self._open = False
        self._probing = False
        self._failures = 0

    def record_failure(self) -> None:
        """Count a failure while closed; a failed probe re-opens for a fresh ``open_s``.

        Stale failures while open are ignored: they must not extend the cool-down.
        """
        if self._open and not self._probing:
            return
        if self._probing:
            self._trip()
            return
        self._failures += 1
        if self._failures >= self._threshold:
            self._trip()

    def release(self) -> None:
        """End an attempt that gave no verdict (client gone, hedge loser): free the probe slot, count nothing.

        Only the attempt that claimed the probe may call it; the router knows
        which one that is, the breaker does not.
        """
        self._probing = False

    def _trip(self) -> None:
        self._open = True
        self._probing = False
        self._failures = 0
        self._opened_at = self._clock()
