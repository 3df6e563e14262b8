"""The Celery worker keeps Django's connection pool between tasks and hands each task's connection back to it."""
from types import SimpleNamespace

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection, connections

from celery_app import app, return_connections

pytestmark = pytest.mark.django_db(transaction=True)

TASK = SimpleNamespace(request=SimpleNamespace(is_eager=False))
EAGER_TASK = SimpleNamespace(request=SimpleNamespace(is_eager=True))


def test_it_keeps_the_connection_pool_open_around_each_task_in_a_prefork_worker(monkeypatch):
    # Celery's Django fixup, as a prefork worker with Django's pool runs it.
    fixup = DjangoWorkerFixup(app)
    fixup.worker = SimpleNamespace(pool_cls="celery.concurrency.prefork:TaskPool")
    fixup._settings = SimpleNamespace(DATABASES={"default": {"OPTIONS": {"pool": True}}})
    closed_pools = []
    monkeypatch.setattr(type(connections["default"]), "close_pool", lambda self: closed_pools.append(self.alias))
    connection.ensure_connection()
    for _ in range(10):
        fixup.on_task_prerun(sender=TASK)
        fixup.on_task_postrun(sender=TASK)
    # Closing the pool means a new PostgreSQL connection for the next task's first query.
    assert closed_pools == []


def test_it_hands_each_tasks_connection_back_around_the_task():
    connection.ensure_connection()
    return_connections(sender=TASK)
    assert connection.connection is None  # back to the pool (closed, without one)


def test_it_leaves_an_eager_tasks_connection_to_the_request_it_runs_in():
    connection.ensure_connection()
    return_connections(sender=EAGER_TASK)
    assert connection.connection is not None


def test_it_freezes_what_a_pool_process_imported_out_of_the_garbage_collector(settings):
    import gc

    from celery_app import start_projector_fast_lane

    settings.PROJECTOR_FAST_LANE = False  # no listener thread in the test process
    gc.unfreeze()
    try:
        start_projector_fast_lane()
        assert gc.get_freeze_count() > 50_000
    finally:
        gc.unfreeze()
