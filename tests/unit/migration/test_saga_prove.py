"""The prove step on in-memory systems: a disagreement, a malformed or an unavailable
preview each leave the user on legacy, untouched, with the reason recorded."""

from __future__ import annotations

from core.errors import BackendUnavailable, TransformError
from migration import services
from migration.records import steps_of
from multiplexer.backends.base import UserRef


def _billing(world) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.id for s in world.legacy.list_subscriptions(UserRef("u1")) if s.status.billing]


def _steps(world, mig):  # type: ignore[no-untyped-def]
    with world.sessions() as s:
        return [(r.step, r.outcome, r.detail) for r in steps_of(s, mig.id)]


def test_prove_runs_before_the_cancel_and_in_dry_runs(world) -> None:  # type: ignore[no-untyped-def]
    world.user()
    dry = services.migrate_user(world.deps, "u1", dry_run=True)
    assert dry.status == "dry_run"
    assert [s for s, outcome, _ in _steps(world, dry) if outcome == "ok"] == [
        "preflight", "fetch", "transform", "load", "prove", "discard",
    ]  # fmt: skip
    mig = services.migrate_user(world.deps, "u1")
    done = [s for s, outcome, _ in _steps(world, mig) if outcome == "ok"]
    assert done.index("recheck") < done.index("prove") < done.index("cancel")


def test_a_disagreement_is_a_data_error_before_the_pivot(world) -> None:  # type: ignore[no-untyped-def]
    world.user()
    before = _billing(world)
    real = world.new.preview_import

    def debt(import_id: str):  # type: ignore[no-untyped-def]
        out = real(import_id)
        charge = out.charges[0].model_copy(update={"amount_due": out.charges[0].total + 500})
        return out.model_copy(update={"balance": 500, "charges": (charge,)})

    world.new.preview_import = debt
    mig = services.migrate_user(world.deps, "u1")
    assert (mig.status, mig.error_kind) == ("compensated", "data")
    assert "amount_due" in (mig.error_message or "")
    assert not any(step == "cancel" for step, _, _ in _steps(world, mig))
    assert world.route().state == "legacy" and _billing(world) == before
    assert [i.status for i in world.new.imports.values()] == ["discarded"]
    (prove,) = [d for s, outcome, d in _steps(world, mig) if s == "prove"]
    assert {d["field"] for d in prove["differences"]} == {"balance", "amount_due"}
    assert prove["legacy"]["system"] == "legacy" and prove["new"]["system"] == "new"


def test_a_malformed_preview_names_the_field(world) -> None:  # type: ignore[no-untyped-def]
    world.user()

    def malformed(import_id: str):  # type: ignore[no-untyped-def]
        raise TransformError(
            "not an ISO 4217 currency: 'EURO'", record="sub_nb_1", field="currency"
        )

    world.new.preview_import = malformed
    mig = services.migrate_user(world.deps, "u1")
    assert (mig.status, mig.error_kind) == ("compensated", "data")
    assert "sub_nb_1.currency" in (mig.error_message or "")
    assert world.route().state == "legacy" and _billing(world)


def test_an_unavailable_preview_is_retried_then_could_not_prove(world) -> None:  # type: ignore[no-untyped-def]
    world.user()
    calls = {"n": 0}

    def down(ref, **_):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        raise BackendUnavailable("legacy upcoming invoice: 503", backend="stripe")

    world.legacy.preview_next_charges = down
    mig = services.migrate_user(world.deps, "u1")
    assert calls["n"] == world.deps.max_attempts
    assert mig.status == "compensated" and mig.error_kind == "transient"
    assert (mig.error_message or "").startswith("could not prove")
    assert not any(step == "cancel" for step, _, _ in _steps(world, mig))
    assert world.route().state == "legacy" and _billing(world)


def test_a_cohort_dry_run_yields_a_real_diff_rate_before_anyone_moves(world) -> None:  # type: ignore[no-untyped-def]
    from migration import cohort_progress, cohorts
    from reconciler.services import diff_rate

    for uid in ("u1", "u2", "u3", "u4"):
        world.user(uid)
    real = world.new.preview_import

    def wrong_for_u4(import_id: str):  # type: ignore[no-untyped-def]
        out = real(import_id)
        if out.user_id != "u4":
            return out
        return out.model_copy(update={"charges": ()})  # the new side would never charge

    world.new.preview_import = wrong_for_u4
    cohorts.create(world.sessions, "dry", ["u1", "u2", "u3", "u4"], actor="t", dry_run=True)
    services.start_cohort(
        world.deps, "dry", lambda mig_id: services.run_member(world.deps, mig_id), actor="t"
    )
    with world.sessions() as session:
        checked, with_diffs = diff_rate(
            session, "dry", cohort_progress.progress(session, "dry").started_at
        )
        status = cohort_progress.progress(session, "dry").status
    assert (checked, with_diffs) == (4, 1)
    assert status == "halted"  # 25 % > the 5 % threshold: nobody moved, the cohort stops
    assert all(world.route(u).state == "legacy" for u in ("u1", "u2", "u3", "u4"))
