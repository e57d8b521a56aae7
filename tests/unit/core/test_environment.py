"""The admin header and the CLI banner tell the same story about where they point,
and neither shows a secret."""

from __future__ import annotations

import pytest

from admin.cli.guard import environment
from admin.web.environment import describe
from core.environment import key_mode
from core.settings import load_settings

PG = "postgresql+psycopg://ops:hunter2secret@db.internal:5432/billing"


@pytest.mark.parametrize(
    ("key", "base", "web", "cli"),
    [
        ("sk_live_abc123", None, "legacy: live key", "(live key)"),
        ("rk_test_abc123", "http://127.0.0.1:8420", "legacy: test key", "(test key)"),
        (None, "http://localstripe:8420", "legacy: sandbox key", "(no key)"),
        ("pk_live_abc123", None, "legacy: unknown key", "(key of unknown kind)"),
        (None, None, "legacy: unset key", "(no key)"),
    ],
)
def test_header_and_banner_agree_and_hide_secrets(key, base, web, cli):
    settings = load_settings(legacy_api_key=key, legacy_api_base=base, database_url=PG)
    header, banner = describe(settings), environment(settings=settings)
    assert header.text == f"{web} · database: postgresql billing@db.internal:5432"
    line = banner.line()
    assert line.endswith(cli) and "billing" in line and "db.internal" in line
    assert header.live == banner.live == (key_mode(key) == "live")
    for shown in (header.text, line):
        assert "hunter2secret" not in shown and "abc123" not in shown
