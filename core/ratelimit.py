"""One global, adaptive request budget per backend, shared by every worker.

Why GCRA (a paced token bucket) and not the ``limits`` library: measured with
``limits`` 5.8 at 20/second, its moving and fixed windows hand out all 20 hits
within the first 100 ms of a window, and its sliding-window counter let 38 through
in one 1-second span. A
server-side limiter (Stripe's, or ``sandbox.faultproxy``) whose window does not
line up with ours answers such bursts with 429s. GCRA keeps one number, the
*theoretical arrival time* (TAT) of the next slot, and spaces grants
``1/rate`` apart, so over any half-open 1-second window at most ``rate`` calls
start, evenly spread out.

Slots are *reserved*: a caller is given the next free slot (possibly in the
future) and sleeps until it. Waiters never poll against each other, and a
late wake-up does not waste the slot. A 429 (``penalise``) sets a shared
*pause-until* time and cuts the effective rate multiplicatively (once per
congestion event, not once per worker that saw it); ``reward`` adds it back
slowly (AIMD, as in TCP congestion control).

With Redis, the state lives in ``twinbill:ratelimit:<name>:{tat,rate,pause,stats}``
and is changed only by Lua scripts that read the clock with Redis ``TIME``. The
scripts are atomic, and because every machine reads the same clock, skew between
hosts does not matter. Without Redis the same algorithm runs in process under a
lock, with an injectable clock so tests need not sleep.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from core.errors import BackendUnavailable, ConfigurationError, RateLimited
from core.observability import BACKEND_RATE_LIMITED, BACKEND_REQUESTS, LIMITER_RATE

DECREASE = 0.8  # multiplicative decrease on a 429
#: a reservation slept past by more than this is given up and taken again (``acquire``);
#: at 0.95 of a server's 1-s budget the requests of one second have ~50 ms to spare
LATE_AFTER = 0.04
_EPSILON = 1e-9
FLOOR = 0.1  # never below 10% of the configured rate
INCREASE = 0.01  # additive increase per success, as a fraction of the configured rate

Clock = Callable[[], float]


class _State(Protocol):
    """Where the budget lives. Times are in the store's own clock."""

    def reserve(self, max_wait: float) -> tuple[float, float, float]:
        """Return (delay, slot_time, rate). If delay > max_wait, nothing is taken."""
        ...

    def pause_until(self) -> float: ...
    def penalise(self, retry_after: float) -> float: ...
    def reward(self) -> float: ...
    def snapshot(self) -> dict[str, float]: ...


class _MemoryState:
    """GCRA in process. One lock; shared by every thread that holds the limiter."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self.configured = rate
        self.burst = burst
        self.clock = clock
        self.rate = rate
        self.tat = -math.inf
        self.pause = -math.inf
        self.acquired = 0
        self.penalties = 0
        self.lock = threading.Lock()

    def reserve(self, max_wait: float) -> tuple[float, float, float]:
        with self.lock:
            now = self.clock()
            interval = 1.0 / self.rate
            tau = (self.burst - 1) * interval
            slot = max(self.tat - tau, now, self.pause)
            if slot - now < _EPSILON:  # float noise in tat - tau must not refuse a free slot
                slot = now
            delay = slot - now
            if delay > max_wait:
                return delay, slot, self.rate
            self.tat = max(self.tat, slot) + interval
            self.acquired += 1
            return delay, slot, self.rate

    def pause_until(self) -> float:
        with self.lock:
            return self.pause

    def penalise(self, retry_after: float) -> float:
        with self.lock:
            now = self.clock()
            if now >= self.pause:  # a new congestion event, not an echo of the current one
                self.rate = max(self.configured * FLOOR, self.rate * DECREASE)
            self.pause = max(self.pause, now + retry_after)
            self.tat = max(self.tat, self.pause)
            self.penalties += 1
            return self.rate

    def reward(self) -> float:
        with self.lock:
            self.rate = min(self.configured, self.rate + self.configured * INCREASE)
            return self.rate

    def snapshot(self) -> dict[str, float]:
        with self.lock:
            return {
                "effective_rate": self.rate,
                "global_acquired": self.acquired,
                "global_penalties": self.penalties,
            }


# KEYS: tat, rate, pause, stats.  ARGV: configured rate, burst, max_wait.
# Returns {delay, slot, rate} as strings (Lua numbers would be truncated to integers).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate = tonumber(redis.call('GET', KEYS[2]) or ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local interval = 1.0 / rate
local tau = (burst - 1) * interval
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
local pause = tonumber(redis.call('GET', KEYS[3]) or 0)
local slot = math.max(tat - tau, now, pause)
if slot - now < 1e-6 then slot = now end
local delay = slot - now
if delay <= max_wait then
  local new_tat = math.max(tat, slot) + interval
  redis.call('SET', KEYS[1], string.format('%.6f', new_tat),
             'PX', math.ceil((new_tat - now) * 1000) + 60000)
  redis.call('HINCRBY', KEYS[4], 'acquired', 1)
  redis.call('EXPIRE', KEYS[4], 86400)
end
return {string.format('%.6f', delay), string.format('%.6f', slot), tostring(rate)}
"""

