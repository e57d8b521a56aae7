"""Two server processes sharing Redis and PostgreSQL: a flip re-routes the next call in each.

Each process runs ``create_app`` under its own uvicorn (``gateway_world.app_from_env``)
with ``TWINBILL_REDIS_URL`` and ``TWINBILL_DATABASE_URL`` pointing at the shared
services; this process flips the route through ``routing.transition`` with the
Redis cache. Both processes read the user first, so each holds the route in the
cache; with a per-process LRU (60 s TTL) the reads after the flip would still
say ``legacy``.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import redis
from gateway_world import SECRET_KEY, server_process

from core import dbschema
from core.db import transaction
from core.settings import load_settings
from multiplexer import routing
from multiplexer.bootstrap import build
from multiplexer.cache import RedisRouteCache
from multiplexer.inventory import sync_customers
from multiplexer.tokens import create_token
from sandbox.legacy.launcher import make_client
from sandbox.legacy.population import seed
from sandbox.stack import Stack

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.localstripe,
    pytest.mark.newbilling,
    pytest.mark.slow,
]


def test_flip_reaches_the_next_call_in_every_process(tmp_path: Path, postgres_url, redis_url):
    with Stack(tmp_path / "sandbox") as endpoints:
        dbschema.upgrade(postgres_url)
        env = {
            **endpoints.env(),
            "TWINBILL_DATABASE_URL": postgres_url,
            "TWINBILL_REDIS_URL": redis_url,
            "TWINBILL_SECRET_KEY": SECRET_KEY,
        }
        ctx = build(
            load_settings(**{k.removeprefix("TWINBILL_").lower(): v for k, v in env.items()})
        )
        assert isinstance(ctx.cache, RedisRouteCache)
        r = redis.Redis.from_url(redis_url)
        try:
            user = seed(make_client(endpoints.legacy_url, endpoints.legacy_api_key), 1, 7)[0]
            sync_customers(ctx.sessions, ctx.legacy.iter_customers(), actor="test", cache=ctx.cache)
            uid, cur = user.app_user_id, user.currency.upper()
            with transaction(ctx.sessions) as s:
                token = create_token(s, "app", actor="test")
            auth = {"Authorization": f"Bearer {token}"}
            plan = {"plan_code": f"plan_basic_monthly_{user.currency}"}
            key = RedisRouteCache.PREFIX + uid

            with (
                server_process(env, tmp_path / "a.log") as url_a,
                server_process(env, tmp_path / "b.log") as url_b,
                httpx.Client(base_url=url_a + "/api/v1", headers=auth, timeout=30) as a,
                httpx.Client(base_url=url_b + "/api/v1", headers=auth, timeout=30) as b,
            ):
                for proc in (a, b):
                    resp = proc.get(f"/users/{uid}/summary")
                    assert resp.status_code == 200, resp.text
                    assert resp.json()["system"] == "legacy"
                cached = json.loads(r.get(key))
                assert (cached["state"], cached["version"]) == ("legacy", 1)

                # flip 1: legacy -> migrating. Writes refused (409 + Retry-After) in both.
                with transaction(ctx.sessions) as s:
                    routing.transition(
                        s, uid, "migrating", actor="test", reason="it", cache=ctx.cache
                    )
                assert r.get(key) is None, "the flip invalidated the shared entry"
                for proc in (a, b):
                    resp = proc.post(f"/users/{uid}/subscriptions", json=plan)
                    assert resp.status_code == 409, resp.text
                    assert resp.json()["error"]["type"] == "user_migrating"
                    assert int(resp.headers["Retry-After"]) > 0
                    assert proc.get(f"/users/{uid}/summary").status_code == 200  # reads work
                assert json.loads(r.get(key))["state"] == "migrating"

                # flip 2: migrating -> new. The next *read* in each process (served from the
                # cache, not the database) goes to the new system.
                customer = ctx.new.create_customer(
                    uid, email=None, name=None, currency=cur, idempotency_key=f"it-{uid}"
                )
                with transaction(ctx.sessions) as s:
                    routing.transition(
                        s, uid, "new", actor="test", reason="it", cache=ctx.cache,
                        system="new", new_customer_id=customer.id,
                    )  # fmt: skip
                assert r.get(key) is None
                for proc in (a, b):
                    resp = proc.get(f"/users/{uid}/summary")
                    assert resp.status_code == 200, resp.text
                    assert resp.json()["system"] == "new"
                    assert resp.json()["subscriptions"] == []
                assert json.loads(r.get(key))["version"] == 3

                # and a write from either process now lands on the new side
                resp = b.post(f"/users/{uid}/subscriptions", json=plan)
                assert resp.status_code == 201, resp.text
                ids = [s["id"] for s in a.get(f"/users/{uid}/subscriptions").json()]
                assert ids == [resp.json()["id"]]
        finally:
            r.close()
            ctx.close()
