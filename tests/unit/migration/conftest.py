from __future__ import annotations

from datetime import timedelta

import pytest

from core import dbschema
from core.canonical import Interval, Plan, System
from core.db import make_engine, make_sessionmaker, transaction
from migration.saga import SagaDeps
from multiplexer import routing
from multiplexer.backends.base import UserRef
from multiplexer.cache import LocalRouteCache
from tests.fakes.billing import FakeBillingBackend

PLAN = Plan(
    id="plan_basic_eur",
    currency="EUR",
    unit_amount=999,
    interval=Interval.MONTH,
    product_name="Basic",
)


class World:
    """Two fake billing systems, a routing table, and saga dependencies over them."""

    def __init__(self, tmp_path) -> None:
        url = f"sqlite:///{tmp_path / 'saga.db'}"
        dbschema.upgrade(url)
        self.engine = make_engine(url)
        self.sessions = make_sessionmaker(self.engine)
        self.cache = LocalRouteCache()
        self.legacy = FakeBillingBackend("legacy", System.LEGACY)
        self.legacy.plans[PLAN.id] = PLAN
        self.new = FakeBillingBackend("new", System.NEW)
        self.pages: list[str] = []
        self.deps = SagaDeps(
            self.sessions,
            self.cache,
            self.legacy,
            self.new,
            verifier=lambda mig, deps: {"clean": True},
            renewal_guard=timedelta(hours=2),
            sleep=lambda s: None,
            page=self.pages.append,
            stale_after=120,
        )

    def user(self, user_id: str = "u1", *, subscribe: bool = True) -> UserRef:
        cus = self.legacy.create_customer(
            user_id,
            email=f"{user_id}@example.test",
            name="U",
            currency="EUR",
            idempotency_key=f"c-{user_id}",
        )
        ref = UserRef(user_id, cus.id)
        if subscribe:
            self.legacy.create_subscription(
                ref, PLAN, quantity=1, trial_days=None, idempotency_key=f"s-{user_id}"
            )
        with transaction(self.sessions) as s:
            routing.create_route(
                s,
                user_id,
                system="legacy",
                actor="test",
                reason="t",
                legacy_customer_id=cus.id,
                currency="EUR",
            )
        return ref

    def route(self, user_id: str = "u1"):
        with self.sessions() as s:
            return s.get(routing.Route, user_id)


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.engine.dispose()