# KEYS: tat, rate, pause, stats.  ARGV: configured rate, retry_after, decrease, floor.
_PENALISE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local configured = tonumber(ARGV[1])
local rate = tonumber(redis.call('GET', KEYS[2]) or configured)
local pause = tonumber(redis.call('GET', KEYS[3]) or 0)
if now >= pause then
  rate = math.max(configured * tonumber(ARGV[4]), rate * tonumber(ARGV[3]))
  redis.call('SET', KEYS[2], tostring(rate), 'EX', 3600)
end
local new_pause = math.max(pause, now + tonumber(ARGV[2]))
redis.call('SET', KEYS[3], string.format('%.6f', new_pause),
           'PX', math.ceil((new_pause - now) * 1000) + 60000)
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < new_pause then
  redis.call('SET', KEYS[1], string.format('%.6f', new_pause),
             'PX', math.ceil((new_pause - now) * 1000) + 60000)
end
redis.call('HINCRBY', KEYS[4], 'penalties', 1)
redis.call('EXPIRE', KEYS[4], 86400)
return tostring(rate)
"""

# KEYS: rate.  ARGV: configured rate, step.
_REWARD = """
local configured = tonumber(ARGV[1])
local rate = tonumber(redis.call('GET', KEYS[1]) or configured)
rate = math.min(configured, rate + tonumber(ARGV[2]))
if rate >= configured then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], tostring(rate), 'EX', 3600)
end
return tostring(rate)
"""


class _RedisState:
    """GCRA in Redis: every process on every machine shares one budget."""

    def __init__(self, name: str, rate: float, burst: int, url: str) -> None:
        import redis  # imported here: the in-process path must not need it

        self._redis_errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self.configured = rate
        self.burst = burst
        self.client = redis.Redis.from_url(url, socket_timeout=5, health_check_interval=30)
        prefix = f"twinbill:ratelimit:{name}:"
        self.keys = [prefix + "tat", prefix + "rate", prefix + "pause", prefix + "stats"]
        self._reserve = self.client.register_script(_RESERVE)
        self._penalise = self.client.register_script(_PENALISE)
        self._reward = self.client.register_script(_REWARD)

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self._redis_errors as exc:
            raise BackendUnavailable(
                f"rate-limit store unreachable: {exc}", backend="redis"
            ) from exc

    def reserve(self, max_wait: float) -> tuple[float, float, float]:
        wait = min(max_wait, 1e9)
        delay, slot, rate = self._call(
            lambda: self._reserve(keys=self.keys, args=[self.configured, self.burst, wait])
        )
        return float(delay), float(slot), float(rate)

    def pause_until(self) -> float:
        raw = self._call(lambda: self.client.get(self.keys[2]))
        return float(raw) if raw is not None else -math.inf

    def penalise(self, retry_after: float) -> float:
        args = [self.configured, retry_after, DECREASE, FLOOR]
        return float(self._call(lambda: self._penalise(keys=self.keys, args=args)))

    def reward(self) -> float:
        args = [self.configured, self.configured * INCREASE]
        return float(self._call(lambda: self._reward(keys=[self.keys[1]], args=args)))

    def snapshot(self) -> dict[str, float]:
        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(self.keys[1])
            pipe.hgetall(self.keys[3])
            return pipe.execute()

        rate, counts = self._call(read)
        return {
            "effective_rate": float(rate) if rate is not None else self.configured,
            "global_acquired": int(counts.get(b"acquired", 0)),
            "global_penalties": int(counts.get(b"penalties", 0)),
        }


class RateLimiter:
    """A paced, adaptive budget of ``rate_per_second`` calls for backend ``name``.

    ``storage_url`` is ``redis://...`` for a budget shared across processes and
    machines, or ``None``/``memory://`` for one shared by this process's threads.
    ``clock`` and ``sleep`` are injectable so tests can simulate time.
    """

    def __init__(
        self,
        name: str,
        rate_per_second: float,
        storage_url: str | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        burst: int = 1,
        late_after: float = LATE_AFTER,
    ) -> None:
        if not rate_per_second > 0:
            raise ConfigurationError(f"rate limit for {name!r} must be > 0, got {rate_per_second}")
        if burst < 1:
            raise ConfigurationError(f"burst for {name!r} must be >= 1, got {burst}")
        self.name = name
        self.rate = float(rate_per_second)
        self.late_after = late_after
        self._clock = clock
        self._sleep = sleep
        self._state: _State
        if storage_url is None or storage_url.startswith("memory://"):
            self._state = _MemoryState(self.rate, burst, clock)
            self.storage = "memory"
        elif storage_url.startswith(("redis://", "rediss://", "unix://")):
            self._state = _RedisState(name, self.rate, burst, storage_url)
            self.storage = "redis"
        else:
            raise ConfigurationError(
                f"unsupported rate-limit storage {storage_url!r} (expected redis:// or memory://)"
            )
        self._known_rate = self.rate
        self._lock = threading.Lock()
        self._acquired = 0
        self._waited = 0.0
        self._penalties = 0
        self._late = 0

    def acquire(self, timeout: float | None = None) -> float:
        """Block until this caller owns a slot; return the seconds spent waiting.

        Raises RateLimited (without taking a slot) when the next slot is further
        away than ``timeout``, so a caller can give its work back to the queue.
        """
        start = self._clock()
        gave_up_late = False
        while True:
            remaining = math.inf if timeout is None else timeout - (self._clock() - start)
            delay, slot, rate = self._state.reserve(max(0.0, remaining))
            due = self._clock() + delay  # the slot on our own clock (Redis' may differ)
            self._known_rate = rate
            if delay > remaining:
                raise RateLimited(
                    f"{self.name}: no slot within {timeout:.2f}s (next in {delay:.2f}s)",
                    backend=self.name,
                    retry_after=delay,
                )
            if delay <= 0:
                break
            self._sleep(delay)
            # A 429 seen by another worker while we slept voids our reservation, and so
            # does waking up late (a busy machine): sent now, the request would land among
            # the next slots' requests and crowd a server's 1-s window past its budget (a
            # 429 pauses everyone a second); one slot given up costs far less. Once per
            # call: on a machine that always wakes late, giving up every slot would stall.
            late = not gave_up_late and self._clock() - due > self.late_after
            if self._state.pause_until() <= slot and not late:
                break
            if late:
                gave_up_late = True
                with self._lock:
                    self._late += 1
        waited = self._clock() - start
        with self._lock:
            self._acquired += 1
            self._waited += waited
        BACKEND_REQUESTS.labels(self.name).inc()
        LIMITER_RATE.labels(self.name).set(self._known_rate)
        # Additive increase: every slot granted after a 429 creeps the shared rate back
        # up (a failing call penalises again). Without it one 429 cut the budget for good.
        self.reward()
        return waited

    def try_acquire(self) -> float:
        """Take a slot if one is free now (0.0); else return seconds until the next."""
        delay, _slot, rate = self._state.reserve(0.0)
        self._known_rate = rate
        if delay > 0:
            return delay
        with self._lock:
            self._acquired += 1
        BACKEND_REQUESTS.labels(self.name).inc()
        return 0.0

    def penalise(self, retry_after: float) -> None:
        """A 429 came back: every worker pauses ``retry_after`` s and the rate drops."""
        self._known_rate = self._state.penalise(max(0.0, float(retry_after)))
        with self._lock:
            self._penalties += 1
        BACKEND_RATE_LIMITED.labels(self.name).inc()
        LIMITER_RATE.labels(self.name).set(self._known_rate)

    def reward(self) -> None:
        """A call succeeded: creep the rate back up (no store round-trip at full rate)."""
        if self._known_rate < self.rate:
            self._known_rate = self._state.reward()

    @property
    def effective_rate(self) -> float:
        rate = self._state.snapshot()["effective_rate"]
        self._known_rate = rate
        return rate

    def stats(self) -> dict[str, Any]:
        """This instance's counters plus the shared budget's, for dashboards."""
        shared = self._state.snapshot()
        self._known_rate = shared["effective_rate"]
        with self._lock:
            return {
                "name": self.name,
                "storage": self.storage,
                "configured_rate": self.rate,
                "effective_rate": shared["effective_rate"],
                "acquired": self._acquired,
                "waited_seconds": round(self._waited, 6),
                "penalties": self._penalties,
                "late_wakeups": self._late,
                "global_acquired": shared["global_acquired"],
                "global_penalties": shared["global_penalties"],
            }


def backoff_delay(
    attempt: int, *, base: float = 0.5, cap: float = 60.0, rng: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)].

    Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads
    retries from many workers that failed together, instead of synchronising them.
    """
    ceiling = min(cap, base * 2.0 ** min(max(attempt, 0), 64))
    return max(0.0, min(cap, rng() * ceiling))
