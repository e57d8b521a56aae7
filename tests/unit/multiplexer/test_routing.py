from __future__ import annotations

import pytest

from core.audit import history
from core.db import transaction
from core.errors import IllegalTransition, UnknownUser
from multiplexer import routing
from multiplexer.cache import LocalRouteCache
from multiplexer.models import Route


def _user(sessions, cache, user_id="u1"):
    with transaction(sessions) as s:
        routing.create_route(
            s,
            user_id,
            system="legacy",
            actor="test",
            reason="t",
            cache=cache,
            legacy_customer_id=f"cus_{user_id}",
            currency="EUR",
        )


def test_transition_bumps_version_audits_and_invalidates_cache(sessions):
    cache = LocalRouteCache()
    _user(sessions, cache)
    with sessions() as s:
        assert routing.lookup(s, cache, "u1").state == "legacy"
    with transaction(sessions) as s:
        routing.transition(
            s, "u1", "migrating", actor="saga", reason="cohort c1", cache=cache, cohort="c1"
        )
    assert cache.get("u1") is None
    with sessions() as s:
        info = routing.lookup(s, cache, "u1")
        assert (info.state, info.version) == ("migrating", 2)
        entries = history(s, "route", "u1")
    assert [e.action for e in entries] == ["route.created", "route.migrating"]
    assert entries[-1].before["state"] == "legacy" and entries[-1].after["cohort"] == "c1"


@pytest.mark.parametrize(
    ("path", "bad"), [(["migrating", "new"], "legacy"), ([], "new"), (["held"], "migrating")]
)
def test_forbidden_transitions_change_nothing(sessions, path, bad):
    _user(sessions, None)
    for state in path:
        with transaction(sessions) as s:
            routing.transition(
                s, "u1", state, actor="t", reason="t", system="new" if state == "new" else None
            )
    with pytest.raises(IllegalTransition), transaction(sessions) as s:
        routing.transition(s, "u1", bad, actor="t", reason="t")
    with sessions() as s:
        route = s.get(Route, "u1")
        assert route.version == 1 + len(path)
        assert len(history(s, "route", "u1")) == 1 + len(path)


def test_release_returns_to_the_state_it_was_held_from(sessions):
    _user(sessions, None)
    with transaction(sessions) as s:
        routing.transition(s, "u1", "held", actor="support", reason="dispute")
    with pytest.raises(IllegalTransition, match="held from 'legacy'"), transaction(sessions) as s:
        routing.transition(s, "u1", "new", actor="t", reason="t")
    with transaction(sessions) as s:
        assert routing.transition(s, "u1", "legacy", actor="t", reason="released").held_from is None


def test_stale_version_is_refused(sessions):
    _user(sessions, None)
    with pytest.raises(IllegalTransition, match="changed underneath"), transaction(sessions) as s:
        routing.transition(s, "u1", "migrating", actor="t", reason="t", expected_version=7)


def test_writes_read_through_a_stale_cache(sessions):
    cache = LocalRouteCache()
    _user(sessions, cache)
    with sessions() as s:
        routing.lookup(s, cache, "u1")
    # another process flips the user without touching *our* cache
    with transaction(sessions) as s:
        routing.transition(s, "u1", "migrating", actor="other", reason="t")
    with sessions() as s:
        assert routing.lookup(s, cache, "u1").state == "legacy"  # reads may be stale...
        assert routing.resolve_for_write(s, cache, "u1").state == "migrating"  # writes never


def test_unknown_user(sessions):
    with pytest.raises(UnknownUser), transaction(sessions) as s:
        routing.transition(s, "ghost", "held", actor="t", reason="t")


# -- after the pivot: never back to legacy (issue 11, finding 2) ------------------------------


def _fail(sessions, *, pivot: bool, user_id: str = "u1") -> None:
    _user(sessions, None, user_id)
    with transaction(sessions) as s:
        routing.transition(s, user_id, "migrating", actor="saga", reason="t")
        if pivot:
            routing.mark_pivoted(s, user_id, actor="saga", reason="legacy cancel")
        routing.transition(s, user_id, "failed", actor="saga", reason="activate: 500")


def _route(sessions, user_id="u1") -> Route:
    with sessions() as s:
        route = s.get(Route, user_id)
        s.expunge(route)
        return route


def test_failed_after_the_pivot_cannot_go_back_to_legacy(sessions):
    _fail(sessions, pivot=True)
    before = _route(sessions)
    with pytest.raises(IllegalTransition, match="pivot"), transaction(sessions) as s:
        routing.transition(s, "u1", "legacy", actor="admin", reason="route back", system="legacy")
    after = _route(sessions)
    assert (after.state, after.system, after.version) == ("failed", "legacy", before.version)
    # forward stays possible: resume (migrating) or new; and hold
    assert routing.allowed_targets(after) == {"migrating", "new", "held"}


def test_failed_before_the_pivot_may_still_go_back(sessions):
    _fail(sessions, pivot=False)
    assert routing.allowed_actions(_route(sessions)) == ("hold", "legacy")
    with transaction(sessions) as s:
        routing.transition(s, "u1", "legacy", actor="admin", reason="route back")
    assert _route(sessions).state == "legacy"


def test_held_after_the_pivot_releases_only_to_failed_never_legacy(sessions):
    _fail(sessions, pivot=True)
    with transaction(sessions) as s:
        routing.transition(s, "u1", "held", actor="admin", reason="look")
    held = _route(sessions)
    assert routing.allowed_actions(held) == ("release",)
    assert routing.allowed_targets(held) == {"failed"}
    with pytest.raises(IllegalTransition), transaction(sessions) as s:
        routing.transition(s, "u1", "legacy", actor="admin", reason="route back")


@pytest.mark.parametrize(
    ("states", "pivot", "actions"),
    [
        ([], False, ("hold",)),
        (["migrating"], False, ()),
        (["migrating", "failed"], False, ("hold", "legacy")),
        (["migrating", "failed"], True, ("hold", "resume")),
        (["migrating", "new"], True, ("hold",)),
        (["held"], False, ("release",)),
    ],
)
def test_allowed_actions_offer_only_what_transition_accepts(sessions, states, pivot, actions):
    _user(sessions, None)
    with transaction(sessions) as s:
        for i, state in enumerate(states):
            routing.transition(s, "u1", state, actor="t", reason="t")
            if pivot and i == 0:
                routing.mark_pivoted(s, "u1", actor="t", reason="t")
    route = _route(sessions)
    assert routing.allowed_actions(route) == actions
    target = {"hold": "held", "release": route.held_from, "legacy": "legacy"}
    for action in actions:
        if action == "resume":
            assert "migrating" in routing.allowed_targets(route)
            continue
        with pytest.raises(_Rollback), transaction(sessions) as s:  # legal: accepted
            routing.transition(s, "u1", target[action], actor="t", reason="t")
            raise _Rollback


class _Rollback(Exception):
    pass


def test_mark_pivoted_is_audited_and_idempotent(sessions):
    _fail(sessions, pivot=True)
    with transaction(sessions) as s:
        routing.mark_pivoted(s, "u1", actor="saga", reason="again")
    with sessions() as s:
        actions = [e.action for e in history(s, "route", "u1")]
    assert actions.count("route.pivoted") == 1
