"""The one composition root: built once, typed, handed to every task by its base class."""

from __future__ import annotations

import pytest

from admin.bootstrap import TASK_MODULES, App, beat_schedule, bootstrap
from core.errors import ConfigurationError
from core.queue import create_celery, embedded_worker
from core.settings import load_settings
from migration.steps import STEPS


def test_the_root_shares_one_of_each_dependency(admin):
    root: App = admin.ctx
    assert root.celery.root is root
    assert root.saga.sessions is root.sessions and root.saga.cache is root.cache
    assert root.saga.limiters is root.limiters
    assert root.saga.legacy is root.legacy and root.saga.new is root.new
    assert root.saga.steps is STEPS
    assert root.celery.conf.imports == TASK_MODULES
    assert root.celery.conf.beat_schedule == beat_schedule(root.settings)


def test_two_roots_share_nothing(tmp_path):
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'a.db'}",
        legacy_api_key="sk_test_x",
        new_base_url="http://127.0.0.1:9",
        new_api_token="t",
    )
    a, b = bootstrap(settings), bootstrap(settings)
    assert a.limiters["legacy"] is not b.limiters["legacy"]  # no process-global cache
    assert a.celery is not b.celery and a.engine is not b.engine


def test_the_broker_is_the_configured_redis(tmp_path):
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'a.db'}",
        redis_url="redis://127.0.0.1:6379/5",
        legacy_api_key="sk_test_x",
        new_base_url="http://127.0.0.1:9",
        new_api_token="t",
    )
    root = bootstrap(settings)
    assert root.celery.conf.broker_url == "redis://127.0.0.1:6379/5"
    assert not root.celery.embedded


def test_a_task_on_an_app_without_a_root_fails_loudly(tmp_path):
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'a.db'}")
    app = create_celery(settings, ("admin.tasks",))
    with embedded_worker(app, concurrency=1):
        app.loader.import_default_modules()
        task = app.tasks["twinbill.purge_admin_sessions"]
        with pytest.raises(ConfigurationError, match="without a twinbill root"):
            task.root  # noqa: B018 - the property is the check


def test_tasks_reach_the_root_through_their_base_class(admin):
    from admin.tasks import purge_admin_sessions

    root = admin.ctx
    task = root.celery.tasks[purge_admin_sessions.name]
    assert task.root is root
    assert task.run() == 0  # purged nothing, from the root's own database


def test_housekeeping_and_resumed_migrations_skip_the_cohort_queue(tmp_path):
    """A cohort of thousands queued in `celery` must not hold the reaper (nor the
    migrations it resumes, whose users are locked `migrating`) behind all of them."""
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'a.db'}",
        redis_url="redis://127.0.0.1:6379/5",
        legacy_api_key="sk_test_x",
        new_base_url="http://127.0.0.1:9",
        new_api_token="t",
    )
    root = bootstrap(settings)
    router = root.celery.amqp.router
    for task in ("twinbill.reap", "twinbill.sweep_outbox", "twinbill.purge_admin_sessions"):
        assert router.route({}, task, (), {})["queue"].name == "twinbill.control", task
    assert router.route({}, "twinbill.migrate", (), {})["queue"].name == "celery"
    sent: list[tuple] = []
    root.celery.send_task = lambda name, args, **kw: sent.append((name, args, kw))
    root.enqueue_resumed("mig_1")
    assert sent == [("twinbill.migrate", ("mig_1",), {"queue": "twinbill.control"})]
