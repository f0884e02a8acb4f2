"""`dispatcher plan`: the dry run. Every recipient rendered and decided; nothing sent or stored."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from .campaign import load_campaign
from .loader import plan_rows
from .models import utcnow
from .phones import mask
from .ratelimit import Rate
from .store import Store

PLAN_COLUMNS = ["line", "phone", "decision", "reason", "not_before_utc", "not_before_local", "encoding", "segments", "text"]


def run_plan(campaign_file: Path, store: Store, *, output: Path | None, samples: int, console: Console,
             now: datetime | None = None) -> dict[str, Any]:
    c = load_campaign(campaign_file)
    now = now or utcnow()
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    seen: dict[str, int] = {}
    segments = 0
    ucs2 = 0
    writer = None
    fh = None
    if output:
        fh = open(output, "w", newline="", encoding="utf-8")
        writer = csv.writer(fh)
        writer.writerow(PLAN_COLUMNS)
    try:
        for chunk in plan_rows(c, store, now=now):
            for p in chunk:
                if p.values is not None and p.values["phone"] in seen:
                    p.values, p.reason, p.decision = None, f"duplicate of line {seen[p.phone or '']}", None
                if p.values is None:
                    decision, reason, nb = "rejected", p.reason or "", None
                else:
                    seen[p.values["phone"]] = p.line
                    d = p.decision
                    assert d is not None
                    decision, reason, nb = d.action, d.reason or "", d.not_before
                    if d.action in ("send", "defer"):
                        segments += p.values["segments"]
                        ucs2 += p.values["encoding"] == "UCS-2"
                counts[decision] += 1
                if reason:
                    reasons[f"{decision}: {reason.split(' until ')[0] if decision == 'defer' else reason}"] += 1
                local = ""
                if nb is not None and p.values is not None and p.zones:
                    local = nb.astimezone(ZoneInfo(p.zones[0])).isoformat()
                if len(examples[decision]) < samples:
                    who = mask(p.values["phone"]) if p.values else "(as written)"
                    examples[decision].append(f"line {p.line} {who}: {reason or (p.values or {}).get('body', '')[:60]}"
                                              + (f" (until {nb:%Y-%m-%d %H:%M} UTC, {local[11:16]} local)" if nb else ""))
                if writer:
                    v = p.values or {}
                    writer.writerow([p.line, v.get("phone", p.phone or ""), decision, reason,
                                     nb.isoformat() if nb else "", local, v.get("encoding", ""), v.get("segments", ""),
                                     v.get("body", "")])
    finally:
        if fh:
            fh.close()

    t = Table("decision", "recipients", "samples", title=f"plan for {c.name} ({c.spec.provider.name})")
    labels = {"send": "would send now", "defer": "deferred (quiet hours)", "skip": "skipped", "hold": "held (no time zone)",
              "rejected": "rejected rows"}
    for k in ("send", "defer", "skip", "hold", "rejected"):
        if counts[k]:
            t.add_row(labels[k], str(counts[k]), "\n".join(examples[k]))
    console.print(t)
    if reasons:
        rt = Table("why", "count")
        for k, v in reasons.most_common(20):
            rt.add_row(k, str(v))
        console.print(rt)
    cost = f"{segments * c.spec.cost_per_segment:.2f}" if c.spec.cost_per_segment is not None else "unknown (set cost_per_segment)"
    duration = "no rate limit set"
    if c.spec.provider.rate_limit:
        r = Rate.parse(c.spec.provider.rate_limit)
        secs = segments / r.per_second if r.per_second else 0
        duration = f"about {secs / 60:.1f} min at {c.spec.provider.rate_limit} (segments)"
    console.print(f"segments to send: {segments} ({ucs2} UCS-2 messages); estimated cost: {cost}; duration: {duration}")
    if output:
        console.print(f"wrote {output}")
    return {"counts": dict(counts), "reasons": dict(reasons), "segments": segments}
