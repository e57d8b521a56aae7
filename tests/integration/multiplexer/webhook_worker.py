"""Celery app for a separate worker process in the webhook integration tests.

``celery -A webhook_worker worker`` with ``TWINBILL_*`` in the environment and no
context bound: the tasks build theirs from the environment, as under ``admin.worker``.
"""

from __future__ import annotations

from core.queue import create_celery
from core.settings import load_settings

app = create_celery(load_settings(), ("multiplexer.tasks",))
