"""What reading a page of a Stripe list costs the *client*: the SDK's objects vs JSON.

A snapshot's lists (and the bulk read's account-wide ones) are pages of up to 100
objects. Through the SDK's typed list methods every page becomes ``StripeObject``s,
recursively, which ``transport.to_plain`` turns back into dicts; ``StripeCalls.pages``
with a path reads the same page as the JSON Stripe sent (``raw_get``). Both read the
same page from the current-API double, in process (no socket); the double's own time
per page is measured apart and taken out, so what is left is the client's CPU. The
dicts are checked equal. Prints ms per page and the ratio; asserts nothing.

    .venv/bin/python bench/stripe_pages.py --customers 120 --repeat 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from multiplexer.backends.stripe.transport import to_plain  # noqa: E402
from tests.stripe_current import configurations  # noqa: E402
from tests.stripe_current.double import StripeDouble, client_for  # noqa: E402

LISTS = {
    "customers": {"expand": ["data.invoice_settings.default_payment_method"]},
    "subscriptions": {"status": "all", "expand": ["data.discounts.source.coupon"]},
    "invoices": {"expand": ["data.payments"]},
    "charges": {"expand": ["data.refunds"]},
}


def _per_page(fn, repeat: int) -> float:  # noqa: ANN001
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    double = StripeDouble()
    for i in range(args.customers):
        configurations.seed_varied(double, f"v{i}", i)
    client = client_for(double)
    print(f"a page of 100 from the current-API double ({args.customers} customers), ms of CPU")
    print(f"{'list':<14} {'server':>7} {'SDK objects':>12} {'JSON':>7} {'ratio':>6}")
    for name, extra in LISTS.items():
        params = {"limit": 100, **extra}
        path = f"/v1/{name}"
        sdk_fn = getattr(client.v1, name).list
        sdk_page = to_plain(sdk_fn(params))
        raw_page = client.raw_request("get", path, **params).data
        assert sdk_page == raw_page, f"{name}: the two reads differ"
        query = urlencode(
            [(k, v) for k, v in params.items() if not isinstance(v, list)]
            + [(f"expand[{i}]", e) for i, e in enumerate(params.get("expand", []))]
        )
        url = f"https://api.stripe.com{path}?{query}"
        server = _per_page(lambda: double.request("get", url, {}, None), args.repeat)  # noqa: B023
        sdk = _per_page(lambda: to_plain(sdk_fn(params)), args.repeat) - server  # noqa: B023
        raw = (
            _per_page(
                lambda: client.raw_request("get", path, **params).data,  # noqa: B023
                args.repeat,
            )
            - server
        )
        print(f"{name:<14} {server:>7.1f} {sdk:>12.1f} {raw:>7.1f} {raw / sdk:>6.2f}")
    print("\nserver: the double's own time per page (taken out of both); ratio: JSON / SDK")


if __name__ == "__main__":
    main()
