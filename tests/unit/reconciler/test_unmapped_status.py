"""The unmapped-field table says, for every field, carried / derived / dropped — and a
field the legacy mapping reads is never counted as unmapped."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from multiplexer.backends.stripe.mapping import map_objects
from reconciler.legacy_fields import KNOWN_LEGACY_FIELDS
from reconciler.unmapped import find_unmapped
from tests.fakes.reads import recording

SNAPSHOT = (
    Path(__file__).resolve().parents[1] / "multiplexer" / "backends" / "data"
) / "localstripe_snapshot.json"

VAT = {
    "id": "txr_vat",
    "object": "tax_rate",
    "display_name": "VAT",
    "percentage": 19.0,
    "inclusive": False,
    "jurisdiction": "DE",
    "active": True,
    "created": 1700000000,
    "livemode": False,
    "metadata": {},
}


def _snapshot(**changes: object) -> dict:
    raw = json.loads(SNAPSHOT.read_text())
    sub = raw["subscriptions"][0]
    sub.update({"default_tax_rates": [VAT], "trial_end": 1900000000, "start_date": 1700000000})
    sub["status"] = "incomplete"  # a localstripe trial: read through trial_end and start_date
    raw["customer"]["account_balance"] = 500  # localstripe's sign-flipped credit
    for inv in raw["invoices"]:
        inv["total_tax_amounts"] = [{"amount": 0, "inclusive": False, "tax_rate": "txr_vat"}]
    raw.update(changes)
    return raw


@pytest.mark.parametrize("dialect", ["localstripe", "current"])
def test_every_raw_field_the_mapping_reads_is_carried_or_derived(dialect: str) -> None:
    seen: set[tuple[str, str]] = set()
    map_objects("u1", recording(copy.deepcopy(_snapshot()), seen), dialect=dialect)  # type: ignore[arg-type]
    assert seen, "the recorder saw nothing: the test would prove nothing"
    wrong = []
    for kind, key in sorted(seen):
        if key == "object":
            continue  # the type tag: how the walker and the mapping tell objects apart
        known = KNOWN_LEGACY_FIELDS.get(kind)
        status = known.status(key) if known else None
        if status is None or status[0] == "dropped":
            wrong.append(f"{kind}.{key}: read by the mapping, table says {status}")
    assert not wrong, "\n".join(wrong)


def test_tax_rates_and_tax_breakdown_are_not_unmapped() -> None:
    found = {(d.record_type, d.field) for d in find_unmapped("u1", _snapshot())}
    assert ("subscription", "default_tax_rates") not in found
    assert ("invoice", "total_tax_amounts") not in found
    assert not {f for f in found if f[0] == "tax_rate"}


def test_every_declared_field_has_a_status_and_every_non_carried_one_a_reason() -> None:
    for kind, known in KNOWN_LEGACY_FIELDS.items():
        for path in [*known.read, *known.derived, *known.ignored]:
            status = known.status(path)
            assert status is not None, (kind, path)
            assert status[0] in ("carried", "derived", "dropped")
            assert status[1].strip(), (kind, path)
        assert not set(known.read) & set(known.derived), kind
        assert not set(known.read) & set(known.ignored), kind
