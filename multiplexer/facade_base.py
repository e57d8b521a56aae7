"""The plumbing every part of ``BillingMux`` stands on (``MuxBase``): the route of a
user, the backend it names, and the checks and audit around a write.

``BillingMux`` (``facade.py``, the reads) and its write mixins (``facade_writes``:
subscriptions and card refunds; ``facade_offline``: offline money) all build on it,
each in its own file so that each stays short enough to review.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import transaction
from core.errors import CurrencyMismatch, UserHeld, UserMigrating
from core.money import Money
from multiplexer import guards, routing
from multiplexer.backends.base import BillingBackend, UserRef
from multiplexer.cache import RouteCache, RouteInfo
from multiplexer.scientist import Scientist

#: Seconds a caller should wait before retrying a write for a migrating user.
MIGRATING_RETRY_AFTER = 30


class MuxBase:
    """What every part of ``BillingMux`` uses: its state, the route and backend of a
    user, and the writable/money/audit checks of a write."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        cache: RouteCache,
        backends: dict[str, BillingBackend],
        *,
        max_amount_major: int,
        new_key: Callable[[], str] = lambda: uuid.uuid4().hex,
        scientist: Scientist | None = None,
    ) -> None:
        """``scientist``: compares a shadowed user's reads with the new system in the
        background (``multiplexer.scientist``); the app always gets the legacy answer."""
        self._sessions = sessions
        self._scientist = scientist
        self._cache = cache
        self._backends = backends
        self._max_major = max_amount_major
        self._new_key = new_key

    def close(self) -> None:
        if self._scientist is not None:
            self._scientist.close()

    # -- routing -----------------------------------------------------------------------------
    def route(self, user_id: str, *, for_write: bool = False) -> RouteInfo:
        with self._sessions() as session:
            if for_write:
                return routing.resolve_for_write(session, self._cache, user_id)
            return routing.lookup(session, self._cache, user_id)

    def _backend(self, info: RouteInfo) -> BillingBackend:
        return self._backends[info.system]

    @staticmethod
    def _ref(info: RouteInfo) -> UserRef:
        return UserRef(info.user_id, info.legacy_customer_id, info.new_customer_id)

    def _writable(self, user_id: str) -> RouteInfo:
        info = self.route(user_id, for_write=True)
        if info.state == routing.MIGRATING:
            raise UserMigrating(user_id, MIGRATING_RETRY_AFTER)
        if info.state not in routing.WRITABLE:
            raise UserHeld(user_id, info.state)
        return info

    def _check_money(self, info: RouteInfo, amount: Money) -> Money:
        amount.check_positive(max_major=self._max_major)
        if info.currency and amount.currency != info.currency.upper():
            raise CurrencyMismatch(
                f"user {info.user_id!r} is billed in {info.currency.upper()}, not {amount.currency}"
            )
        return amount

    def _audit(
        self,
        info: RouteInfo,
        actor: str,
        action: str,
        after: dict[str, Any],
        reason: str | None = None,
    ) -> None:
        with transaction(self._sessions) as session:
            audit.record(
                session,
                actor=actor,
                action=action,
                resource_type="user",
                resource_id=info.user_id,
                after={"system": info.system, **after},
                reason=reason,
            )

    def _refuser(self, info: RouteInfo, actor: str) -> guards.Refuse:
        """Audits a write refused because an id is not among the path user's records."""

        def refuse(attempted: str, ids: dict[str, Any]) -> None:
            self._audit(
                info,
                actor,
                "security.foreign_id_refused",
                {"attempted": attempted, **ids},
                "id not among this user's records: 404, nothing written",
            )

        return refuse
