"""``twinbill legacy check``: is this Stripe account ready for a first cohort?

Run by an operator against the configured account (``TWINBILL_LEGACY_API_KEY``,
test or live key) before the first cohort. Reports, from Stripe's own answers:

* the API version every request is pinned to, and the version each webhook endpoint
  renders its events in (an endpoint on another version sends other shapes);
* the key's mode (test / live, from the key and from the objects' ``livemode``);
* whether webhooks reach twinbill: an enabled endpoint for ``--webhook-url`` exists
  on the account, and the URL answers an unsigned probe by refusing it (400/401:
  twinbill is there and checks signatures);
* a sample of N customers, each snapshotted and mapped as a migration would: every
  unmapped field (``reconciler.unmapped``) and every mapping error, counted.

Exit codes: 0 ready, 1 something to fix (unmapped fields, mapping errors, webhooks
not reaching twinbill, key/endpoint version mismatch), 2 error.
Reads only: nothing is written to Stripe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import typer

from admin.cli.common import EXIT_ERROR, EXIT_FOUND, EXIT_OK, console, err_console, print_json
from core.environment import key_mode
from core.errors import TransformError, TwinbillError

app = typer.Typer(help="Check the legacy (Stripe) account before migrating.", no_args_is_help=True)

Probe = Callable[[str], int | None]  # URL -> HTTP status of an unsigned POST (None: no answer)


@dataclass
class CheckReport:
    api_version: str
    key_mode: str
    livemode_seen: list[bool] = field(default_factory=list)
    webhook_url: str | None = None
    webhook_endpoint: dict[str, Any] | None = None
    webhook_probe_status: int | None = None
    webhook_problems: list[str] = field(default_factory=list)
    customers_read: int = 0
    customers_mapped: int = 0
    unmapped_fields: dict[str, int] = field(default_factory=dict)
    mapping_errors: dict[str, int] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not (self.unmapped_fields or self.mapping_errors or self.webhook_problems)


def run_check(
    backend: Any,
    *,
    api_key: str,
    sample: int,
    webhook_url: str | None,
    probe: Probe | None = None,
) -> CheckReport:
    """The whole check against one legacy backend (``StripeLegacyBackend``); reads only."""
    from multiplexer.backends.base import UserRef
    from reconciler.unmapped import find_unmapped

    report = CheckReport(api_version=backend.api_version, key_mode=key_mode(api_key))
    _check_webhooks(backend, report, webhook_url, probe)
    unmapped: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for n, customer in enumerate(backend.iter_customers(page_size=min(max(sample, 1), 100))):
        if n >= sample:
            break
        report.customers_read += 1
        ref = UserRef(customer.user_id or customer.id, legacy_customer_id=customer.id)
        try:
            snap = backend.snapshot(ref)
            report.livemode_seen.append(bool(snap.objects["customer"].get("livemode")))
            backend.map_snapshot(snap)
        except TransformError as exc:
            # grouped by field and message, not by record: "120 × price.unit_amount: ..."
            errors[f"{exc.field or '?'}: {str(exc).split(': ', 1)[-1]}"] += 1
            continue
        report.customers_mapped += 1
        for diff in find_unmapped(ref.user_id, snap.objects):
            unmapped[f"{diff.record_type}.{diff.field}"] += 1
    report.livemode_seen = sorted(set(report.livemode_seen))
    report.unmapped_fields = dict(sorted(unmapped.items()))
    report.mapping_errors = dict(sorted(errors.items()))
    return report


def _check_webhooks(
    backend: Any, report: CheckReport, url: str | None, probe: Probe | None
) -> None:
    report.webhook_url = url
    if not url:
        report.webhook_problems.append("no --webhook-url given: cannot tell whether events reach")
        return
    try:
        endpoints = backend.webhook_endpoints()
    except TwinbillError as exc:
        report.webhook_problems.append(f"cannot list webhook endpoints: {exc}")
        endpoints = []
    mine = [e for e in endpoints if e.get("url") == url]
    if not mine:
        report.webhook_problems.append(f"no webhook endpoint for {url} on this account")
    else:
        ep = mine[0]
        report.webhook_endpoint = {
            k: ep.get(k) for k in ("id", "status", "api_version", "enabled_events")
        }
        if ep.get("status") != "enabled":
            report.webhook_problems.append(f"endpoint {ep.get('id')} is {ep.get('status')}")
        version = ep.get("api_version")
        if version and version != report.api_version:
            report.webhook_problems.append(
                f"endpoint {ep.get('id')} renders events at {version}, requests use "
                f"{report.api_version}: events would arrive in other shapes"
            )
    if probe is not None:
        status = probe(url)
        report.webhook_probe_status = status
        if status not in (400, 401):
            report.webhook_problems.append(
                f"{url} answered an unsigned probe with {status}: expected a refusal (400/401)"
            )


def http_probe(url: str) -> int | None:
    """POST an empty, unsigned event; twinbill must refuse it (and nothing is queued)."""
    import httpx

    try:
        answer = httpx.post(url, content=b"{}", headers={"Stripe-Signature": ""}, timeout=10)
    except httpx.HTTPError:
        return None
    return answer.status_code


def _print(report: CheckReport) -> None:
    console.print(f"API version  {report.api_version}")
    seen = {True: "live", False: "test"}
    objects = ", ".join(seen[m] for m in report.livemode_seen) or "-"
    console.print(f"key mode     {report.key_mode} (objects read: {objects})")
    hook = report.webhook_endpoint or {}
    console.print(
        f"webhooks     {report.webhook_url or '-'}: endpoint {hook.get('id', '-')} "
        f"{hook.get('status', '')} probe {report.webhook_probe_status or '-'}"
    )
    for problem in report.webhook_problems:
        console.print(f"  [red]![/] {problem}")
    console.print(f"customers    {report.customers_mapped}/{report.customers_read} mapped")
    for name, rows in (("unmapped", report.unmapped_fields), ("errors", report.mapping_errors)):
        for key, count in rows.items():
            console.print(f"  {name:<9} {count:>5} × {key}")
    console.print("[green]ready[/]" if report.ready else "[yellow]not ready[/]")


@app.command("check")
def check(
    sample: int = typer.Option(20, "--sample", min=0, help="customers to read and map"),
    webhook_url: str | None = typer.Option(
        None, "--webhook-url", help="twinbill's public /webhooks/legacy URL"
    ),
    probe: bool = typer.Option(True, "--probe/--no-probe", help="POST an unsigned probe"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Check the configured Stripe account: version, key mode, webhooks, a mapped sample.

    Example:
      twinbill legacy check --sample 50 --webhook-url https://billing.example.com/webhooks/legacy
    """
    from core.settings import load_settings
    from multiplexer.backends import registry

    try:
        settings = load_settings()
        backend = registry.build_legacy(settings, lambda: None)
        assert settings.legacy_api_key is not None
        report = run_check(
            backend,
            api_key=settings.legacy_api_key.get_secret_value(),
            sample=sample,
            webhook_url=webhook_url,
            probe=http_probe if probe else None,
        )
    except TwinbillError as exc:
        err_console.print(f"[bold red]error[/]: {exc}")
        raise typer.Exit(EXIT_ERROR) from None
    if as_json:
        print_json({**asdict(report), "ready": report.ready})
    else:
        _print(report)
    raise typer.Exit(EXIT_OK if report.ready else EXIT_FOUND)
