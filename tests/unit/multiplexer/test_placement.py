from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.db import transaction
from core.errors import InvalidInput
from multiplexer.placement import Placement, current_placement, percent_to_bp, set_policy

USERS = [f"user-{i}" for i in range(5000)]


def test_share_on_new_matches_the_percentage():
    on_new = sum(Placement(2500, "salt").system_for(u) == "new" for u in USERS)
    assert 0.22 < on_new / len(USERS) < 0.28


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.text(min_size=1, max_size=20))
def test_raising_the_percentage_only_moves_users_to_new(low, high, user):
    low, high = sorted((low, high))
    if Placement(low, "s").system_for(user) == "new":
        assert Placement(high, "s").system_for(user) == "new"


def test_allow_and_deny_lists_win():
    p = Placement(10_000, "s", allow=frozenset({"a"}), deny=frozenset({"b"}))
    assert (p.system_for("a"), p.system_for("b")) == ("new", "legacy")
    assert Placement(0, "s", allow=frozenset({"a"})).system_for("a") == "new"


@pytest.mark.parametrize("bad", ["-1", "101", "abc", "12.345", "nan"])
def test_bad_percentages_are_refused(bad):
    with pytest.raises(InvalidInput):
        percent_to_bp(bad)


def test_policy_is_sticky_and_audited(sessions):
    with transaction(sessions) as s:
        set_policy(s, actor="cli", new_users_percent="12.5")
        first = current_placement(s)
    with transaction(sessions) as s:
        set_policy(s, actor="cli", allow=["vip"])
        again = current_placement(s)
    assert first.salt == again.salt and again.new_users_bp == 1250
    assert again.system_for("vip") == "new"
    with pytest.raises(InvalidInput), transaction(sessions) as s:
        set_policy(s, actor="cli", deny=["vip"])
