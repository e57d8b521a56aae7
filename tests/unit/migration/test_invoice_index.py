"""The verify step keeps the invoice-number search index in sync; the backfill is idempotent."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from admin.web.search import search
from migration import services
from migration.verify import reconcile_verifier
from multiplexer.models import InvoiceNumber
from multiplexer.search_index import backfill


def _number_invoices(backend, prefix: str) -> list[str]:
    numbers = []
    for i, (key, inv) in enumerate(sorted(backend.invoices.items())):
        number = f"{prefix}-{i:04d}"
        backend.invoices[key] = inv.model_copy(update={"number": number})
        numbers.append(number)
    return numbers


def _indexed(world) -> set[tuple[str, str, str]]:
    with world.sessions() as s:
        rows = s.execute(
            sa.select(InvoiceNumber.number, InvoiceNumber.system, InvoiceNumber.user_id)
        )
        return {(r[0], r[1], r[2]) for r in rows}


def test_search_finds_a_user_by_invoice_number_after_verify(world):
    world.user()
    numbers = _number_invoices(world.legacy, "LEG")
    assert numbers
    deps = dataclasses.replace(world.deps, verifier=reconcile_verifier)
    services.migrate_user(deps, "u1")
    indexed = _indexed(world)
    assert {(n, "legacy", "u1") for n in numbers} <= indexed
    with world.sessions() as s:
        assert [h.user_id for h in search(s, numbers[0].lower()).hits] == ["u1"]


def test_backfill_indexes_both_systems_and_is_idempotent(world):
    world.user("u1")
    world.user("u2")
    legacy_numbers = _number_invoices(world.legacy, "LEG")
    first = backfill(world.sessions, world.legacy, world.new)
    assert first.failed == {} and first.users == 2
    assert first.numbers == len(legacy_numbers)
    before = _indexed(world)
    assert {n for n, system, _ in before if system == "legacy"} == set(legacy_numbers)
    again = backfill(world.sessions, world.legacy, world.new)
    assert again.as_dict() == first.as_dict()
    assert _indexed(world) == before
    one = backfill(world.sessions, world.legacy, world.new, user_id="u2")
    assert one.users == 1 and _indexed(world) == before
    with world.sessions() as s:
        owner = {n: u for n, _, u in before}
        assert [h.user_id for h in search(s, legacy_numbers[-1]).hits] == [
            owner[legacy_numbers[-1]]
        ]


def test_backfill_reads_new_users_bundles(world):
    ref = world.user()
    _number_invoices(world.legacy, "LEG")
    services.migrate_user(world.deps, "u1")  # verifier is a fake here: nothing indexed yet
    history = world.legacy.get_history(ref)
    invoices = tuple(
        inv.model_copy(update={"number": f"NEW-{i:04d}"}) for i, inv in enumerate(history.invoices)
    )
    new_numbers = [inv.number for inv in invoices]
    bundle = history.model_copy(update={"invoices": invoices}).model_dump(mode="json")
    world.new.get_bundle = lambda user_id: bundle  # the fake keeps imports apart
    assert _indexed(world) == set()
    result = backfill(world.sessions, world.legacy, world.new, user_id="u1")
    systems = {system for _, system, _ in _indexed(world)}
    assert result.users == 1 and systems == {"legacy", "new"}
    assert {n for n, system, _ in _indexed(world) if system == "new"} == set(new_numbers)
