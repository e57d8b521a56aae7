"""The environment banner names live vs test keys without printing them."""

from __future__ import annotations

import pytest

from admin.cli.guard import Environment, key_mode, plan_sentence


@pytest.mark.parametrize(
    ("key", "mode"),
    [
        ("sk_live_abc", "live key"),
        ("rk_live_abc", "live key"),
        ("sk_test_abc", "test key"),
        ("rk_test_abc", "test key"),
        ("sk_foo", "key of unknown kind"),
        (None, "no key"),
    ],
)
def test_key_mode(key, mode):
    assert key_mode(key) == mode


def test_banner_line_and_plan_never_show_the_key():
    env = Environment(
        "postgresql://u:***@db/twinbill", "stripe at https://api.stripe.com", "live key", "acct_1Nq"
    )
    line = env.line()
    assert "acct_1Nq" in line and "(live key)" in line and "sk_live" not in line
    assert plan_sentence(3, 4, env, dry_run=False) == (
        "will migrate 3 users: cancel 4 legacy subscriptions on account acct_1Nq (live key)"
    )
    unknown = Environment("sqlite:///x.db", "localstripe at http://127.0.0.1:8420", "test key")
    assert "every billing legacy subscription" in plan_sentence(30, None, unknown, dry_run=False)
    assert "nothing cancelled" in plan_sentence(1, 0, unknown, dry_run=True)


def test_account_id_comes_from_the_key_and_a_failure_never_stops_the_command():
    from types import SimpleNamespace

    from admin.cli.guard import _account

    def client(retrieve):
        accounts = SimpleNamespace(retrieve_current=retrieve)
        return SimpleNamespace(client=SimpleNamespace(v1=SimpleNamespace(accounts=accounts)))

    assert _account(client(lambda: SimpleNamespace(id="acct_42"))) == "acct_42"

    def not_found():
        raise RuntimeError("404 (localstripe has no /v1/account)")

    assert _account(client(not_found)) is None
    assert _account(SimpleNamespace()) is None  # a backend without an SDK client
