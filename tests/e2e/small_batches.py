"""`celery -A tests.e2e.small_batches worker`: the project's Celery app, with projector batches of
SMALL_BATCH events instead of 5,000.

The backlog tests need a projection that takes several batches (several commits to kill between,
to interleave, to hold inside one): with small batches a backlog of a few thousand events does
that, where the real size would need tens of thousands of events seeded through the event store
for every test. Nothing else about the worker changes.
"""
from celery.signals import worker_process_init

from celery_app import app  # noqa: F401 - what `celery -A` loads

SMALL_BATCH = 500
READY_LINE = "projector batches of"


@worker_process_init.connect
def use_small_batches(**kwargs) -> None:
    # In each pool process, after Django is set up (a replacement for a killed one included).
    from analytics import projection

    projection.project_next_batch.__kwdefaults__["batch_size"] = SMALL_BATCH
    print(f"{READY_LINE} {SMALL_BATCH} events", flush=True)
