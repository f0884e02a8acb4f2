"""`dispatcher status`: per campaign counts, rates, ETA, failed batches and effective provider rates."""

from __future__ import annotations

from datetime import timedelta

import redis
from rich.console import Group
from rich.table import Table

from .campaign import campaign_from_stored
from .errors import TransientError
from .models import CampaignState, utcnow
from .ratelimit import Rate, RateLimiter, limiter_key
from .settings import get_settings
from .store import Store

WINDOW = 10.0


def render_status(store: Store, name: str | None) -> Group:
    now = utcnow()
    rows = [store.campaign(name)] if name else [c for c in store.campaigns() if c.state not in (
        CampaignState.COMPLETED.value, CampaignState.CANCELLED.value)] or store.campaigns()[-5:]
    limiter = RateLimiter(redis.Redis.from_url(get_settings().redis_url, socket_connect_timeout=1))
    parts: list[Table] = []
    t = Table("campaign", "state", "queued", "in flight", "sent", "delivered", "failed", "deferred", "skipped",
              "unknown", "rate now/s", "avg/s", "ETA", "provider rate", title=f"campaigns at {now:%H:%M:%S} UTC")
    failed_batches = Table("campaign", "batch", "failed", "unknown", title="batches with failed or unknown messages")
    any_failed = False
    for c in rows:
        cid = int(c.id)  # type: ignore[arg-type]
        k = store.counts(cid)
        rate_now = store.recent_attempts(cid, now - timedelta(seconds=WINDOW)) / WINDOW
        done = k["sent"] + k["delivered"] + k["failed"] + k["unknown"]
        elapsed = (now - c.started_at).total_seconds() if c.started_at else 0
        avg = done / elapsed if elapsed > 0 else 0.0
        prov = "-"
        limit_ps: float | None = None
        try:
            spec = campaign_from_stored(c.spec, c.source_path).spec
            if spec.provider.rate_limit:
                r = Rate.parse(spec.provider.rate_limit, burst=spec.provider.burst)
                eff = limiter.effective_rate(limiter_key(c.provider, spec.provider.rate_scope), r)
                limit_ps = eff
                prov = f"{eff:.1f}/s of {r.per_second:g}/s"
        except (TransientError, ValueError, KeyError):
            prov = "?"
        remaining = k["queued"] + k["sending"]
        speed = rate_now or avg
        if limit_ps:
            speed = min(speed, limit_ps) if speed else limit_ps
        eta = "-"
        if remaining and speed:
            eta = _dur(remaining / speed)
        nd = store.next_deferred(cid)
        if k["deferred"] and nd:
            eta += f" (+{k['deferred']} deferred, next {nd:%H:%M} UTC)"
        state = c.state + (f": {c.state_reason}" if c.state_reason and c.state != "running" else "")
        t.add_row(c.name, state, str(k["queued"]), str(k["sending"]), str(k["sent"]), str(k["delivered"]),
                  str(k["failed"]), str(k["deferred"]), str(k["skipped"] + k["rejected"]), str(k["unknown"]),
                  f"{rate_now:.1f}", f"{avg:.1f}", eta, prov)
        for b in store.batch_summary(cid)[:20]:
            any_failed = True
            failed_batches.add_row(c.name, str(b["batch"]), str(b["failed"]), str(b["unknown"]))
    parts.append(t)
    if any_failed:
        parts.append(failed_batches)
    return Group(*parts)


def _dur(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
