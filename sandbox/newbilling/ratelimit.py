"""Optional per-token request budget (``NEWBILLING_RATE_LIMIT`` requests/second).

Hand-written rather than the ``limits`` library because the sandbox is a single
process whose only job is to let the orchestrator's backoff be exercised: a
sliding-window log per token (a deque of the last second's timestamps) is exact,
has no storage to configure, and is a dozen lines anyone can audit.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """At most ``rate`` requests in any ``window`` seconds, per key."""

    def __init__(
        self, rate: float, window: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = max(1, math.floor(rate * window))
        self.window = window
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> int | None:
        """Record a request; return None if allowed, else whole seconds to wait (>= 1)."""
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(1, math.ceil(hits[0] + self.window - now))
            hits.append(now)
            return None
