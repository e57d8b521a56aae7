"""Watch a cohort to the end (``cohort run --wait``, ``resume``, ``retry-failed``, the demo).

At a terminal: a rich progress bar. Anywhere else (a pipe, a file, a Kubernetes
Job log): one plain line every ``every_users`` finished users or ``every_seconds``
seconds, whichever comes first, with counts, rate and ETA, and a last line at
the end — a log shows progress while it happens, not only when it is over.

The rate counts only users finished *while watching* (a resumed cohort's earlier
users are not "fast"), and is shown once it means something: at least two users
and one second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.orm import Session, sessionmaker

from migration import cohort_progress

MIN_RATE_USERS, MIN_RATE_SECONDS = 2, 1.0


@dataclass
class Rate:
    """Users finished per second since the watch began, and the time left at that pace."""

    baseline: int
    started: float

    def of(self, finished: int, total: int, now: float) -> tuple[float | None, float | None]:
        done = finished - self.baseline
        elapsed = now - self.started
        if done < MIN_RATE_USERS or elapsed < MIN_RATE_SECONDS:
            return None, None
        rate = done / elapsed
        return rate, max(total - finished, 0) / rate


def _finished(p: cohort_progress.Progress) -> int:
    return p.finished + p.by_status.get("deferred", 0)


def describe(p: cohort_progress.Progress, rate: float | None, eta: float | None) -> str:
    s = p.by_status
    speed = f"{rate:.2f} users/s" if rate is not None else "rate n/a"
    left = f"ETA {_duration(eta)}" if eta is not None else "ETA n/a"
    return (
        f"done {s.get('done', 0)} failed {s.get('failed', 0)} deferred {s.get('deferred', 0)} "
        f"running {s.get('running', 0)} · {speed} · {left}"
    )


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _waiting_text(waiting: cohort_progress.Waiting) -> str:
    """Say what the watcher waits for (and what it will not wait for)."""
    text = ""
    if waiting.movable:
        sample = ", ".join(waiting.movable[:3]) + ("…" if len(waiting.movable) > 3 else "")
        text += f" · waiting on {len(waiting.movable)}: {sample}"
    if waiting.stranded:
        text += f" · {len(waiting.stranded)} with no task (not waited for)"
    return text


def _over(p: cohort_progress.Progress, waiting: cohort_progress.Waiting) -> bool:
    halted = p.status in ("halted", "paused") and not p.by_status.get("running")
    return not waiting.movable or halted


def watch_cohort(
    sessions: sessionmaker[Session],
    name: str,
    console: Console,
    *,
    poll: float = 0.25,
    every_users: int = 50,
    every_seconds: float = 10.0,
) -> cohort_progress.Progress:
    """Poll until nothing is left to run. A halted or paused cohort starts nobody new, but
    sagas already running finish: stopping to watch before they do would misreport them."""
    if console.is_terminal:
        _watch_bar(sessions, name, console, poll)
    else:
        _watch_lines(sessions, name, console, poll, every_users, every_seconds)
    cohort_progress.finish_if_settled(sessions, name)
    with sessions() as session:
        return cohort_progress.progress(session, name)


def _read(
    sessions: sessionmaker[Session], name: str
) -> tuple[cohort_progress.Progress, cohort_progress.Waiting]:
    with sessions() as session:
        return cohort_progress.progress(session, name), cohort_progress.waiting_on(session, name)


def _watch_bar(sessions: sessionmaker[Session], name: str, console: Console, poll: float) -> None:
    columns = (
        TextColumn(f"cohort [bold]{name:<8}[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    p, waiting = _read(sessions, name)
    rate = Rate(_finished(p), time.monotonic())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(name, total=p.total, detail="")
        while True:
            finished = _finished(p)
            detail = describe(p, *rate.of(finished, p.total, time.monotonic()))
            bar.update(task, completed=finished, detail=detail + _waiting_text(waiting))
            if _over(p, waiting):
                return
            time.sleep(poll)
            p, waiting = _read(sessions, name)


def _watch_lines(
    sessions: sessionmaker[Session],
    name: str,
    console: Console,
    poll: float,
    every_users: int,
    every_seconds: float,
) -> None:
    p, waiting = _read(sessions, name)
    rate = Rate(_finished(p), time.monotonic())
    last_count, last_time = None, 0.0
    while True:
        now = time.monotonic()
        finished = _finished(p)
        over = _over(p, waiting)
        due = (
            last_count is None
            or finished - last_count >= every_users
            or (now - last_time >= every_seconds and finished != last_count)
            or now - last_time >= 6 * every_seconds  # still alive, even if nothing moved
        )
        if due or over:
            detail = describe(p, *rate.of(finished, p.total, now))
            console.print(
                f"cohort {name}: {finished}/{p.total} {detail}{_waiting_text(waiting)}",
                highlight=False,
                soft_wrap=True,
            )
            last_count, last_time = finished, now
        if over:
            return
        time.sleep(poll)
        p, waiting = _read(sessions, name)
