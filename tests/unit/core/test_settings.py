from __future__ import annotations

import pytest

from core.errors import ConfigurationError
from core.settings import load_settings


def test_embedded_defaults(monkeypatch):
    for var in ("TWINBILL_DATABASE_URL", "TWINBILL_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert s.database_url == "sqlite:///./twinbill.db"
    assert s.redis_url is None
    assert s.legacy_rate_limit == 20


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("TWINBILL_DATABASE_URL", "not a url"),
        ("TWINBILL_REDIS_URL", "localhost:6379"),
        ("TWINBILL_NEW_BASE_URL", "newbilling"),
        ("TWINBILL_LEGACY_RATE_LIMIT", "-3"),
    ],
)
def test_bad_setting_names_the_variable(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigurationError, match=var):
        load_settings()


def test_missing_secret_names_the_variable(monkeypatch):
    monkeypatch.delenv("TWINBILL_NEW_API_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="TWINBILL_NEW_API_TOKEN"):
        load_settings().require("new_api_token")


def test_secrets_do_not_leak_in_repr(monkeypatch):
    monkeypatch.setenv("TWINBILL_LEGACY_API_KEY", "sk_test_very_secret")
    assert "very_secret" not in repr(load_settings())
