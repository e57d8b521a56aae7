"""`cohort shadow` refuses what it cannot rehearse, with the reason, and writes nothing.

Fake backends (no services): the refusals happen before either system is asked anything;
``tests/integration/migration/test_shadow.py`` runs the rehearsal itself on real services.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from core.db import transaction
from core.errors import InvalidInput
from migration import cohorts, shadow
from migration.models import ShadowImport, ShadowRun
from multiplexer import routing


def _nothing_written(world) -> None:  # type: ignore[no-untyped-def]
    with world.sessions() as session:
        assert session.scalars(sa.select(ShadowRun)).all() == []
        assert session.scalars(sa.select(ShadowImport)).all() == []
    assert world.new.customers == {}  # the new system was never asked to import anyone


def _cohort(world, name: str = "pilot", users: tuple[str, ...] = ("u1", "u2")) -> None:  # type: ignore[no-untyped-def]
    for u in users:
        world.user(u)
    cohorts.create(world.sessions, name, users, actor="test")


def test_an_unknown_cohort_is_refused_by_name(world) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="no cohort named 'nope'"):
        shadow.start(world.sessions, "nope", days=7, actor="test")
    _nothing_written(world)


@pytest.mark.parametrize("status", ["running", "done", "paused"])
def test_a_cohort_that_runs_or_ran_is_refused(world, status: str) -> None:  # type: ignore[no-untyped-def]
    _cohort(world)
    cohorts.set_status(world.sessions, "pilot", "running", actor="test")
    if status != "running":
        cohorts.set_status(world.sessions, "pilot", status, actor="test")
    with pytest.raises(InvalidInput, match=f"cohort 'pilot' is {status}.*never ran"):
        shadow.start(world.sessions, "pilot", days=7, actor="test")
    _nothing_written(world)


def test_a_member_no_longer_on_legacy_is_named_and_nothing_is_written(world) -> None:  # type: ignore[no-untyped-def]
    _cohort(world)
    with transaction(world.sessions) as session:
        routing.transition(
            session, "u2", routing.MIGRATING, actor="test", reason="t", cache=world.cache
        )
    with pytest.raises(InvalidInput, match=r"only users on legacy.*u2 \(migrating\)"):
        shadow.start(world.sessions, "pilot", days=7, actor="test")
    _nothing_written(world)


@pytest.mark.parametrize(
    ("days", "bug", "message"),
    [(0, None, "1 to 90 days"), (91, None, "1 to 90 days"), (7, "nonsense", "one of")],
)
def test_bad_options_are_refused(world, days: int, bug: str | None, message: str) -> None:  # type: ignore[no-untyped-def]
    _cohort(world)
    with pytest.raises(InvalidInput, match=message):
        shadow.start(world.sessions, "pilot", days=days, actor="test", inject_bug=bug)
    _nothing_written(world)


def test_a_second_rehearsal_while_one_is_under_way_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    _cohort(world)
    shadow.start(world.sessions, "pilot", days=7, actor="test")
    with pytest.raises(InvalidInput, match="already in shadow until"):
        shadow.start(world.sessions, "pilot", days=7, actor="test")
    with world.sessions() as session:
        assert len(session.scalars(sa.select(ShadowRun)).all()) == 1
        assert len(session.scalars(sa.select(ShadowImport)).all()) == 2


def test_stopping_a_cohort_never_shadowed_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    _cohort(world)
    with pytest.raises(InvalidInput, match="no shadow rehearsal under way"):
        shadow.end(world.deps, "pilot", actor="test", reason="t")
    with pytest.raises(InvalidInput, match="no cohort named"):
        shadow.end(world.deps, "nope", actor="test", reason="t")
