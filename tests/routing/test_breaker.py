from __future__ import annotations

from gateway.routing.breaker import Breaker, BreakerState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tripped(threshold: int = 3, open_s: float = 30.0) -> tuple[Breaker, FakeClock]:
    clock = FakeClock()
    breaker = Breaker(threshold, open_s, clock)
    for _ in range(threshold):
        breaker.record_failure()
    return breaker, clock


def test_starts_closed_and_allows_everyone() -> None:
    breaker = Breaker(3, 30.0, FakeClock())
    assert breaker.state is BreakerState.CLOSED
    assert all(breaker.allow() for _ in range(10))


def test_opens_after_threshold_consecutive_failures() -> None:
    breaker = Breaker(3, 30.0, FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_success_resets_the_consecutive_count() -> None:
    breaker = Breaker(3, 30.0, FakeClock())
    for _ in range(5):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_open_turns_half_open_once_open_s_passed() -> None:
    breaker, clock = tripped(open_s=30.0)
    clock.now += 29.999
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.now += 0.001
    assert breaker.state is BreakerState.HALF_OPEN


def test_half_open_admits_exactly_one_probe() -> None:
    breaker, clock = tripped()
    clock.now += 30
    assert breaker.allow()
    assert breaker.probe_in_flight
    assert [breaker.allow() for _ in range(5)] == [False] * 5
    clock.now += 1000  # waiting longer does not free the slot: only a verdict does
    assert not breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN


def test_successful_probe_closes() -> None:
    breaker, clock = tripped()
    clock.now += 30
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() and breaker.allow()


def test_failed_probe_reopens_for_a_fresh_open_s() -> None:
    breaker, clock = tripped(open_s=30.0)
    clock.now += 45
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.probe_in_flight
    clock.now += 29
    assert breaker.state is BreakerState.OPEN
    clock.now += 1
    assert breaker.allow()


def test_closed_again_needs_the_full_threshold_to_reopen() -> None:
    breaker, clock = tripped(threshold=3)
    clock.now += 30
    breaker.allow()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_release_frees_the_probe_slot_without_counting() -> None:
    breaker, clock = tripped()
    clock.now += 30
    assert breaker.allow()
    breaker.release()
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.probe_in_flight
    assert breaker.allow()  # the next request becomes the probe
    assert not breaker.allow()


def test_release_while_closed_changes_nothing() -> None:
    breaker = Breaker(2, 30.0, FakeClock())
    breaker.record_failure()
    breaker.release()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_stale_verdicts_while_open_are_ignored() -> None:
    breaker, clock = tripped(open_s=30.0)
    clock.now += 20
    breaker.record_success()  # an attempt admitted before the breaker opened
    assert breaker.state is BreakerState.OPEN
    breaker.record_failure()  # must not extend the cool-down
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success()  # half-open but nobody probing: still not a probe's verdict
    assert breaker.state is BreakerState.HALF_OPEN
