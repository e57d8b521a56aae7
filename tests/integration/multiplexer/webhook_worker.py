"""``python webhook_worker.py [worker options]``: a separate worker process for the webhook
integration tests, with ``TWINBILL_*`` in the environment.

Its root holds only the multiplexer's parts (these tests configure no billing systems);
the tasks reach it through their base class, exactly as under ``twinbill worker``.
"""

from __future__ import annotations

import sys

from core.queue import create_celery
from core.settings import load_settings
from multiplexer.bootstrap import build

if __name__ == "__main__":
    settings = load_settings()
    celery = create_celery(settings, ("multiplexer.tasks",))
    celery.root = build(settings, backends={}, celery=celery)
    celery.worker_main(["worker", *sys.argv[1:]])
