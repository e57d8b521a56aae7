"""``python crash_worker.py [worker options]``: the production worker (the composition root
``admin.bootstrap.bootstrap`` and its Celery app) plus test-only hooks from the environment:

* ``TWINBILL_TEST_CRASH_AFTER=<step>``: SIGKILL this process right after that step's
  ``run`` returns (its work done, its step record still open);
* ``TWINBILL_TEST_CRASH_BEFORE=<step>``: SIGKILL it just before that step runs;
* ``TWINBILL_TEST_STALE_AFTER=<seconds>``: the lease age after which this worker may take
  over a migration whose worker died (production: TWINBILL_LEASE_SECONDS).

The hooks go through the root (a swapped entry of the saga's step table), never by
patching modules. SIGKILL, not an exception: nothing in the process gets to clean up, as
when the kernel's OOM killer or a node failure takes a worker.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from typing import Any

from admin.bootstrap import bootstrap
from core.observability import configure_logging
from core.settings import load_settings
from migration import rollback
from migration.steps import STEPS

#: both directions' steps (the reverse saga's are named rb_*)
ALL_STEPS = {**STEPS, **rollback.STEPS}


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _crashing(step: str, when: str) -> Any:
    original = ALL_STEPS[step].run

    def crashing(deps: Any, mig: Any) -> Any:
        if when == "before":
            _die()
        result = original(deps, mig)
        if when == "after":
            _die()
        return result

    return dataclasses.replace(ALL_STEPS[step], run=crashing)


def saga_overrides() -> dict[str, Any]:
    table = dict(ALL_STEPS)
    for var, when in (
        ("TWINBILL_TEST_CRASH_AFTER", "after"),
        ("TWINBILL_TEST_CRASH_BEFORE", "before"),
    ):
        step = os.environ.get(var)
        if step:
            table[step] = _crashing(step, when)
    overrides: dict[str, Any] = {"steps": table}
    if os.environ.get("TWINBILL_TEST_STALE_AFTER"):
        overrides["stale_after"] = float(os.environ["TWINBILL_TEST_STALE_AFTER"])
    return overrides


if __name__ == "__main__":
    configure_logging(level="INFO")
    root = bootstrap(load_settings(), saga=saga_overrides())
    root.celery.worker_main(["worker", *sys.argv[1:]])
