"""The migration engine's side of the facade's shadow reads (``multiplexer.scientist``):
who is shadowed, how two answers compare (the reconciler's rules), where a result goes
(a ``ShadowCheck`` of kind ``read:<operation>``, in the cohort's shadow report)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from migration.shadow import shadowed_import
from migration.shadow_sync import record_check
from reconciler.reads import compare_read


class ShadowReadHooks:
    """Implements ``multiplexer.scientist.ShadowReads``; built by the composition root."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def _row_id(self, user_id: str) -> str | None:
        with self._sessions() as session:
            row = shadowed_import(session, user_id)
            return row.id if row is not None and row.status == "active" else None

    def shadowed(self, user_id: str) -> bool:
        return self._row_id(user_id) is not None

    def compare(self, op: str, user_id: str, legacy: Any, new: Any) -> list[dict[str, Any]]:
        return [d.to_dict() for d in compare_read(op, user_id, legacy, new)]

    def record(
        self, user_id: str, op: str, outcome: str, differences: list[dict[str, Any]]
    ) -> None:
        row_id = self._row_id(user_id)
        if row_id is None:  # the rehearsal ended while the read was compared
            return
        errors = [d for d in differences if "error" in d and "field" not in d]
        record_check(
            self._sessions,
            row_id,
            kind=f"read:{op}",
            trigger="facade",
            outcome=outcome,
            differences=[d for d in differences if d not in errors],
            detail={"error": errors[0]["error"]} if errors else None,
        )
