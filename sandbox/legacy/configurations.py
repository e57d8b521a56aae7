"""The staging population as a plan: who gets which configuration, currency, amounts.

Pure and deterministic (no I/O, no clock): ``plan_users(n, seed)`` returns the
same list for the same arguments, so two fresh localstripe instances seeded
with one seed hold the same users. ``population.seed`` turns the plan into
Stripe objects.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

# Every configuration a migration must survive. Order matters only as the
# starting point of the seeded shuffle in ``configuration_order``.
CONFIGURATIONS: tuple[str, ...] = (
    "simple_monthly",
    "yearly",
    "trialing",
    "gifted",
    "upgraded_proration",
    "cancel_at_period_end",
    "canceled_refunded",
    "past_due",
    "two_subscriptions",
    "paid_offline",
    "credit_balance",
    "multi_seat",
    "pending_invoice_item",
)

DEFAULT_CURRENCIES: tuple[str, ...] = ("eur", "usd", "gbp", "jpy")

# Stripe's zero-decimal currencies among the ones we might seed: amounts are
# whole units (¥1200 is amount=1200), never "cents".
ZERO_DECIMAL_CURRENCIES = frozenset({"jpy", "krw", "vnd", "clp"})

# (tier, interval) -> amount in the currency's smallest unit.
PLAN_AMOUNTS: dict[str, dict[tuple[str, str], int]] = {
    "eur": {("basic", "month"): 990, ("basic", "year"): 9900, ("pro", "month"): 1990},
    "usd": {("basic", "month"): 1099, ("basic", "year"): 10990, ("pro", "month"): 2199},
    "gbp": {("basic", "month"): 899, ("basic", "year"): 8990, ("pro", "month"): 1799},
    "jpy": {("basic", "month"): 1200, ("basic", "year"): 12000, ("pro", "month"): 2400},
}

# Credits stay below the monthly price so a credit user still pays something.
CREDIT_CHOICES: dict[str, tuple[int, ...]] = {
    "eur": (300, 500, 800),
    "usd": (300, 500, 800),
    "gbp": (300, 500, 800),
    "jpy": (300, 500, 1000),
}
# One-off fees (pending invoice items), smallest unit.
ONE_OFF_CHOICES: dict[str, tuple[int, ...]] = {
    "eur": (1500, 2900, 4900),
    "usd": (1500, 2900, 4900),
    "gbp": (1200, 2500, 3900),
    "jpy": (2000, 3500, 5000),
}

GIFT_MONTHS = 3

# Yearly subscribers are taxed with a subscription tax rate (Stripe default_tax_rates):
# percentage as an exact decimal string, display name, jurisdiction.
TAX_RATES: dict[str, tuple[str, str, str]] = {
    "eur": ("19", "VAT", "DE"),
    "usd": ("8.875", "Sales tax", "US-NY"),
    "gbp": ("20", "VAT", "GB"),
    "jpy": ("10", "Consumption tax", "JP"),
}

FIRST_NAMES = (
    "ada", "alan", "amara", "bruno", "chloe", "dmitri", "elena", "farah", "grace", "hiro",
    "ines", "jonas", "keiko", "liam", "maya", "nadia", "oscar", "priya", "quentin", "rosa",
    "sami", "tomas", "ulla", "victor", "wen", "xavier", "yara", "zoe",
)  # fmt: skip
LAST_NAMES = (
    "abara", "becker", "costa", "dubois", "eriksen", "fischer", "garcia", "hansen", "ito",
    "jansen", "kowalski", "lopez", "martin", "nakamura", "okafor", "petrov", "quinn", "rossi",
    "silva", "tanaka", "urban", "vogel", "walsh", "xu", "yilmaz", "zimmer",
)  # fmt: skip


@dataclass(frozen=True)
class PlanSpec:
    id: str
    product_id: str
    tier: str
    interval: str
    currency: str
    amount: int

    @property
    def nickname(self) -> str:
        return f"{self.tier.title()} {self.interval}ly ({self.currency.upper()})"


@dataclass(frozen=True)
class UserSpec:
    """One planned user: everything random about it is drawn here, from the seed."""

    index: int
    app_user_id: str
    config: str
    currency: str
    first_name: str
    last_name: str
    email: str
    trial_days: int = 0
    refund_ratio: float = 0.0
    credit: int = 0  # customer credit, positive, smallest unit
    quantity: int = 1
    one_off_amount: int = 0

    @property
    def name(self) -> str:
        return f"{self.first_name.title()} {self.last_name.title()}"


def plan_id(tier: str, interval: str, currency: str) -> str:
    return f"plan_{tier}_{interval}ly_{currency}"


def product_id(tier: str) -> str:
    return f"prod_twinbill_{tier}"


def plan_catalogue(currencies: Sequence[str] = DEFAULT_CURRENCIES) -> list[PlanSpec]:
    plans = []
    for currency in currencies:
        if currency not in PLAN_AMOUNTS:
            raise ValueError(f"no plan amounts for currency {currency!r}")
        for (tier, interval), amount in PLAN_AMOUNTS[currency].items():
            plans.append(
                PlanSpec(
                    id=plan_id(tier, interval, currency),
                    product_id=product_id(tier),
                    tier=tier,
                    interval=interval,
                    currency=currency,
                    amount=amount,
                )
            )
    return plans


def plan_amount(tier: str, interval: str, currency: str) -> int:
    return PLAN_AMOUNTS[currency][(tier, interval)]


def app_user_id(index: int) -> str:
    return f"u_{index:06d}"


def configuration_order(seed: int) -> tuple[str, ...]:
    """The seeded rotation: user i gets ``order[i % len(order)]``.

    Any run of ``len(CONFIGURATIONS)`` consecutive users covers every
    configuration exactly once.
    """
    order = list(CONFIGURATIONS)
    random.Random(f"twinbill-config-order-{seed}").shuffle(order)
    return tuple(order)


def currency_for(index: int, seed: int, currencies: Sequence[str]) -> str:
    """Rotate currencies so that each configuration meets every one of them.

    Within a round of configurations the currency advances with the user; each
    new round shifts by one, so the k-th user of one configuration gets
    currency k (mod the number of currencies).
    """
    offset = random.Random(f"twinbill-currency-{seed}").randrange(len(currencies))
    position, round_ = index % len(CONFIGURATIONS), index // len(CONFIGURATIONS)
    return currencies[(offset + position + round_) % len(currencies)]


def plan_users(
    n: int, seed: int, currencies: Sequence[str] = DEFAULT_CURRENCIES, *, first_index: int = 1
) -> list[UserSpec]:
    if n < 0:
        raise ValueError("n must be >= 0")
    if not currencies:
        raise ValueError("at least one currency is needed")
    for currency in currencies:
        if currency not in PLAN_AMOUNTS:
            raise ValueError(f"no plan amounts for currency {currency!r}")
    rng = random.Random(seed)
    order = configuration_order(seed)
    used_emails: set[str] = set()
    users = []
    for i in range(n):
        index = first_index + i
        config = order[i % len(order)]
        currency = currency_for(i, seed, currencies)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = _unique_email(first, last, used_emails)
        # Draw every parameter for every user (used or not) so that changing
        # one configuration's recipe never shifts the others' random draws.
        trial_days = rng.randint(7, 30)
        refund_ratio = rng.choice((0.25, 0.5, 0.75))
        credit = rng.choice(CREDIT_CHOICES[currency])
        quantity = rng.randint(2, 12)
        one_off = rng.choice(ONE_OFF_CHOICES[currency])
        users.append(
            UserSpec(
                index=index,
                app_user_id=app_user_id(index),
                config=config,
                currency=currency,
                first_name=first,
                last_name=last,
                email=email,
                trial_days=trial_days if config == "trialing" else 0,
                refund_ratio=refund_ratio if config == "canceled_refunded" else 0.0,
                credit=credit if config == "credit_balance" else 0,
                quantity=quantity if config == "multi_seat" else 1,
                one_off_amount=one_off if config == "pending_invoice_item" else 0,
            )
        )
    return users


def refund_amount(charge_amount: int, ratio: float) -> int:
    """A partial refund: strictly between 0 and the charge, in whole smallest units."""
    if charge_amount < 2:
        raise ValueError("cannot partially refund a charge below 2 units")
    return min(charge_amount - 1, max(1, int(charge_amount * ratio)))


def _unique_email(first: str, last: str, used: set[str]) -> str:
    local, n = f"{first}.{last}", 1
    email = f"{local}@example.test"
    while email in used:
        n += 1
        email = f"{local}{n}@example.test"
    used.add(email)
    return email
