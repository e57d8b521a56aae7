"""CLI parity: find, record (with confirmation), list, audit, create-user."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from admin.cli import app


@pytest.fixture
def cli(admin, monkeypatch):
    monkeypatch.setattr("admin.cli.support.mux_context", lambda: admin.ctx)
    return CliRunner()


def test_users_find_json(cli):
    result = cli.invoke(app, ["users", "find", "alice", "--json"])
    assert result.exit_code == 0, result.output
    assert [u["user_id"] for u in json.loads(result.stdout)["users"]] == ["u_1"]


def test_record_offline_payment_asks_then_records_once(cli, admin):
    args = [
        "payments",
        "record-offline",
        "u_1",
        "--amount",
        "12.50",
        "--currency",
        "EUR",
        "--reference",
        "BANK-123",
    ]
    result = cli.invoke(app, args, input="n\n")
    assert result.exit_code == 2 and admin.new.payments == {}
    result = cli.invoke(app, [*args, "--yes", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["record_id"]  # stdout is the JSON document, nothing else
    assert "will record 12.50 EUR as an offline payment in the NEW system for user u_1" in (
        result.stderr
    )
    again = cli.invoke(app, [*args, "--yes"])
    assert "already recorded" in again.stdout and len(admin.new.payments) == 1
    listed = cli.invoke(app, ["payments", "list-offline", "--json"])
    assert [r["reference"] for r in json.loads(listed.stdout)] == ["BANK-123"]
    csv = cli.invoke(app, ["payments", "list-offline", "--csv"])
    assert csv.stdout.startswith("recorded_at,happened_on,kind")


@pytest.mark.parametrize(
    ("amount", "ref", "message"),
    [("0", "R", "greater than zero"), ("1.234", "R", "more decimals"), ("5", "", "reference")],
)
def test_bad_input_exit_2_nothing_written(cli, admin, amount, ref, message):
    result = cli.invoke(
        app, ["refunds", "record-offline", "u_1", "--amount", amount, "--reference", ref, "--yes"]
    )
    assert result.exit_code == 2 and message in result.output
    assert admin.new.refunds == {}


def test_migrating_user_refused(cli, admin):
    result = cli.invoke(
        app, ["payments", "record-offline", "u_3", "--amount", "5", "--reference", "R", "--yes"]
    )
    assert result.exit_code == 2 and "being migrated" in result.output


def test_audit_show_json(cli):
    result = cli.invoke(app, ["audit", "show", "--resource", "route:u_1", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)[0]["action"] == "route.created"


def test_create_user_password_from_env(cli, admin, monkeypatch):
    monkeypatch.setattr("admin.cli.support.mux_context", lambda: admin.ctx)
    monkeypatch.setenv("TWINBILL_ADMIN_PASSWORD", "a long enough password")
    result = cli.invoke(app, ["admin", "create-user", "Eve@Example.test", "--role", "finance"])
    assert result.exit_code == 0, result.output
    assert "e***@example.test" in result.stdout
    bad = cli.invoke(app, ["admin", "create-user", "x@example.test", "--role", "root"])
    assert bad.exit_code == 2 and "role must be one of" in bad.output


def test_create_user_without_password_or_terminal_is_exit_2(cli, monkeypatch):
    monkeypatch.delenv("TWINBILL_ADMIN_PASSWORD", raising=False)
    result = cli.invoke(app, ["admin", "create-user", "x@example.test", "--role", "support"])
    assert result.exit_code == 2 and "TWINBILL_ADMIN_PASSWORD" in result.stderr
