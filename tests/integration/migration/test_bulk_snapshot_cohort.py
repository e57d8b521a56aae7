"""A cohort read in bulk: far fewer legacy list calls than per-user snapshots, same outcome.

Two cohorts of the same configurations (localstripe + the reference newbilling, real
processes): one with ``bulk_reads=on`` (one account-wide read, a stored snapshot per
member before it is enqueued), one with ``off`` (each preflight reads its user).
Legacy requests are counted by the fault proxy in front of localstripe (no faults),
not by twinbill; outcomes are read from each system's own API.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest
from migration_world import World, open_world

from migration import cohorts, services
from migration.models import CohortMember, Migration, MigrationStep
from multiplexer.models import LegacyStage, LegacyStagedObject
from sandbox.faultproxy import FaultProxy
from sandbox.stack import Stack

pytestmark = [pytest.mark.localstripe, pytest.mark.newbilling, pytest.mark.slow]

#: migrate (plain, several subscriptions, seats, credit) and defer (dunning) alike
CONFIGS = ("simple_monthly", "two_subscriptions", "multi_seat", "credit_balance", "past_due")
PER_CONFIG = 1  # members per configuration in each cohort


def _lists(proxy: FaultProxy) -> int:
    """Legacy list requests (``GET`` of a collection) since the last reset."""
    routes = proxy.stats()["routes"]
    return sum(n for r, n in routes.items() if r.startswith("GET ") and not r.endswith("{id}"))


def _run(world: World, deps, name: str, proxy: FaultProxy) -> tuple[int, int]:
    """(list calls before any member ran, list calls of the members' sagas)."""
    queued: list[str] = []

    def prefetch(cohort: str, ids: list[str]) -> None:
        services.prefetch_chunk(deps, cohort, ids, queued.append, prefetch)

    proxy.reset_stats()
    services.start_cohort(deps, name, queued.append, actor="test", prefetch=prefetch)
    before = _lists(proxy)
    for mig_id in queued:
        services.run_member(deps, mig_id)
    return before, _lists(proxy) - before


def _outcome(world: World, name: str) -> Counter:
    routes = world.routes()
    with world.ctx.sessions() as session:
        members = session.query(CohortMember).filter(CohortMember.cohort == name).all()
        out = Counter()
        for m in members:
            mig = session.get(Migration, m.migration_id)
            out[
                (
                    world.user(m.user_id).config,
                    m.status,
                    mig.status,
                    mig.generation,
                    routes[m.user_id].state,
                    bool(world.legacy_billing(m.user_id)),  # legacy's own answer
                    world.new_billing(m.user_id),  # newbilling's own answer
                )
            ] += 1
        return out


def _prefetched(world: World, name: str) -> list[bool]:
    with world.ctx.sessions() as session:
        rows = (
            session.query(MigrationStep)
            .join(Migration)
            .filter(Migration.cohort == name, MigrationStep.step == "preflight")
            .filter(MigrationStep.outcome.in_(("ok", "deferred")))
        )
        return [bool((r.detail or {}).get("prefetched")) for r in rows if r.outcome == "ok"]


def test_a_bulk_cohort_reads_legacy_once_and_ends_as_the_per_user_one(tmp_path: Path) -> None:
    with Stack(tmp_path / "sandbox") as ep, FaultProxy(ep.legacy_url) as proxy:
        world = open_world(ep, tmp_path, legacy_url=proxy.url)
        users = world.seed(3 * len(CONFIGS), configs=CONFIGS)  # others stay in the account
        assert world.sync() == len(users)
        by_config: dict[str, list[str]] = {c: [] for c in CONFIGS}
        for u in users:
            by_config[world.user(u).config].append(u)
        assert all(len(v) >= 2 * PER_CONFIG for v in by_config.values()), by_config
        bulk_users = [u for v in by_config.values() for u in v[:PER_CONFIG]]
        single_users = [u for v in by_config.values() for u in v[PER_CONFIG : 2 * PER_CONFIG]]
        cohorts.create(world.ctx.sessions, "bulk", bulk_users, actor="test")
        cohorts.create(world.ctx.sessions, "single", single_users, actor="test")
        n = len(bulk_users)

        on = dataclasses.replace(world.deps, bulk_reads="on")
        off = dataclasses.replace(world.deps, bulk_reads="off")
        prefetch_lists, bulk_saga_lists = _run(world, on, "bulk", proxy)
        nothing, single_saga_lists = _run(world, off, "single", proxy)

        # the per-user read lists subscriptions, invoices, charges and invoice items: 4 lists
        # per member that preflight no longer makes (5 members: 77 -> 57 when written)
        assert nothing == 0
        assert single_saga_lists - bulk_saga_lists >= 4 * n, (single_saga_lists, bulk_saga_lists)
        # the whole account (15 customers) in a handful of pages (7), not n sets of lists
        assert prefetch_lists <= 10, prefetch_lists
        assert prefetch_lists + bulk_saga_lists < single_saga_lists
        # every member that passed preflight did so on the prefetched snapshot
        used = _prefetched(world, "bulk")
        assert used and all(used), used
        assert not any(_prefetched(world, "single"))

        # the same migration result, from each system's own answers (no restart either:
        # the re-check's fresh per-user read hashes like the bulk snapshot)
        assert _outcome(world, "bulk") == _outcome(world, "single")
        assert all(key[3] == 1 for key in _outcome(world, "bulk")), _outcome(world, "bulk")
        world.check_exactly_one_system(users)
        world.ctx.close()


@pytest.mark.postgres
def test_a_cohort_in_chunks_reads_the_account_once_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    """Three chunks of a cohort share one account read, staged in PostgreSQL: the
    account's customer list is read once (not once per chunk), every member that passed
    preflight did so on a staged snapshot, the stage is gone when the last chunk is
    assembled, and each system's own answers show every user in exactly one of them."""
    with Stack(tmp_path / "sandbox") as ep, FaultProxy(ep.legacy_url) as proxy:
        world = open_world(ep, tmp_path, legacy_url=proxy.url, database_url=postgres_url)
        users = world.seed(2 * len(CONFIGS), configs=CONFIGS)  # half stay in the account
        assert world.sync() == len(users)
        members = sorted(users)[: len(CONFIGS)]
        cohorts.create(world.ctx.sessions, "chunked", members, actor="test")
        deps = dataclasses.replace(world.deps, bulk_reads="on", bulk_chunk=2)
        chunks: list[list[str]] = []

        def prefetch(cohort: str, ids: list[str]) -> None:
            chunks.append(ids)
            services.prefetch_chunk(deps, cohort, ids, queued.append, prefetch)

        queued: list[str] = []
        proxy.reset_stats()
        services.start_cohort(deps, "chunked", queued.append, actor="test", prefetch=prefetch)
        assert [len(c) for c in chunks] == [2, 2, 1]
        # the account (10 customers) is one page of each list, read once for three chunks
        assert proxy.stats()["routes"].get("GET /v1/customers") == 1, proxy.stats()["routes"]
        for mig_id in queued:
            services.run_member(deps, mig_id)
        used = _prefetched(world, "chunked")
        assert used and all(used), used
        with world.ctx.sessions() as session:
            assert session.query(LegacyStagedObject).count() == 0
            assert session.query(LegacyStage).count() == 0
        world.check_exactly_one_system(users)
        world.ctx.close()
