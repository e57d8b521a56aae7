"""Route cache: Redis when configured (shared by every process), in-process LRU otherwise.

Cached entries carry the route's version. Reads may be served from the cache;
writes always read the route from the database (``routing.resolve_for_write``),
so a stale entry can at worst send a *read* to the previous system for the
cache's TTL, never a write.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RouteInfo:
    user_id: str
    system: str
    state: str
    version: int
    legacy_customer_id: str | None
    new_customer_id: str | None
    currency: str | None


class RouteCache(Protocol):
    def get(self, user_id: str) -> RouteInfo | None: ...
    def put(self, info: RouteInfo) -> None: ...
    def invalidate(self, user_id: str) -> None: ...


class LocalRouteCache:
    """A small thread-safe LRU with a TTL.

    Hand-written (about 30 lines) because the stdlib's ``lru_cache`` cannot
    invalidate one key and pulling in a dependency for this is not worth it.
    """

    def __init__(
        self, maxsize: int = 100_000, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._data: OrderedDict[str, tuple[float, RouteInfo]] = OrderedDict()
        self._lock = threading.Lock()
        self._maxsize, self._ttl, self._clock = maxsize, ttl, clock

    def get(self, user_id: str) -> RouteInfo | None:
        with self._lock:
            hit = self._data.get(user_id)
            if hit is None:
                return None
            expires, info = hit
            if expires < self._clock():
                del self._data[user_id]
                return None
            self._data.move_to_end(user_id)
            return info

    def put(self, info: RouteInfo) -> None:
        with self._lock:
            self._data[info.user_id] = (self._clock() + self._ttl, info)
            self._data.move_to_end(info.user_id)
            while len(self._data) > self._maxsize:
                self._data.popitem(last=False)

    def invalidate(self, user_id: str) -> None:
        with self._lock:
            self._data.pop(user_id, None)


class RedisRouteCache:
    PREFIX = "twinbill:route:"

    def __init__(self, client: object, ttl: int = 300) -> None:
        self._r = client  # redis.Redis; typed loosely to keep redis optional at import
        self._ttl = ttl

    def get(self, user_id: str) -> RouteInfo | None:
        raw = self._r.get(self.PREFIX + user_id)  # type: ignore[attr-defined]
        return RouteInfo(**json.loads(raw)) if raw else None

    def put(self, info: RouteInfo) -> None:
        self._r.set(self.PREFIX + info.user_id, json.dumps(asdict(info)), ex=self._ttl)  # type: ignore[attr-defined]

    def invalidate(self, user_id: str) -> None:
        self._r.delete(self.PREFIX + user_id)  # type: ignore[attr-defined]


def build_cache(redis_url: str | None) -> RouteCache:
    if not redis_url:
        return LocalRouteCache()
    import redis

    return RedisRouteCache(redis.Redis.from_url(redis_url))
