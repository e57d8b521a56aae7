"""One scenario of bench/migration_throughput.py: a fresh sandbox, one cohort, the numbers.

Two worker shapes run the same Celery task code:

* ``embedded``: a worker thread pool inside this process (in-memory broker, SQLite, the
  process's own limiter): the ``twinbill demo`` shape;
* ``processes``: N ``twinbill worker`` processes (Redis broker, PostgreSQL, one Redis
  limiter shared by every process): the production shape. This process only enqueues.

Legacy is localstripe (``legacy="localstripe"``: the sandbox population's mix of
configurations, in localstripe's dialect, whose event stream cannot prove anything) or
the current-API Stripe double served over HTTP (``legacy="double"``: plain monthly
subscribers at the SDK's pinned API version, whose ``/v1/events`` the re-check reads).
Legacy calls are counted at the fault proxy in front of it (what the server saw,
retries and rejected requests included), by route.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: the other engineers' settings for bulk snapshot reads and the event-based re-check
BULK_ENV = {"TWINBILL_BULK_READS": "on", "TWINBILL_EVENT_RECHECK": "auto"}
#: the per-user path, explicitly (their defaults may be ``auto``)
PER_USER_ENV = {"TWINBILL_BULK_READS": "off", "TWINBILL_EVENT_RECHECK": "off"}


@dataclass
class Outcome:
    scenario: str
    path: str  # per-user | bulk
    shape: str  # embedded | N processes
    users: int
    seed_seconds: float
    seconds: float
    done: int
    deferred: int
    failed: int
    requests: int  # at the proxy: everything legacy received
    accepted: int  # at the proxy: requests within its budget (not answered 429)
    got_429: int
    got_500: int
    budget: float
    limiter_rate: float
    threads: int  # worker threads, every process together
    waited: float | None  # seconds threads spent waiting for the limiter (embedded only)
    failures: dict[str, int] = field(default_factory=dict)
    routes: dict[str, int] = field(default_factory=dict)
    #: (seconds into the migration, requests the proxy accepted so far), every poll
    timeline: list[tuple[float, int]] = field(default_factory=list)
    account: int = 0  # legacy customers in the account (the cohort is ``users`` of them)
    chunk: int = 0  # cohort members per prefetch chunk (0: the settings' default)

    @property
    def account_reads(self) -> float:
        """Whole-account reads, from the customer list's pages (no per-user read lists
        customers: it retrieves its own)."""
        pages = max(1, -(-self.account // 100))
        return self.routes.get("GET /v1/customers", 0) / pages

    def rates(self, parts: int = 10, over: float | None = None) -> list[float]:
        """Accepted legacy requests per second / B in each of ``parts`` equal spans of the
        run (or of its first ``over`` seconds): where the budget went unused (the read's
        start, the cohort's tail)."""
        if not self.timeline or not self.seconds:
            return []
        points = [*self.timeline, (self.seconds, self.accepted)]
        times = [t for t, _ in points]
        span = min(over or self.seconds, self.seconds) / parts

        def accepted_by(t: float) -> int:
            i = bisect.bisect_right(times, t + 1e-9) - 1
            return points[i][1] if i >= 0 else 0

        return [
            (accepted_by((i + 1) * span) - accepted_by(i * span)) / (span * self.budget)
            for i in range(parts)
        ]

    @property
    def users_per_second(self) -> float:
        return self.users / self.seconds if self.seconds else 0.0

    @property
    def calls_per_user(self) -> float:
        return self.requests / self.users if self.users else 0.0

    @property
    def achieved(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    @property
    def utilisation(self) -> float:
        """Of the server's budget B."""
        return self.achieved / self.budget

    @property
    def of_limiter(self) -> float:
        """Of the rate twinbill's limiter was given (TWINBILL_LEGACY_RATE_LIMIT)."""
        return self.achieved / self.limiter_rate

    @property
    def wait_share(self) -> float | None:
        """Share of thread time spent waiting for a legacy slot (embedded only)."""
        if self.waited is None or not self.seconds:
            return None
        return self.waited / (self.threads * self.seconds)

    def busiest_route(self) -> tuple[str, float]:
        """The legacy route with the most calls per user, and that number."""
        if not self.routes or not self.users:
            return "-", 0.0
        route, n = max(self.routes.items(), key=lambda kv: kv[1])
        return route, n / self.users

    def endpoint_bound_hours(self, users: int, endpoint_rate: float) -> float:
        """Stripe also limits each endpoint (25 req/s live, docs.stripe.com/rate-limits):
        the busiest route caps users/s at endpoint_rate / its calls per user."""
        _route, per_user = self.busiest_route()
        return users * per_user / endpoint_rate / 3600 if per_user else 0.0

    def projected_hours(self, users: int, rate: float) -> float:
        """600,000 users at Stripe's 100 req/s: users x calls/user / (rate x utilisation)."""
        util = self.utilisation or 1e-9
        return users * self.calls_per_user / (rate * util) / 3600


def known_bulk_settings() -> bool:
    from core.settings import Settings

    names = {k.removeprefix("TWINBILL_").lower() for k in BULK_ENV}
    return names <= set(Settings.model_fields)


@contextlib.contextmanager
def _env(extra: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _workers(n: int, threads: int, env: dict[str, str], logdir: Path) -> Iterator[None]:
    """``twinbill worker`` x n, started and stopped by this bench (their pids only)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TWINBILL_")}
    procs = []
    try:
        for i in range(n):
            log = (logdir / f"worker{i}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "admin.cli",
                        "worker",
                        f"--concurrency={threads}",
                        "--pool=threads",
                        "--loglevel=WARNING",
                    ],
                    cwd=ROOT,
                    env={**clean, "PYTHONPATH": str(ROOT), **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _wait_ready(app: Any, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=1.0) or []) >= n:
            return
    raise RuntimeError(f"{n} workers did not answer a ping within {timeout:.0f}s")


def run_scenario(
    name: str,
    *,
    path: str,
    users: int,
    budget: float,
    limiter_share: float,
    faults: dict[str, Any],
    workdir: Path,
    seed: int,
    threads: int,
    processes: int = 0,
    redis_url: str | None = None,
    postgres_url: str | None = None,
    legacy: str = "localstripe",
    account: int = 0,
    chunk: int = 0,
) -> Outcome:
    from sandbox.faultproxy import FaultProxy
    from sandbox.pgdb import scratch_database
    from sandbox.stack import Stack

    workdir.mkdir(parents=True, exist_ok=True)
    extra = BULK_ENV if path == "bulk" else PER_USER_ENV
    with (
        Stack(workdir / "sandbox") as ep,
        _legacy(legacy, ep, max(users, account), seed) as (legacy_url, legacy_env, seed_sec),
        (
            _ProxyProcess(legacy_url, seed)
            if os.environ.get("BENCH_PROXY_PROCESS")
            else FaultProxy(legacy_url, seed=seed)
        ) as proxy,
        _env(extra),
        scratch_database(postgres_url, "twinbill_bench")
        if processes
        else contextlib.nullcontext("") as pg,
    ):
        env = {
            **ep.env(),
            **legacy_env,
            "TWINBILL_LEGACY_API_BASE": proxy.url,
            "TWINBILL_DATABASE_URL": pg or f"sqlite:///{workdir / 'twinbill.db'}",
            "TWINBILL_REDIS_URL": redis_url if processes and redis_url else "",
            "TWINBILL_LEGACY_RATE_LIMIT": str(limiter_share * budget),
            "TWINBILL_NEW_RATE_LIMIT": "500",
            **({"TWINBILL_BULK_CHUNK": str(chunk)} if chunk else {}),
            **extra,
        }
        if processes:
            import redis

            redis.Redis.from_url(env["TWINBILL_REDIS_URL"]).flushdb()  # the bench's own db
        with _env(env):
            outcome = _migrate(
                name,
                path,
                env,
                proxy,
                users,
                budget,
                limiter_share,
                faults,
                seed_sec,
                threads,
                processes,
                workdir,
            )
            return dataclasses.replace(outcome, account=max(users, account), chunk=chunk)


class _ProxyProcess:
    """``sandbox.faultproxy`` in its own process (``BENCH_PROXY_PROCESS=1``): its arrival
    times are not delayed by the double's page serialisation in the bench's process."""

    def __init__(self, upstream: str, seed: int) -> None:
        import httpx

        cmd = [sys.executable, "-m", "sandbox.faultproxy", upstream, f"--seed={seed}"]
        self._proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        self.url = self._proc.stdout.readline().strip()
        self._http = httpx.Client(base_url=self.url, timeout=10)

    def configure(self, **faults: Any) -> None:
        self._http.post("/_proxy/config", json=faults).raise_for_status()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = self._http.get("/_proxy/stats").json()
        return out

    def reset_stats(self) -> None:
        self._http.post("/_proxy/reset").raise_for_status()

    def __enter__(self) -> _ProxyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()
        self._proc.terminate()
        self._proc.wait(timeout=10)


@contextlib.contextmanager
def _legacy(
    kind: str, ep: Any, users: int, seed: int
) -> Iterator[tuple[str, dict[str, str], float]]:
    """Seed ``users`` into the legacy system; yield its URL, its env and the seeding time."""
    if kind == "localstripe":
        from sandbox.legacy.launcher import make_client
        from sandbox.legacy.population import seed as seed_population

        t0 = time.perf_counter()
        seed_population(make_client(ep.legacy_url, ep.legacy_api_key), users, seed)
        yield ep.legacy_url, {}, time.perf_counter() - t0
        return
    # the current-API double lives in the test tree: it is a test double, not a sandbox
    from tests.stripe_current import configurations
    from tests.stripe_current.double import StripeDouble
    from tests.stripe_current.served import API_KEY, ServedDouble

    double = StripeDouble()
    t0 = time.perf_counter()
    for i in range(users):
        configurations.seed_plain_named(double, f"b{i:05d}")
    seconds = time.perf_counter() - t0
    with ServedDouble(double) as url:
        env = {"TWINBILL_LEGACY_BACKEND": "stripe", "TWINBILL_LEGACY_API_KEY": API_KEY}
        yield url, env, seconds


def _migrate(
    name: str,
    path: str,
    env: dict[str, str],
    proxy: Any,
    users: int,
    budget: float,
    limiter_share: float,
    faults: dict[str, Any],
    seed_seconds: float,
    threads: int,
    processes: int,
    workdir: Path,
) -> Outcome:
    from admin.bootstrap import bootstrap
    from core import dbschema
    from core.queue import embedded_worker
    from core.settings import load_settings
    from migration import cohort_progress, cohorts
    from multiplexer.inventory import sync_customers

    settings = load_settings()
    dbschema.upgrade(settings.database_url)
    ctx = bootstrap(settings)
    sync_customers(ctx.sessions, ctx.legacy.iter_customers(), actor="bench", cache=ctx.cache)
    with ctx.sessions() as session:  # the first ``users`` of the account
        everyone = sorted(c.user_id for c in cohorts.candidates(session))[:users]
    cohorts.create(ctx.sessions, name, everyone, actor="bench", halt_at_bp=10_000)
    limiter = ctx.limiters["legacy"]
    workers = (
        _workers(processes, threads, env, workdir)
        if processes
        else embedded_worker(ctx.celery, concurrency=threads)
    )
    with workers:
        if processes:
            _wait_ready(ctx.celery, processes)
        proxy.configure(rate_limit=budget, **faults)
        time.sleep(1.1)  # let the sync's requests leave the proxy's 1-s window
        proxy.reset_stats()
        waited_before = limiter.stats()["waited_seconds"]
        started = time.perf_counter()
        ctx.start_cohort(name, actor="bench")  # App.start_cohort: the bulk prefetch when on
        last = -1
        timeline: list[tuple[float, int]] = []
        while True:
            stats = proxy.stats()
            timeline.append(
                (time.perf_counter() - started, stats["requests"] - stats["injected_429"])
            )
            with ctx.sessions() as session:
                p = cohort_progress.progress(session, name)
            if p.settled:
                break
            finished = p.finished + p.by_status.get("deferred", 0)
            if finished // 50 != last:
                last = finished // 50
                print(f"  {name}/{path}: {finished}/{p.total} settled", file=sys.stderr, flush=True)
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        stats = proxy.stats()
        waited = None if processes else limiter.stats()["waited_seconds"] - waited_before
    ctx.close()
    return Outcome(
        scenario=name,
        path=path,
        shape=f"{processes} processes" if processes else "embedded",
        users=len(everyone),
        seed_seconds=seed_seconds,
        seconds=seconds,
        done=p.by_status.get("done", 0),
        deferred=p.by_status.get("deferred", 0),
        failed=p.by_status.get("failed", 0),
        requests=stats["requests"],
        accepted=stats["requests"] - stats["injected_429"],
        got_429=stats["injected_429"],
        got_500=stats["injected_500"],
        budget=budget,
        limiter_rate=limiter_share * budget,
        threads=threads * max(1, processes),
        waited=waited,
        failures=p.failures_by_kind,
        routes=stats["routes"],
        timeline=timeline,
    )
