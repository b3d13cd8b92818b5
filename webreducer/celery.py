from __future__ import annotations

import gc
import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webreducer.settings")

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
