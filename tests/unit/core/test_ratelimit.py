"""In-process limiter on a simulated clock: pacing, shared pause, AIMD, backoff."""

from __future__ import annotations

import bisect
import math
import threading

import pytest

from core.errors import ConfigurationError, RateLimited
from core.ratelimit import RateLimiter, backoff_delay


class FakeClock:
    """Time that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make(rate: float = 20.0, burst: int = 1) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter("legacy", rate, clock=clock, sleep=clock.sleep, burst=burst), clock


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """Largest number of events in any half-open window [t, t + window)."""
    times = sorted(times)
    return max(bisect.bisect_left(times, t + window - 1e-9) - i for i, t in enumerate(times))


@pytest.mark.parametrize("rate", [1.0, 7.5, 20.0, 50.0])
def test_never_more_than_rate_in_any_second_over_ten_seconds(rate: float) -> None:
    limiter, clock = make(rate)
    grants: list[float] = []
    while clock.now < 1010.0:
        limiter.acquire()
        grants.append(clock.now)
    # a fractional rate can only be met on average: 7.5/s means 8 starts in some seconds
    assert max_in_window(grants) <= math.ceil(rate)
    assert max_in_window(grants, 4.0) <= math.ceil(rate * 4)
    # and the budget is used, not wasted
    assert len(grants) >= int(rate * 10)


def test_pacing_is_smooth_not_bursty() -> None:
    limiter, clock = make(20.0)
    grants = []
    for _ in range(40):
        limiter.acquire()
        grants.append(clock.now)
    assert max_in_window(grants, 0.1) <= 2  # a window-based limiter would allow 20 here


def test_burst_allows_that_many_at_once_then_paces() -> None:
    limiter, clock = make(10.0, burst=3)
    assert [limiter.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.try_acquire() == pytest.approx(0.1)


def oversleeping(clock: FakeClock, extra: float, times: int) -> object:
    """A busy machine: the first ``times`` sleeps wake ``extra`` seconds late."""
    late = {"left": times}

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if late["left"] > 0:
            late["left"] -= 1
            clock.now += extra

    return sleep


def test_a_late_wakeup_gives_its_slot_up_instead_of_crowding_the_next() -> None:
    clock = FakeClock()
    limiter = RateLimiter("legacy", 20.0, clock=clock, sleep=oversleeping(clock, 0.1, 1))
    grants = []
    for _ in range(10):
        limiter.acquire()
        grants.append(clock.now)
    gaps = [b - a for a, b in zip(grants, grants[1:], strict=False)]
    assert min(gaps) >= 0.05 - 1e-9  # sent late, yet never closer than 1/rate to the next
    assert limiter.stats()["late_wakeups"] == 1


def test_a_machine_that_always_wakes_late_still_gets_its_calls_through() -> None:
    clock = FakeClock()
    limiter = RateLimiter("legacy", 20.0, clock=clock, sleep=oversleeping(clock, 0.1, 10**6))
    for _ in range(20):
        limiter.acquire()  # each call gives up at most one slot, then goes
    assert limiter.stats()["acquired"] == 20
    assert 1 <= limiter.stats()["late_wakeups"] <= 20


def test_try_acquire_takes_no_slot_when_refused() -> None:
    limiter, clock = make(10.0)
    assert limiter.try_acquire() == 0.0
    assert limiter.try_acquire() == pytest.approx(0.1)
    assert limiter.try_acquire() == pytest.approx(0.1)  # asking again did not queue
    clock.now += 0.1
    assert limiter.try_acquire() == 0.0
    assert limiter.stats()["acquired"] == 2


def test_acquire_timeout_raises_rate_limited_without_taking_a_slot() -> None:
    limiter, clock = make(1.0)
    limiter.acquire()
    with pytest.raises(RateLimited) as info:
        limiter.acquire(timeout=0.5)
    assert info.value.retry_after == pytest.approx(1.0)
    assert info.value.retryable
    assert clock.now == 1000.0  # did not sleep in vain
    assert limiter.acquire(timeout=1.0) == pytest.approx(1.0)


def test_threads_share_one_budget() -> None:
    limiter, _clock = make(5.0, burst=4)  # frozen clock: exactly `burst` slots exist now
    results: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            got = limiter.try_acquire()
            with lock:
                results.append(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(0.0) == 4


def test_penalise_pauses_everyone() -> None:
    limiter, clock = make(20.0)
    limiter.acquire()
    limiter.penalise(2.0)
    assert limiter.try_acquire() == pytest.approx(2.0)
    waited = limiter.acquire()
    assert waited == pytest.approx(2.0)
    assert clock.now == pytest.approx(1002.0)


def test_penalise_while_sleeping_voids_the_reservation() -> None:
    clock = FakeClock()
    limiter: RateLimiter

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:  # another worker got a 429 while we slept
            limiter.penalise(3.0)

    limiter = RateLimiter("legacy", 10.0, clock=clock, sleep=sleep)
    limiter.acquire()  # t=1000.0
    limiter.acquire()  # reserved 1000.1, but a 429 at 1000.1 pauses until 1003.1
    assert clock.now >= 1003.1 - 1e-9


def test_rate_adapts_down_once_per_congestion_event_then_recovers() -> None:
    limiter, clock = make(20.0)
    limiter.penalise(1.0)
    assert limiter.effective_rate == pytest.approx(16.0)
    limiter.penalise(1.0)  # a second worker reporting the same burst
    assert limiter.effective_rate == pytest.approx(16.0)
    clock.now += 1.5
    limiter.penalise(1.0)
    assert limiter.effective_rate == pytest.approx(12.8)
    for _ in range(100):
        clock.now += 1.5
        limiter.penalise(1.0)
    assert limiter.effective_rate == pytest.approx(2.0)  # floor: 10% of configured

    rates = []
    for _ in range(200):
        limiter.reward()
        rates.append(limiter.effective_rate)
    assert rates == sorted(rates)  # additive, monotone
    assert rates[0] == pytest.approx(2.2)
    assert rates[-1] == pytest.approx(20.0)  # capped at the configured rate


def test_slower_rate_after_penalty_is_enforced() -> None:
    limiter, clock = make(10.0)
    limiter.penalise(0.0)
    grants = []
    start = clock.now
    while clock.now < start + 5.0:
        limiter.acquire()
        grants.append(clock.now)
    first_second = [g for g in grants if g < start + 1.0]
    assert len(first_second) <= 9  # slowed right after the 429 (10 at full rate)


def test_granted_slots_restore_the_rate_after_a_429() -> None:
    """AIMD: one 429 must not cut the shared budget for good."""
    limiter, clock = make(10.0)
    limiter.penalise(0.0)
    assert limiter.effective_rate == pytest.approx(8.0)
    for _ in range(25):
        limiter.acquire()
    assert limiter.effective_rate == pytest.approx(10.0)


def test_stats_for_dashboards() -> None:
    limiter, _clock = make(10.0)
    limiter.acquire()
    limiter.acquire()
    limiter.penalise(1.0)
    stats = limiter.stats()
    assert stats["acquired"] == 2
    assert stats["waited_seconds"] == pytest.approx(0.1)
    assert stats["penalties"] == 1
    assert stats["effective_rate"] == pytest.approx(8.0)
    assert stats["storage"] == "memory"


def test_bad_configuration_is_named() -> None:
    with pytest.raises(ConfigurationError, match="legacy"):
        RateLimiter("legacy", 0)
    with pytest.raises(ConfigurationError, match="unsupported"):
        RateLimiter("legacy", 1.0, "memcached://x")


def test_backoff_grows_and_stays_within_cap() -> None:
    ceilings = [backoff_delay(n, base=0.5, cap=60.0, rng=lambda: 1.0) for n in range(12)]
    assert ceilings[:4] == [0.5, 1.0, 2.0, 4.0]
    assert ceilings == sorted(ceilings)
    assert ceilings[-1] == 60.0
    assert backoff_delay(5, rng=lambda: 0.0) == 0.0
    for attempt in range(0, 200, 7):
        for _ in range(20):
            assert 0.0 <= backoff_delay(attempt, cap=30.0) <= 30.0
