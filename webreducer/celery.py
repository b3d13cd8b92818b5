from __future__ import annotations

import gc
import os
import sys
from typing import Any

from celery import Celery
from celery.signals import task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webreducer.settings")


def is_worker_command(argv: list[str]) -> bool:
    """`celery … worker …` (or `python -m celery … worker …`)."""
    program = argv[0] if argv else ""
    if os.path.basename(program) == "__main__.py":
        program = os.path.dirname(program)
    return os.path.basename(program) == "celery" and "worker" in argv[1:]


# A worker process runs one task at a time and keeps its one connection across tasks
# (CELERY_DB_REUSE_MAX, below): web processes' connection pool is not for it. Decided here,
# before the settings are read; WR_DB_POOL_MAX_SIZE set explicitly still wins.
if is_worker_command(sys.argv):
    os.environ.setdefault("WR_DB_POOL_MAX_SIZE", "0")

app = Celery("webreducer")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# A batch of 1,000 requests allocates hundreds of thousands of short-lived objects; with the
# default threshold (700) the collector runs hundreds of times per batch, about a tenth of the
# worker's CPU (bench/pipeline_bench.py). Requests do not make reference cycles that need
# collecting quickly, so collect young objects less often.
GC_THRESHOLD = (50_000, 20, 20)


def tune_gc() -> None:
    """Move what start-up allocated out of the collector's sight, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


@worker_process_init.connect
def _tune_gc(**kwargs: object) -> None:
    tune_gc()


@task_prerun.connect
def _check_connections(task: Any, **kwargs: object) -> None:
    # Connections outlive tasks (settings.CELERY_DB_REUSE_MAX): like Django before a request,
    # close the ones that errored or are past CONN_MAX_AGE, and health-check the rest (a task
    # interrupted mid-query, e.g. by a time limit, can leave one unusable). Not for a task run
    # eagerly: that one runs inside its caller, perhaps inside its transaction.
    from django.db import close_old_connections

    if not getattr(task.request, "is_eager", False):
        close_old_connections()


@worker_process_init.connect
def _start_sandbox(**kwargs: object) -> None:
    # Each pool process gets its own fork server; starting it now keeps its ~0.2 s start-up off
    # the first task. A process without the isolation layers logs why here, early.
    import logging

    import sandbox

    try:
        sandbox.warmup()
    except Exception:
        logging.getLogger(__name__).exception("sandbox unavailable in this worker process")
