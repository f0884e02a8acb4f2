"""Thin tasks: take ids, call the domain, map transient failures to Celery retries."""

from __future__ import annotations

from dispatcher import engine as _engine  # noqa: F401 - imported before the pool forks: a first task starts warm
from dispatcher import runtime
from dispatcher.errors import TransientError
from dispatcher.queue import PROCESS_WEBHOOKS, RECONCILE, RELEASE_DUE, SEND_BATCH

from .app import app


@app.task(name=SEND_BATCH, bind=True, max_retries=None, acks_late=True)
def send_batch(self, batch_id: int) -> dict[str, int | float | str | None]:  # type: ignore[no-untyped-def]
    try:
        # Its last requests finish on a thread of this process while the next batch starts (warm shutdown waits
        # for them: workers.app).
        r = runtime.dispatcher().send_batch(batch_id, hand_off=True)
    except TransientError as exc:
        raise self.retry(exc=exc, countdown=min(60, 2 ** min(self.request.retries, 6)))
    return {"sent": r.sent, "failed": r.failed, "deferred": r.deferred, "skipped": r.skipped,
            "unknown": r.unknown, "given_back": r.given_back, "stopped": r.stopped, "finishing": r.handed_off}


@app.task(name=RELEASE_DUE, ignore_result=True)
def release_due() -> int:
    try:
        return runtime.dispatcher().release_due()
    except TransientError:
        return 0  # beat calls again in a moment


@app.task(name=RECONCILE, ignore_result=True)
def reconcile() -> dict[str, int]:
    try:
        return runtime.dispatcher().reconcile()
    except TransientError:
        return {}


@app.task(name=PROCESS_WEBHOOKS, ignore_result=True)
def process_webhooks() -> int:
    try:
        from dispatcher.webhooks import process_pending
    except ImportError:
        return 0
    try:
        return process_pending(runtime.store())
    except TransientError:
        return 0
