"""What the admin header says about where it is pointed: legacy account mode and database.

Shown on every page so nobody records a refund on the live account believing it is a
test one. The reading is ``core.environment`` (shared with the CLI banner): the key's
mode only (live, test, sandbox for a local API base, unset), the database's dialect,
name and host, never a secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.environment import pointing
from core.settings import Settings


@dataclass(frozen=True, slots=True)
class Environment:
    legacy_mode: str  # live | test | sandbox | unknown | unset
    database: str

    @property
    def live(self) -> bool:
        return self.legacy_mode == "live"

    @property
    def text(self) -> str:
        return f"legacy: {self.legacy_mode} key · database: {self.database}"


def describe(settings: Settings) -> Environment:
    p = pointing(settings)
    return Environment(p.legacy_mode, p.database)
