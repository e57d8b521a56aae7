"""Where a brand-new user is placed: a sticky hash of the user id against a percentage.

Pure. The same user always lands in the same bucket (0..9999); a user goes to
the new system when its bucket is below the rollout threshold, so raising the
percentage only ever moves users legacy -> new, never back.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from sqlalchemy.orm import Session

from core import audit
from core.errors import InvalidInput
from multiplexer.models import RolloutPolicy

BUCKETS = 10_000


def bucket(user_id: str, salt: str) -> int:
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True, slots=True)
class Placement:
    new_users_bp: int  # basis points: 2500 = 25%
    salt: str
    allow: frozenset[str] = field(default_factory=frozenset)
    deny: frozenset[str] = field(default_factory=frozenset)

    def system_for(self, user_id: str) -> str:
        if user_id in self.deny:
            return "legacy"
        if user_id in self.allow:
            return "new"
        return "new" if bucket(user_id, self.salt) < self.new_users_bp else "legacy"


def percent_to_bp(text: str | float) -> int:
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        raise InvalidInput(f"{text!r} is not a percentage") from None
    if not value.is_finite() or value < 0 or value > 100:
        raise InvalidInput(f"percentage must be between 0 and 100, got {text}")
    bp = value * 100
    if bp != bp.to_integral_value():
        raise InvalidInput(f"percentage {text} has more than two decimals")
    return int(bp)


def load_policy(session: Session) -> RolloutPolicy:
    policy = session.get(RolloutPolicy, 1)
    if policy is None:
        policy = RolloutPolicy(id=1, new_users_bp=0, salt=secrets.token_hex(16), allow=[], deny=[])
        session.add(policy)
        session.flush()
    return policy


def current_placement(session: Session) -> Placement:
    p = load_policy(session)
    return Placement(p.new_users_bp, p.salt, frozenset(p.allow), frozenset(p.deny))


def set_policy(
    session: Session,
    *,
    actor: str,
    new_users_percent: str | float | None = None,
    allow: list[str] | None = None,
    deny: list[str] | None = None,
    reason: str = "",
) -> RolloutPolicy:
    policy = load_policy(session)
    before = {
        "new_users_bp": policy.new_users_bp,
        "allow": list(policy.allow),
        "deny": list(policy.deny),
    }
    if new_users_percent is not None:
        policy.new_users_bp = percent_to_bp(new_users_percent)
    if allow is not None:
        policy.allow = sorted(set(allow))
    if deny is not None:
        policy.deny = sorted(set(deny))
    if set(policy.allow) & set(policy.deny):
        raise InvalidInput(
            f"users both allowed and denied: {sorted(set(policy.allow) & set(policy.deny))}"
        )
    after = {
        "new_users_bp": policy.new_users_bp,
        "allow": list(policy.allow),
        "deny": list(policy.deny),
    }
    audit.record(
        session,
        actor=actor,
        action="rollout.set",
        resource_type="rollout",
        resource_id="new_users",
        before=before,
        after=after,
        reason=reason or None,
    )
    return policy
