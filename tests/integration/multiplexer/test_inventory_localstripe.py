"""`users sync` against localstripe: facets read from the data, configuration by configuration.

The sandbox's ``twinbill_config`` tag is read here, by the test, only to know which
configuration each customer was seeded as; the code under test never sees it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from core import dbschema
from core.db import utcnow
from core.settings import load_settings
from migration import readiness
from migration.records import content_hash
from multiplexer import facets as facets_of
from multiplexer import stage
from multiplexer.backends.base import UserRef
from multiplexer.backends.stripe.bulk import features
from multiplexer.bootstrap import build
from multiplexer.facets import compute
from multiplexer.models import LegacyStagedObject, Route
from sandbox.legacy.configurations import CONFIGURATIONS
from sandbox.legacy.launcher import LocalStripe
from sandbox.legacy.population import seed

pytestmark = [pytest.mark.localstripe, pytest.mark.slow]

SEED, POPULATION = 20240611, 26  # every configuration twice


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inventory")
    with LocalStripe() as server:
        seeded = seed(server.client(), POPULATION, SEED)
        settings = load_settings(
            database_url=f"sqlite:///{tmp / 'twinbill.db'}",
            redis_url=None,
            legacy_backend="localstripe",
            legacy_api_base=server.url,
            legacy_api_key=server.api_key,
            new_base_url="http://127.0.0.1:9",
            new_api_token="unused",
        )
        dbschema.upgrade(settings.database_url)
        ctx = build(settings)
        calls_before = ctx.limiters["legacy"].stats()["acquired"]
        report = readiness.sync_legacy(ctx, actor="test")
        calls = ctx.limiters["legacy"].stats()["acquired"] - calls_before
        with ctx.sessions() as s:
            facets = {r.user_id: dict(r.facets) for r in s.query(Route)}
        yield {
            "server": server,
            "ctx": ctx,
            "seeded": seeded,
            "report": report,
            "facets": facets,
            "calls": calls,
            "tmp": tmp,
        }
        ctx.close()


def _by_config(world):
    out: dict[str, list[dict]] = {}
    for u in world["seeded"]:
        out.setdefault(u.config, []).append(world["facets"][u.app_user_id])
    return out


def test_every_customer_is_synced_with_a_handful_of_calls(world):
    report = world["report"]
    assert (report.created, report.conflicts, report.unreadable) == (POPULATION, [], [])
    # one page per account-wide list (customers, subscriptions, charges, items), invoices
    # 10 per page on localstripe (legacy-gaps); the per-user read costs >= 5 per customer
    assert world["calls"] <= 12, world["calls"]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("simple_monthly", {"subscriptions": 1, "status": "active", "interval": "month"}),
        ("yearly", {"subscriptions": 1, "interval": "year", "tax": "exclusive"}),
        ("two_subscriptions", {"subscriptions": 2, "interval": "mixed"}),
        ("multi_seat", {"subscriptions": 1}),
        ("cancel_at_period_end", {"scheduled_cancel": "period_end"}),
        ("canceled_refunded", {"subscriptions": 0, "status": "canceled", "refunds": 1}),
        ("past_due", {"dunning": "past_due", "preflight": "open invoice"}),
        ("pending_invoice_item", {"pending_items": 1, "preflight": "pending invoice item"}),
        ("upgraded_proration", {"prorations": True, "invoices": 2}),
        ("paid_offline", {"subscriptions": 1, "payment_method": "card"}),
    ],
)
def test_facets_are_read_from_the_data(world, config, expected):
    for facets in _by_config(world)[config]:
        assert {k: facets.get(k) for k in expected} == expected, facets
        assert facets["readable"] is True and facets["payment_method"] == "card"


def test_simple_users_are_simple_and_complex_ones_are_not(world):
    by = _by_config(world)
    assert {f["complexity"] for f in by["simple_monthly"]} == {0}
    assert {f["complexity"] for f in by["yearly"]} == {facets_of.WEIGHTS["tax"]}
    assert all(f["seats"] > 1 and f["complexity"] > 0 for f in by["multi_seat"])
    for config in ("two_subscriptions", "past_due", "canceled_refunded", "pending_invoice_item"):
        assert all(f["complexity"] > 0 for f in by[config]), config
    assert {f["preflight"] for f in by["simple_monthly"]} == {"ok"}


def test_localstripe_trials_and_credits_read_as_on_stripe(world):
    """localstripe keeps trials ``incomplete`` and flips the credit's sign: its dialect's
    mapping reads them as Stripe would, and the facets follow (docs/legacy-gaps.md)."""
    by = _by_config(world)
    assert all(f["trial"] and f["subscriptions"] == 1 for f in by["trialing"] + by["gifted"])
    assert all(f["credit_balance"] > 0 for f in by["credit_balance"])


def _bulk_snapshots(world):
    """One bulk read of every seeded user, inside the first test that needs it (so the
    SDK-params conformance fixture checks its requests)."""
    if "bulk" not in world:
        refs = [UserRef(u.app_user_id, u.customer_id) for u in world["seeded"]]
        world["bulk"] = world["ctx"].legacy.snapshots(refs)
    return world["bulk"]


@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_the_bulk_snapshot_is_the_per_user_snapshot(world, config):
    """Every configuration: the cohort's account-wide read == one user's lists, object
    for object (so the stored content hash is the same), and so is everything read from
    it (history, raw features)."""
    legacy = world["ctx"].legacy
    users = [u for u in world["seeded"] if u.config == config]
    assert users, config
    for u in users:
        bulk = _bulk_snapshots(world)[u.app_user_id]
        single = legacy.snapshot(UserRef(u.app_user_id, u.customer_id))
        assert bulk.objects == single.objects, u.app_user_id
        assert content_hash(bulk.objects) == content_hash(single.objects)
        history = legacy.map_snapshot(single)
        assert legacy.map_snapshot(bulk) == history
        # the per-user read expands the default payment method too (its type, no more)
        assert compute(history, features(single.objects))["payment_method"] == "card"
        assert world["facets"][u.app_user_id]["payment_method"] == "card"


def test_cli_sync_is_idempotent_reports_progress_and_the_report_answers(world):
    tmp: Path = world["tmp"]
    server = world["server"]
    env = {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "TWINBILL_DATABASE_URL": f"sqlite:///{tmp / 'cli.db'}",
        "TWINBILL_REDIS_URL": "",
        "TWINBILL_LEGACY_BACKEND": "localstripe",
        "TWINBILL_LEGACY_API_BASE": server.url,
        "TWINBILL_LEGACY_API_KEY": server.api_key,
        "TWINBILL_NEW_BASE_URL": "http://127.0.0.1:9",
        "TWINBILL_NEW_API_TOKEN": "unused",
    }

    def twinbill(*args):
        return subprocess.run(
            [sys.executable, "-m", "admin.cli", *args],
            text=True,
            capture_output=True,
            timeout=180,
            env=env,
        )

    assert twinbill("db", "upgrade").returncode == 0
    first = twinbill("users", "sync", "--progress-every", "10")
    assert first.returncode == 0, first.stderr
    assert f"syncing {POPULATION} customers" in first.stderr
    assert "synced 10/26 customers" in first.stderr and "synced 26/26" in first.stderr
    again = twinbill("users", "sync", "--json")
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert (data["created"], data["updated"], data["unchanged"]) == (0, 0, POPULATION)

    report = twinbill("inventory", "report", "--format", "json")
    assert report.returncode == 1  # some users cannot move today
    body = json.loads(report.stdout)
    assert body["users"] == POPULATION and 0 < body["ready"] < POPULATION
    assert body["deferred"]["open invoice"] == 2
    assert body["deferred"]["pending invoice item"] == 2
    assert any("deferred by preflight: open invoice" in f for f in body["findings"])
    html = twinbill("inventory", "report", "--format", "html", "-o", str(tmp / "r.html"))
    assert html.returncode == 1
    page = (tmp / "r.html").read_text()
    assert "<svg" in page and "What will go wrong" in page
    assert "<script" not in page and "http" not in page.split("<body>")[1]  # no CDN


def test_a_sync_keeps_no_rows_and_removes_what_a_killed_sync_left(world):
    """The sync's read waits in the database; the sync drops it when it ends. A sync
    killed midway left its rows: the next sync removes those of a sync started over a day
    ago, never those of one that may still be running."""
    ctx = world["ctx"]
    now = utcnow()
    killed = f"{readiness.SYNC_SCOPE}{now - timedelta(days=2):%Y%m%dT%H%M%S}:dead"
    running = f"{readiness.SYNC_SCOPE}{now - timedelta(hours=1):%Y%m%dT%H%M%S}:alive"
    for scope in (killed, running):
        left = stage.DbStage(ctx.sessions, scope, max_age=0)
        left.begin()
        left.add([("cus_x", "customers", {"id": "cus_x"})])
    readiness.sync_legacy(ctx, actor="test")
    with ctx.sessions() as s:
        scopes = Counter(s.scalars(sa.select(LegacyStagedObject.scope)))
    assert scopes == {running: 1}, scopes
