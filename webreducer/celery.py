from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webreducer.settings")

app = Celery("webreducer")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


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
