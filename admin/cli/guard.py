"""Before billing moves: say where we are pointed, what will happen, and ask.

Every mutating command prints an environment banner on stderr (database, legacy
backend and whether its key is a *live* or a *test* key). Commands that cancel
legacy subscriptions (``cohort run|resume|retry-failed``, ``migrate USER``) also
print what they will do and ask; ``--yes`` answers for scripts; without a
terminal and without ``--yes`` they refuse (exit 2) and nothing is started.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import typer

from admin.cli.common import EXIT_ERROR, err_console, fail

YES_HELP = "answer yes to the confirmation (scripts, CI); required without a terminal"
#: Count legacy subscriptions exactly (one legacy read per user) up to this many users.
COUNT_LIMIT = 25


def stdin_is_tty() -> bool:
    return sys.stdin.isatty()


#: The banner's words for ``core.environment.key_mode``.
KEY_WORDS = {
    "live": "live key",
    "test": "test key",
    "unset": "no key",
    "unknown": "key of unknown kind",
}


def key_mode(secret: str | None) -> str:
    """``live key`` / ``test key`` from a Stripe key's prefix (the key itself is never printed)."""
    from core.environment import key_mode as mode_of

    return KEY_WORDS[mode_of(secret)]


@dataclass(frozen=True)
class Environment:
    database: str
    legacy: str
    key: str
    account: str | None = None

    @property
    def live(self) -> bool:
        return self.key == "live key"

    def line(self) -> str:
        if not self.legacy:
            return f"environment: database {self.database}"
        account = f" account {self.account}" if self.account else ""
        return f"environment: database {self.database} · legacy {self.legacy}{account} ({self.key})"


def environment(
    legacy: Any = None, *, with_legacy: bool = True, settings: Any = None
) -> Environment:
    """Where this process points (``core.environment``); with a legacy backend, also ask
    Stripe for the account."""
    from core.environment import pointing
    from core.settings import load_settings

    p = pointing(settings or load_settings())
    return Environment(
        database=p.database_url,
        legacy=f"{p.legacy_backend} at {p.legacy_base}" if with_legacy else "",
        key=KEY_WORDS[p.key] if with_legacy else "",
        account=_account(legacy) if legacy is not None else None,
    )


def _account(legacy: Any) -> str | None:
    """``acct_…`` of the key, best effort (localstripe has no /v1/account)."""
    client = getattr(legacy, "client", None)
    try:
        return str(client.v1.accounts.retrieve_current().id) if client is not None else None
    except Exception:  # noqa: BLE001 - a banner must never stop the command
        return None


def banner(legacy: Any = None, *, with_legacy: bool = True, settings: Any = None) -> Environment:
    """Print where this command is pointed (stderr: ``--json`` stdout stays JSON)."""
    env = environment(legacy, with_legacy=with_legacy, settings=settings)
    style = "bold red" if env.live else "bold"
    err_console.print(f"[{style}]{env.line()}[/]", highlight=False, soft_wrap=True)
    return env


def count_legacy_subscriptions(legacy: Any, routes: Sequence[Any]) -> int | None:
    """Billing legacy subscriptions of these users; None when there are too many to ask."""
    from core.errors import BackendError
    from multiplexer.backends.base import UserRef

    if len(routes) > COUNT_LIMIT:
        return None
    total = 0
    try:
        for r in routes:
            ref = UserRef(r.user_id, r.legacy_customer_id, r.new_customer_id)
            total += sum(1 for s in legacy.list_subscriptions(ref) if s.status.billing)
    except BackendError as exc:  # the saga will meet the same problem and say so per user
        err_console.print(f"[yellow]could not count legacy subscriptions[/]: {exc}")
        return None
    return total


def plan_sentence(n_users: int, n_subs: int | None, env: Environment, *, dry_run: bool) -> str:
    users = f"{n_users} user{'s' if n_users != 1 else ''}"
    if dry_run:
        return f"will dry-run {users}: fetch, transform and import, then discard; nothing cancelled"
    subs = (
        f"{n_subs} legacy subscription{'s' if n_subs != 1 else ''}"
        if n_subs is not None
        else "every billing legacy subscription of those users"
    )
    account = env.account or "(account id not available)"
    return f"will migrate {users}: cancel {subs} on account {account} ({env.key})"


def confirm(sentence: str, *, yes: bool, nothing: str = "nothing was started") -> None:
    """Show what will happen; go on with ``--yes`` or a "y" typed at a terminal."""
    err_console.print(sentence, highlight=False, soft_wrap=True)
    if yes:
        return
    if not stdin_is_tty():
        raise fail(f"not a terminal and no --yes: {nothing}", "pass --yes to confirm")
    if not typer.confirm("Go ahead?", default=False, err=True):
        err_console.print(f"aborted; {nothing}")
        raise typer.Exit(EXIT_ERROR)
