"""One error hierarchy for twinbill.

::

    TwinbillError
    ├── ConfigurationError          a setting is missing or malformed (names the variable)
    ├── InvalidInput                bad input from a person or a caller; nothing was written
    │   ├── InvalidAmount           zero, negative, too many decimals, above the ceiling
    │   ├── UnknownCurrency
    │   └── CurrencyMismatch
    ├── UnknownUser                 no routing row for that app user id
    ├── UserMigrating               writes refused while the user moves (retryable)
    ├── UserHeld                    writes refused, an operator holds the user
    ├── IllegalTransition           a route or saga state change the rules forbid
    ├── BackendError                a billing system failed us
    │   ├── BackendUnavailable      transient: timeout, connection, 5xx (retryable)
    │   ├── RateLimited             429: carries retry_after seconds (retryable)
    │   ├── BackendRejected         permanent 4xx: the request is wrong
    │   └── NotFound                the object does not exist there
    ├── TransformError              legacy data cannot be mapped (names record and field)
    └── ReconciliationError         a reconciliation could not run (not "found diffs")

``retryable`` tells a worker whether trying again later can help; error classes
(``kind``) are what cohort dashboards group failures by.
"""

from __future__ import annotations


class TwinbillError(Exception):
    retryable: bool = False
    kind: str = "bug"

    def __init__(self, message: str = "", **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.context = context


class ConfigurationError(TwinbillError):
    kind = "config"


class InvalidInput(TwinbillError):
    kind = "input"


class InvalidAmount(InvalidInput):
    pass


class UnknownCurrency(InvalidInput):
    pass


class CurrencyMismatch(InvalidInput):
    pass


class UnknownUser(TwinbillError):
    kind = "input"

    def __init__(self, user_id: str) -> None:
        super().__init__(f"unknown user {user_id!r}: no routing entry (run `twinbill users sync`)")
        self.user_id = user_id


class UserMigrating(TwinbillError):
    retryable = True
    kind = "migrating"

    def __init__(self, user_id: str, retry_after: int = 30) -> None:
        super().__init__(
            f"user {user_id!r} is being migrated; writes are paused, retry in {retry_after}s"
        )
        self.user_id = user_id
        self.retry_after = retry_after


class UserHeld(TwinbillError):
    kind = "held"

    def __init__(self, user_id: str, state: str = "held") -> None:
        super().__init__(f"user {user_id!r} is {state}: read-only until an operator releases it")
        self.user_id = user_id


class IllegalTransition(TwinbillError):
    kind = "bug"


class BackendError(TwinbillError):
    kind = "backend"

    def __init__(
        self, message: str = "", *, backend: str = "", status: int | None = None, **context: object
    ) -> None:
        super().__init__(message, **context)
        self.backend = backend
        self.status = status


class BackendUnavailable(BackendError):
    retryable = True
    kind = "transient"


class RateLimited(BackendError):
    retryable = True
    kind = "rate_limited"

    def __init__(self, message: str = "", *, retry_after: float = 1.0, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class BackendRejected(BackendError):
    kind = "rejected"


class NotFound(BackendError):
    kind = "not_found"


class TransformError(TwinbillError):
    kind = "data"

    def __init__(self, message: str, *, record: str = "", field: str = "") -> None:
        where = f"{record}.{field}" if field else record
        super().__init__(f"{where}: {message}" if where else message)
        self.record = record
        self.field = field


class ReconciliationError(TwinbillError):
    kind = "reconcile"
