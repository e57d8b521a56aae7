"""Seed a legacy (Stripe / localstripe) account with a deterministic staging population.

Every user is created through the real ``stripe`` SDK, in one of the
configurations of ``configurations.CONFIGURATIONS``, tagged in Stripe metadata
with ``app_user_id`` and ``twinbill_config``. Where localstripe cannot express a
configuration the way real Stripe would, the recipe below gets as close as it
allows and docs/legacy-gaps.md says how and why.

``read_back`` reads one customer's whole state back (paging every list): the
tests use it, and so can twinbill's fetch step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stripe
from dateutil.relativedelta import relativedelta

from sandbox.legacy.configurations import (
    DEFAULT_CURRENCIES,
    GIFT_MONTHS,
    TAX_RATES,
    PlanSpec,
    UserSpec,
    plan_amount,
    plan_catalogue,
    plan_id,
    plan_users,
    refund_amount,
)
from sandbox.legacy.readback import read_back  # noqa: F401 - kept importable from here

PAGE_SIZE = 100
GOOD_CARD = "pm_card_visa"
DECLINING_CARD = "pm_card_chargeCustomerFail"  # 4000000000000341: attaches, then declines


@dataclass(frozen=True)
class SeededUser:
    app_user_id: str
    customer_id: str
    config: str
    currency: str
    subscription_ids: tuple[str, ...] = field(default_factory=tuple)


class SeedError(RuntimeError):
    """A user could not be seeded; names the user and the configuration."""


def ensure_catalogue(client: stripe.StripeClient, currencies: Sequence[str]) -> list[PlanSpec]:
    """Create the products and plans that do not exist yet (retrieve or create)."""
    plans = plan_catalogue(currencies)
    for product in sorted({p.product_id: p.tier for p in plans}.items()):
        pid, tier = product
        _retrieve_or_create(
            lambda pid=pid: client.v1.products.retrieve(pid),
            lambda pid=pid, tier=tier: client.v1.products.create(
                {"id": pid, "name": f"Twinbill {tier.title()}", "metadata": {"twinbill": "true"}}
            ),
        )
    for p in plans:
        _retrieve_or_create(
            lambda p=p: client.v1.plans.retrieve(p.id),
            lambda p=p: client.v1.plans.create(
                {
                    "id": p.id,
                    "product": p.product_id,
                    "amount": p.amount,
                    "currency": p.currency,
                    "interval": p.interval,
                    "nickname": p.nickname,
                    "metadata": {"twinbill_tier": p.tier},
                }
            ),
        )
    return plans


def _retrieve_or_create(retrieve: Callable[[], Any], create: Callable[[], Any]) -> Any:
    try:
        return retrieve()
    except stripe.InvalidRequestError as exc:
        if exc.http_status != 404:
            raise
    return create()


def seed(
    client: stripe.StripeClient,
    users: int,
    seed: int,
    *,
    currencies: Sequence[str] = DEFAULT_CURRENCIES,
    first_index: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[SeededUser]:
    """Create ``users`` users, round-robin over every configuration.

    Same ``seed`` → same app user ids, names, configurations, currencies and
    amounts (Stripe ids and timestamps differ, of course).
    """
    ensure_catalogue(client, currencies)
    specs = plan_users(users, seed, currencies, first_index=first_index)
    seeded = []
    for n, spec in enumerate(specs, start=1):
        try:
            seeded.append(seed_user(client, spec))
        except stripe.StripeError as exc:
            raise SeedError(
                f"seeding {spec.app_user_id} ({spec.config}, {spec.currency}) failed: {exc!r}"
            ) from exc
        if progress is not None:
            progress(n, len(specs))
    return seeded


def seed_user(client: stripe.StripeClient, spec: UserSpec) -> SeededUser:
    recipe = RECIPES[spec.config]
    customer_id = _create_customer(client, spec)
    subscription_ids = recipe(client, spec, customer_id)
    return SeededUser(
        app_user_id=spec.app_user_id,
        customer_id=customer_id,
        config=spec.config,
        currency=spec.currency,
        subscription_ids=tuple(subscription_ids),
    )


# -- building blocks ---------------------------------------------------------


def _tags(spec: UserSpec) -> dict[str, str]:
    return {"app_user_id": spec.app_user_id, "twinbill_config": spec.config}


def _create_customer(client: stripe.StripeClient, spec: UserSpec) -> str:
    params: dict[str, Any] = {
        "name": spec.name,
        "email": spec.email,
        "metadata": _tags(spec),
    }
    if spec.credit:
        # Stripe: a negative balance is a credit. localstripe accepts it but
        # never returns ``balance`` (only a sign-flipped ``account_balance``),
        # so the sandbox also records it in metadata.
        params["balance"] = -spec.credit
        params["metadata"]["twinbill_balance"] = str(-spec.credit)
    customer = client.v1.customers.create(params)
    _set_default_card(client, customer.id, GOOD_CARD)
    return str(customer.id)


def _set_default_card(client: stripe.StripeClient, customer_id: str, test_pm: str) -> str:
    # Attaching a test payment method (pm_card_visa, ...) creates a fresh pm_...
    # on both Stripe and localstripe; that new id becomes the default.
    pm = client.v1.payment_methods.attach(test_pm, {"customer": customer_id})
    client.v1.customers.update(customer_id, {"invoice_settings": {"default_payment_method": pm.id}})
    return str(pm.id)


def _subscribe(
    client: stripe.StripeClient,
    spec: UserSpec,
    customer_id: str,
    tier: str = "basic",
    interval: str = "month",
    **extra: Any,
) -> Any:
    metadata = {**_tags(spec), **extra.pop("metadata", {})}
    item: dict[str, Any] = {"plan": plan_id(tier, interval, spec.currency)}
    if spec.quantity != 1:
        item["quantity"] = spec.quantity
    params = {"customer": customer_id, "items": [item], "metadata": metadata, **extra}
    return client.v1.subscriptions.create(params)


def _first_charge_id(client: stripe.StripeClient, customer_id: str) -> tuple[str, int]:
    charges = [
        c
        for c in client.v1.charges.list({"customer": customer_id, "limit": PAGE_SIZE})
        if c.status == "succeeded"
    ]
    if not charges:
        raise SeedError(f"customer {customer_id} has no succeeded charge")
    return str(charges[0].id), int(charges[0].amount)


def _future(days: int = 0, months: int = 0) -> int:
    moment = datetime.now(UTC) + relativedelta(days=days, months=months)
    return int(moment.timestamp())


# -- one recipe per configuration -------------------------------------------


def _simple_monthly(client: stripe.StripeClient, spec: UserSpec, cus: str) -> list[str]:
    return [_subscribe(client, spec, cus).id]


def _yearly(client: stripe.StripeClient, spec: UserSpec, cus: str) -> list[str]:
    # taxed: a subscription tax rate (default_tax_rates) the new system must carry over
    percentage, name, jurisdiction = TAX_RATES[spec.currency]
    rate = client.v1.tax_rates.create(
        {
            "display_name": name,
            "percentage": float(percentage),  # the SDK param is a float; Stripe stores decimals
            "inclusive": False,
            "jurisdiction": jurisdiction,
            "metadata": _tags(spec),
        }
    )
    return [_subscribe(client, spec, cus, interval="year", default_tax_rates=[rate.id]).id]


def _trialing(client: stripe.StripeClient, spec: UserSpec, cus: str) -> list[str]:
    sub = _subscribe(client, spec, cus, trial_end=_future(days=spec.trial_days))
    return [sub.id]


def _gifted(client: stripe.StripeClient, spec: UserSpec, cus: str) -> list[str]:
    # Real Stripe: a 100 % coupon for 3 months. localstripe takes no coupon or
    # discounts on subscriptions, so the gift is a 3-month trial, tagged.
    sub = _subscribe(
        client,
        spec,
        cus,
        trial_end=_future(months=GIFT_MONTHS),
        metadata={"twinbill_gift": "true", "twinbill_gift_months": str(GIFT_MONTHS)},
    )
    return [sub.id]


def _upgraded_proration(client: stripe.StripeClient, spec: UserSpec, cus: str) -> list[str]:
    sub = _subscribe(client, spec, cus)
    item_id = sub["items"].data[0].id
    # localstripe knows the legacy ``prorate`` flag, not ``proration_behavior``
    # (which answers 500). Same interval → it adds a pending "Unused time"
    # proration item; invoicing now bills the upgrade (like Stripe's
    # create_prorations + a manual invoice).
    upgrade = {"items": [{"id": item_id, "plan": plan_id("pro", "month", spec.currency)}]}
    client.v1.subscriptions.update(sub.id, {**upgrade, "prorate": True})  # type: ignore[typeddict-item]
    invoice = client.v1.invoices.create(
        {"customer": cus, "subscription": sub.id, "metadata": _tags(spec)}
    )
    client.v1.invoices.pay(invoice.id)
    return [sub.id]


def _cancel_at_period_end(client: stripe.StripeClient, spec: UserSpec, cus: str) -> list[str]:
    sub = _subscribe(client, spec, cus)
    client.v1.subscriptions.update(sub.id, {"cancel_at_period_end": True})
    return [sub.id]


def _canceled_refunded(client: stripe.StripeClient, spec: UserSpec, cus: str) -> list[str]:
    sub = _subscribe(client, spec, cus)
    charge_id, amount = _first_charge_id(client, cus)
    client.v1.refunds.create(
        {
            "charge": charge_id,
            "amount": refund_amount(amount, spec.refund_ratio),
            "metadata": _tags(spec),
        }
    )
    client.v1.subscriptions.cancel(sub.id)
    return [sub.id]


def _past_due(client: stripe.StripeClient, spec: UserSpec, cus: str) -> list[str]:
    sub = _subscribe(client, spec, cus)  # first period paid with a good card
    bad_pm = _set_default_card(client, cus, DECLINING_CARD)
    # The "renewal": localstripe has no clock, so bill the subscription again by
    # hand. ``pay`` declines but answers 200 with the invoice left open and the
    # subscription active (it swallows the failure)...
    renewal = client.v1.invoices.create(
        {"customer": cus, "subscription": sub.id, "metadata": _tags(spec)}
    )
    renewal = client.v1.invoices.pay(renewal.id)
    # ...so retry it through a PaymentIntent linked to the invoice: its failure
    # does reach the subscription, which becomes past_due as on real Stripe.
    # (Linking relies on localstripe letting POST set any existing attribute.)
    pi = client.v1.payment_intents.create(
        {
            "amount": renewal.amount_due,
            "currency": spec.currency,
            "customer": cus,
            "payment_method": bad_pm,
        }
    )
    client.v1.payment_intents.update(pi.id, {"invoice": renewal.id})  # type: ignore[typeddict-unknown-key]
    client.v1.invoices.update(renewal.id, {"payment_intent": pi.id})  # type: ignore[typeddict-unknown-key]
    try:
        client.v1.payment_intents.confirm(pi.id)
    except stripe.CardError:
        pass  # expected: the renewal is declined
    else:
        raise SeedError(f"{spec.app_user_id}: the declining card was charged")
    return [sub.id]


def _two_subscriptions(client: stripe.StripeClient, spec: UserSpec, cus: str) -> list[str]:
    first = _subscribe(client, spec, cus, interval="year")
    second = _subscribe(client, spec, cus, tier="pro", interval="month")
    return [first.id, second.id]


def _paid_offline(client: stripe.StripeClient, spec: UserSpec, cus: str) -> list[str]:
    # Real Stripe: ``invoices.pay(paid_out_of_band=True)``; localstripe answers
    # 500. Closest working shape: the bank transfer is a pending credit line of
    # minus the plan price, swept into the subscription's first invoice, which
    # is then "paid" with a total of 0 and no charge. Tagged on both.
    amount = plan_amount("basic", "month", spec.currency)
    client.v1.invoice_items.create(
        {
            "customer": cus,
            "amount": -amount,
            "currency": spec.currency,
            "description": "Paid out of band (bank transfer)",
            "metadata": {**_tags(spec), "twinbill_paid_out_of_band": "true"},
        }
    )
    sub = _subscribe(client, spec, cus, metadata={"twinbill_paid_out_of_band": "true"})
    client.v1.invoices.update(
        sub.latest_invoice,
        {"metadata": {**_tags(spec), "twinbill_paid_out_of_band": "true"}},
    )
    client.v1.customers.update(cus, {"metadata": {"twinbill_balance": "0"}})
    return [sub.id]


def _credit_balance(client: stripe.StripeClient, spec: UserSpec, cus: str) -> list[str]:
    # The credit itself is set at customer creation (see _create_customer).
    return [_subscribe(client, spec, cus).id]


def _multi_seat(client: stripe.StripeClient, spec: UserSpec, cus: str) -> list[str]:
    return [_subscribe(client, spec, cus).id]  # spec.quantity > 1


def _pending_invoice_item(client: stripe.StripeClient, spec: UserSpec, cus: str) -> list[str]:
    sub = _subscribe(client, spec, cus)
    # A one-off fee waiting for the next invoice: must survive the migration.
    client.v1.invoice_items.create(
        {
            "customer": cus,
            "amount": spec.one_off_amount,
            "currency": spec.currency,
            "description": "Onboarding session",
            "subscription": sub.id,
            "metadata": _tags(spec),
        }
    )
    return [sub.id]


Recipe = Callable[[stripe.StripeClient, UserSpec, str], list[str]]

RECIPES: dict[str, Recipe] = {
    "simple_monthly": _simple_monthly,
    "yearly": _yearly,
    "trialing": _trialing,
    "gifted": _gifted,
    "upgraded_proration": _upgraded_proration,
    "cancel_at_period_end": _cancel_at_period_end,
    "canceled_refunded": _canceled_refunded,
    "past_due": _past_due,
    "two_subscriptions": _two_subscriptions,
    "paid_offline": _paid_offline,
    "credit_balance": _credit_balance,
    "multi_seat": _multi_seat,
    "pending_invoice_item": _pending_invoice_item,
}
