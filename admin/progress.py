"""Watch a cohort to the end with a rich progress bar (``cohort run --wait`` and the demo)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.orm import Session, sessionmaker

from migration import cohorts


def _waiting_text(waiting: cohorts.Waiting) -> str:
    """Say what the watcher waits for (and what it will not wait for)."""
    text = ""
    if waiting.movable:
        sample = ", ".join(waiting.movable[:3]) + ("…" if len(waiting.movable) > 3 else "")
        text += f" · waiting on {len(waiting.movable)}: {sample}"
    if waiting.stranded:
        text += f" · {len(waiting.stranded)} with no task (not waited for)"
    return text


def watch_cohort(
    sessions: sessionmaker[Session], name: str, console: Console, *, poll: float = 0.25
) -> cohorts.Progress:
    """Poll until nothing is left to run. A halted or paused cohort starts nobody new, but
    sagas already running finish: stopping to watch before they do would misreport them."""
    started = time.monotonic()
    columns = (
        TextColumn(f"cohort [bold]{name:<8}[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = None
        while True:
            with sessions() as session:
                p = cohorts.progress(session, name)
            if task is None:
                task = bar.add_task(name, total=p.total, detail="")
            with sessions() as session:
                waiting = cohorts.waiting_on(session, name)
            finished = p.finished + p.by_status.get("deferred", 0)
            rate = finished / max(time.monotonic() - started, 1e-6)
            bar.update(
                task,
                completed=finished,
                detail=(
                    f"done {p.by_status.get('done', 0)} failed {p.by_status.get('failed', 0)} "
                    f"deferred {p.by_status.get('deferred', 0)} · {rate:.2f} users/s"
                    + _waiting_text(waiting)
                ),
            )
            if not waiting.movable or (
                p.status in ("halted", "paused") and not p.by_status.get("running")
            ):
                break
            time.sleep(poll)
    cohorts.finish_if_settled(sessions, name)
    with sessions() as session:
        return cohorts.progress(session, name)
