"""The Celery app: `celery -A workers.app worker` / `beat` / `flower`. Configuration lives in dispatcher.queue."""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

from dispatcher.queue import celery_config
from dispatcher.settings import get_settings

app = Celery("dispatcher")
app.conf.update(celery_config(get_settings()))
app.conf.include = ["workers.tasks"]


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    # Pool processes are forked from the parent: never reuse its sockets. Then build this process's dispatcher
    # (engine, broker producer, limiter: no connection opened yet), so the first task does not pay for it.
    from dispatcher import runtime
    from dispatcher.store import make_engine

    make_engine.cache_clear()
    try:
        runtime.dispatcher()
    except Exception as exc:  # noqa: BLE001 - the first task builds it again and reports what is wrong
        logging.getLogger(__name__).warning("dispatcher not prepared at process start (%s)", type(exc).__name__)


@worker_process_shutdown.connect
@worker_shutdown.connect
def _finish_handed_off(**_: object) -> None:
    # A batch task returns while its last requests are still out (send_batch's hand_off): a warm shutdown waits
    # for them to be recorded, so that stopping a worker leaves nothing `sending`.
    from dispatcher import runtime

    runtime.finish_handed_off()


logging.getLogger("httpx").setLevel(logging.WARNING)
