"""The prove step's rule table: every field decided once; differences named by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.canonical import BillingState, NextCharge, NextCharges, System, TaxAmount
from reconciler.next_charge import CHARGE_RULES, USER_RULES, compare_next_charges

AT = datetime(2030, 1, 1, tzinfo=UTC)


def test_every_preview_field_has_exactly_one_rule() -> None:
    assert set(CHARGE_RULES) == set(NextCharge.model_fields)
    assert set(USER_RULES) == set(NextCharges.model_fields)
    for rules in (CHARGE_RULES, USER_RULES):
        for name, rule in rules.items():
            assert rule.kind != "ignored" or rule.reason, name


def _charge(**kw) -> NextCharge:
    base = dict(
        id="sub_1", legacy_id="sub_1", currency="EUR", state=BillingState.RENEWING,
        charge_at=AT, subtotal=9900, tax=1881, total=11781, amount_due=11781,
        tax_breakdown=(TaxAmount(tax_rate_id="txr_1", amount=1881),),
    )  # fmt: skip
    return NextCharge(**{**base, **kw})


def _side(system: System, *charges: NextCharge, balance: int = 0) -> NextCharges:
    return NextCharges(
        user_id="u1", system=system, currency="EUR", balance=balance, charges=charges
    )


def test_identical_previews_are_clean_within_a_second() -> None:
    new = _charge(id="sub_nb_1", charge_at=AT + timedelta(milliseconds=900))
    assert compare_next_charges(_side(System.LEGACY, _charge()), _side(System.NEW, new)).clean


def test_a_dropped_tax_rate_is_named_field_by_field() -> None:
    new = _charge(id="sub_nb_1", tax=0, tax_breakdown=(), total=9900, amount_due=9900)
    result = compare_next_charges(_side(System.LEGACY, _charge()), _side(System.NEW, new))
    assert {d.field for d in result.differences} == {"tax", "tax_breakdown", "total", "amount_due"}
    assert all(d.record_id == "sub_1" for d in result.differences)
    assert "tax" in result.summary()


def test_a_charge_only_one_side_will_make_is_missing_or_extra() -> None:
    none_left = _charge(state=BillingState.NONE, charge_at=None, subtotal=0, tax=0,
                        tax_breakdown=(), total=0, amount_due=0)  # fmt: skip
    # a subscription that will not charge again may be absent on the other side
    assert compare_next_charges(_side(System.LEGACY, none_left), _side(System.NEW)).clean
    missing = compare_next_charges(_side(System.LEGACY, _charge()), _side(System.NEW))
    assert [d.kind.value for d in missing.differences] == ["missing"]
    extra = compare_next_charges(_side(System.LEGACY), _side(System.NEW, _charge(id="sub_nb_1")))
    assert [d.kind.value for d in extra.differences] == ["extra"]


def test_a_credit_read_as_a_debt_fails_on_balance_and_amount_due() -> None:
    legacy = _side(System.LEGACY, _charge(amount_due=10981), balance=-800)
    new = _side(System.NEW, _charge(id="sub_nb_1", amount_due=12581), balance=800)
    fields = {d.field for d in compare_next_charges(legacy, new).differences}
    assert fields == {"balance", "amount_due"}
