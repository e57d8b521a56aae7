"""Shadow reads (the Scientist pattern): the application gets the legacy answer, unchanged;
the new system's answer to the same read is fetched and compared in the background.

Only users in a shadow rehearsal (``twinbill cohort shadow``) are compared: they live on
legacy and have a pending shadow import in the new system. Whether a user is shadowed,
how two answers are compared and where a mismatch is recorded are the migration
engine's business; this layer only knows the ``ShadowReads`` protocol, implemented in
``migration.shadow_reads`` and wired in the composition root.

The application's call never waits and never fails because of it:

* ``observe`` only tries to take one of ``max_in_flight`` slots (non-blocking) and hands
  the work to a bounded pool; no slot free → the comparison is *dropped* (counted).
* the candidate call runs in its own pool and is awaited at most ``timeout`` seconds;
  a slower one is counted and recorded as ``timeout``. A slot is given back only when
  the candidate call really ends, so a hung new system can hold at most
  ``max_in_flight`` threads and every further comparison is dropped, never queued.
* every error of the candidate, the comparison or the recording is caught, counted and
  logged; none reaches the application.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

from core.observability import SHADOW_READS

log = logging.getLogger(__name__)

#: outcomes, each counted in ``stats()``
DROPPED, CLEAN, MISMATCH, ERROR, TIMEOUT, SKIPPED = (
    "dropped",
    "clean",
    "mismatch",
    "error",
    "timeout",
    "skipped",
)


class ShadowReads(Protocol):
    """What the background comparison needs from the layers above (wired in the root)."""

    def shadowed(self, user_id: str) -> bool:
        """Is the user in an active shadow rehearsal (with a shadow import to read)?"""
        ...

    def compare(self, op: str, user_id: str, legacy: Any, new: Any) -> list[dict[str, Any]]:
        """The differences between the two answers (JSON-ready dicts naming each field)."""
        ...

    def record(
        self, user_id: str, op: str, outcome: str, differences: list[dict[str, Any]]
    ) -> None:
        """Keep the comparison's outcome for the shadow report."""
        ...


class Scientist:
    """Runs read experiments for shadowed users; one per process (built by the root)."""

    def __init__(self, hooks: ShadowReads, *, timeout: float = 2.0, max_in_flight: int = 4) -> None:
        self._hooks = hooks
        self._timeout = timeout
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._jobs = ThreadPoolExecutor(max_in_flight, thread_name_prefix="shadow-compare")
        self._calls = ThreadPoolExecutor(max_in_flight, thread_name_prefix="shadow-read")
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._pending: set[Future[None]] = set()
        self._idle = threading.Condition(self._lock)

    # -- the application's side: never blocks ----------------------------------------------
    def observe(self, user_id: str, op: str, control: Any, candidate: Callable[[], Any]) -> None:
        """Compare ``candidate()`` with the ``control`` answer the app already has, later."""
        try:
            if not self._slots.acquire(blocking=False):
                self._count(DROPPED)
                return
            try:
                job = self._jobs.submit(self._experiment, user_id, op, control, candidate)
            except RuntimeError:  # pool shut down (process ending)
                self._slots.release()
                self._count(DROPPED)
                return
            with self._lock:
                self._pending.add(job)
            job.add_done_callback(self._job_done)
        except Exception:  # noqa: BLE001 - nothing here may reach the application
            log.exception("shadow read of %s for %s could not be scheduled", op, user_id)
            self._count(ERROR)

    # -- the background side -----------------------------------------------------------------
    def _experiment(
        self, user_id: str, op: str, control: Any, candidate: Callable[[], Any]
    ) -> None:
        slot_handed_over = False
        try:
            if not self._hooks.shadowed(user_id):
                self._count(SKIPPED)
                return
            call = self._calls.submit(candidate)
            call.add_done_callback(lambda _f: self._slots.release())
            slot_handed_over = True
            try:
                answer = call.result(timeout=self._timeout)
            except FutureTimeout:
                self._finish(user_id, op, TIMEOUT, [{"error": f"no answer in {self._timeout}s"}])
                return
            except Exception as exc:  # noqa: BLE001 - the new system failed: counted, recorded
                self._finish(user_id, op, ERROR, [{"error": f"{type(exc).__name__}: {exc}"}])
                return
            differences = self._hooks.compare(op, user_id, control, answer)
            self._finish(user_id, op, MISMATCH if differences else CLEAN, differences)
        except Exception:  # noqa: BLE001
            log.exception("shadow read of %s for %s failed", op, user_id)
            self._count(ERROR)
        finally:
            if not slot_handed_over:
                self._slots.release()

    def _finish(self, user_id: str, op: str, outcome: str, diffs: list[dict[str, Any]]) -> None:
        self._count(outcome)
        if outcome == MISMATCH:
            log.warning(
                "shadow read %s of %s: new differs (%d differences)", op, user_id, len(diffs)
            )
        self._hooks.record(user_id, op, outcome, diffs)

    def _count(self, outcome: str) -> None:
        with self._lock:
            self._counts[outcome] += 1
        SHADOW_READS.labels(outcome).inc()

    def _job_done(self, job: Future[None]) -> None:
        with self._lock:
            self._pending.discard(job)
            self._idle.notify_all()

    # -- for operators and tests ------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                **{k: 0 for k in (DROPPED, CLEAN, MISMATCH, ERROR, TIMEOUT, SKIPPED)},
                **self._counts,
                "in_flight": len(self._pending),
            }

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every comparison scheduled so far has finished (its candidate may still
        hang past its timeout); False if ``timeout`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def close(self) -> None:
        self._jobs.shutdown(wait=False, cancel_futures=True)
        self._calls.shutdown(wait=False, cancel_futures=True)
