"""Logging and metrics, configured once per process by the composition root.

Logs go through structlog (JSON lines in production, readable in a terminal)
with a redaction processor: email addresses are masked (``a***@example.test``)
and anything shaped like a card number keeps only its last four digits — the
stdlib loggers of every module and library pass through it too, so a careless
``log.warning("... %s", customer)`` cannot leak a full email or a PAN.

Metrics are prometheus-client collectors in each process's default registry.
Every process serves its own: ``twinbill serve`` at ``/metrics``, each
``twinbill worker`` / ``twinbill beat`` on ``--metrics-port`` (a per-process
endpoint, not prometheus-client's multiprocess mode: workers run a thread pool,
so one process is one worker and one scrape target — Prometheus adds the
``instance`` label and sums across them; multiprocess mode would need a shared,
wiped-on-start directory and loses gauges' meaning across processes). Gauges read
from the database (outbox depth, cohort progress, reconciliation diff rate) are
collected at scrape time by ``DatabaseCollector`` in the web process only, so they
are not counted once per worker.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram

EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
PAN = re.compile(r"\b(?:\d[ -]?){9,15}(\d{4})\b")

MIGRATIONS = Counter(
    "twinbill_migrations_total",
    "Migrations that ended (or paused), by outcome and the last step they finished",
    ["outcome", "step"],
)
SAGA_STEPS = Histogram(
    "twinbill_saga_step_duration_seconds",
    "Saga step duration, by step and outcome",
    ["step", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BACKEND_REQUESTS = Counter(
    "twinbill_backend_requests_total",
    "Requests to a billing system (one per rate-limiter slot), by system",
    ["system"],
)
BACKEND_RATE_LIMITED = Counter(
    "twinbill_backend_rate_limited_total",
    "429 answers from a billing system (each slows the shared budget), by system",
    ["system"],
)
LIMITER_RATE = Gauge(
    "twinbill_rate_limit_requests_per_second",
    "The shared budget's current rate (below the configured one after 429s), by system",
    ["system"],
)
WEBHOOKS = Counter(
    "twinbill_webhook_events_total",
    "Inbound webhook events by disposition",
    ["provider", "disposition"],
)

SHADOW_READS = Counter(
    "twinbill_shadow_reads_total",
    "Application reads of shadowed users compared in the background with the new system, by "
    "outcome (clean, mismatch, error, timeout, dropped: no free slot, skipped: not shadowed)",
    ["outcome"],
)


def redact(text: str) -> str:
    """Mask emails and card-number-shaped digit runs in free text."""
    text = EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return PAN.sub(lambda m: f"****{m.group(1)}", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(v) for v in value)
    return value


def redact_processor(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: _redact_value(v) for k, v in event.items()}


def configure_logging(
    *, json_logs: bool | None = None, level: int | str | None = None, stream: Any = None
) -> None:
    """Route stdlib logging and structlog through one redacting pipeline.

    Level: ``level``, else ``TWINBILL_LOG_LEVEL``, else WARNING (a CLI run shows its own
    progress; workers pass INFO)."""
    level = level or os.environ.get("TWINBILL_LOG_LEVEL", "WARNING")
    if json_logs is None:
        json_logs = not sys.stderr.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.format_exc_info,
        redact_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    logging.captureWarnings(True)  # Python warnings are log events too, not stray lines
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for chatty in ("httpx", "httpcore", "urllib3", "stripe"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
