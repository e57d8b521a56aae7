"""``celery -A crash_worker worker``: the production worker app (``admin.worker``) plus
test-only hooks, read from the environment when the worker imports this module.

* ``TWINBILL_TEST_CRASH_AFTER=<step>``: SIGKILL this process right after
  ``migration.steps.step_<step>`` returns (its work done, its step record still open);
* ``TWINBILL_TEST_CRASH_BEFORE=<step>``: SIGKILL it just before that step runs;
* ``TWINBILL_TEST_STALE_AFTER=<seconds>``: the lease age after which this worker may take
  over a migration whose worker died (production: 120 s; the tests cannot wait that long).

SIGKILL, not an exception: nothing in the process gets to clean up, as when the kernel's
OOM killer or a node failure takes a worker.
"""

from __future__ import annotations

import functools
import os
import signal
from typing import Any

from admin.worker import app
from migration import runtime, steps

__all__ = ["app"]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _crash(step: str, when: str) -> None:
    original = getattr(steps, f"step_{step}")

    @functools.wraps(original)
    def crashing(deps: Any, mig: Any) -> Any:
        if when == "before":
            _die()
        result = original(deps, mig)
        if when == "after":
            _die()
        return result

    setattr(steps, f"step_{step}", crashing)  # the saga looks steps up by name on each run


if os.environ.get("TWINBILL_TEST_CRASH_AFTER"):
    _crash(os.environ["TWINBILL_TEST_CRASH_AFTER"], "after")
if os.environ.get("TWINBILL_TEST_CRASH_BEFORE"):
    _crash(os.environ["TWINBILL_TEST_CRASH_BEFORE"], "before")

if os.environ.get("TWINBILL_TEST_STALE_AFTER"):
    _stale_after = float(os.environ["TWINBILL_TEST_STALE_AFTER"])
    _build = runtime.saga_deps

    def _saga_deps(*args: Any, **kwargs: Any) -> Any:
        return _build(*args, **kwargs, stale_after=_stale_after)

    runtime.saga_deps = _saga_deps  # type: ignore[assignment]
