"""Offline payment/refund: confirmation, idempotency, and every bad input refused."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from core.audit import AuditEntry


def _post(admin, path, **fields):
    data = {"csrf_token": admin.csrf(), "currency": "", "date": "", "reason": "", **fields}
    return admin.client.post(path, data=data, follow_redirects=False)


def _offline_entries(admin):
    with admin.ctx.sessions() as s:
        return list(
            s.scalars(sa.select(AuditEntry).where(AuditEntry.action.like("support.offline_%")))
        )


def test_confirmation_names_amount_system_user_reference(admin):
    admin.login("support")
    resp = _post(
        admin, "/admin/users/u_1/offline/payment/confirm", amount="12.50", reference="BANK-123"
    )
    assert resp.status_code == 200
    assert (
        "will record €12.50 as an offline payment in the NEW system for user u_1, "
        "reference BANK-123"
    ) in resp.text
    assert admin.new.payments == {}  # nothing written before the confirmation


def test_submit_records_once_and_shows_on_user_page(admin):
    admin.login("support")
    for _ in range(3):  # double click, then a retry
        resp = _post(
            admin,
            "/admin/users/u_1/offline/payment",
            amount="12.50",
            reference="BANK-123",
            reason="bank transfer",
        )
        assert resp.status_code == 303
    assert len(admin.new.payments) == 1
    assert len(_offline_entries(admin)) == 1
    page = admin.client.get(resp.headers["location"])
    assert "Already recorded earlier" in page.text
    assert "BANK-123" in page.text and "€12.50" in page.text
    entry = _offline_entries(admin)[0]
    assert entry.actor == "user:support@example.test"


def test_refund_goes_to_the_users_system(admin):
    admin.login("support")
    resp = _post(admin, "/admin/users/u_2/offline/refund", amount="3,00", reference="RF-1")
    assert resp.status_code == 303
    assert len(admin.legacy.refunds) == 1 and admin.new.refunds == {}


def test_jpy_has_no_decimals(admin):
    admin.login("support")
    assert (
        _post(
            admin, "/admin/users/u_4/offline/payment", amount="1200", reference="JP-1"
        ).status_code
        == 303
    )
    resp = _post(admin, "/admin/users/u_4/offline/payment", amount="12.5", reference="JP-2")
    assert resp.status_code == 422 and "more decimals than JPY allows" in resp.text


@pytest.mark.parametrize(
    ("amount", "reference", "message"),
    [
        ("0", "R1", "greater than zero"),
        ("-5", "R1", "greater than zero"),
        ("12.345", "R1", "more decimals than EUR allows"),
        ("10001", "R1", "above the ceiling"),
        ("twelve", "R1", "is not a number"),
        ("", "R1", "enter the amount"),
        ("12.50", "", "enter the bank transaction id"),
        ("12.50", "   ", "enter the bank transaction id"),
    ],
)
@pytest.mark.parametrize("step", ["/confirm", ""])
def test_bad_input_is_refused_and_nothing_written(admin, amount, reference, message, step):
    admin.login("support")
    resp = _post(
        admin, f"/admin/users/u_1/offline/payment{step}", amount=amount, reference=reference
    )
    assert resp.status_code == 422
    assert message in resp.text and "Nothing was recorded" in resp.text
    assert admin.new.payments == {} and _offline_entries(admin) == []


def test_wrong_currency_refused(admin):
    admin.login("support")
    resp = _post(
        admin, "/admin/users/u_1/offline/payment", amount="5", currency="USD", reference="R"
    )
    assert resp.status_code == 422 and "billed in EUR, not USD" in resp.text
    assert admin.new.payments == {}


def test_bad_date_refused(admin):
    admin.login("support")
    resp = _post(
        admin, "/admin/users/u_1/offline/payment", amount="5", reference="R", date="20.11.2026"
    )
    assert resp.status_code == 422 and "is not a date" in resp.text


def test_unknown_user_refused(admin):
    admin.login("support")
    resp = _post(admin, "/admin/users/u_404/offline/payment", amount="5", reference="R")
    assert resp.status_code == 404 and "There is no user &#39;u_404&#39;" in resp.text
    assert admin.client.get("/admin/users/u_404").status_code == 404


def test_migrating_user_refused_with_clear_message(admin):
    admin.login("support")
    page = admin.client.get("/admin/users/u_3/offline/payment")
    assert page.status_code == 409 and "being migrated right now" in page.text
    resp = _post(admin, "/admin/users/u_3/offline/payment", amount="5", reference="R")
    assert resp.status_code == 409 and "Nothing was written" in resp.text
    assert admin.legacy.payments == {} and _offline_entries(admin) == []


def test_wrong_role_cannot_record(admin):
    admin.login("finance")
    resp = _post(admin, "/admin/users/u_1/offline/payment", amount="5", reference="R")
    assert resp.status_code == 403 and admin.new.payments == {}


def test_finance_list_and_csv(admin):
    admin.login("support")
    _post(admin, "/admin/users/u_1/offline/payment", amount="12.50", reference="BANK-9")
    _post(admin, "/admin/users/u_2/offline/refund", amount="1", reference="RF-9")
    c = admin.login("finance")
    page = c.get("/admin/finance/offline")
    assert "BANK-9" in page.text and "RF-9" in page.text
    assert c.get("/admin/finance/offline?kind=refund").text.count("RF-9") >= 1
    csv = c.get("/admin/finance/offline.csv")
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("recorded_at,happened_on,kind,user_id") and len(lines) == 3
    assert ",payment,u_1,new," in lines[1] and ",12.50,EUR,BANK-9," in lines[1]
    # finance reconciles against the bank: the date the money moved is in the export
    happened_on = lines[1].split(",")[1]
    assert len(happened_on) == 10 and happened_on[4] == "-"
    assert "No" in c.get("/admin/finance/offline?start=2001-01-01&end=2001-01-02").text
