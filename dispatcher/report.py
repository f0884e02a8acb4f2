"""Campaign reports: per status, per reason, per provider code, segments and cost; per-recipient rows."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from typing import Any, TextIO

from .models import Campaign
from .store import Store


def build(store: Store, campaign: Campaign, *, with_attempts: bool = True) -> dict[str, Any]:
    cid = int(campaign.id)  # type: ignore[arg-type]
    attempts = store.attempts_by_message(cid) if with_attempts else {}
    messages: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    segments = 0
    cost = 0.0
    for m in store.messages(cid):
        counts[m["status"]] += 1
        if m["reason"]:
            reasons[_reason_key(m["reason"])] += 1
        if m["provider_code"]:
            codes[m["provider_code"]] += 1
        if m["status"] in ("sent", "delivered"):
            segments += m["segments"]
        cost += m["cost"] or 0.0
        messages.append({
            "line": m["line"], "phone": m["phone"], "status": m["status"], "reason": m["reason"],
            "provider_message_id": m["provider_message_id"], "provider_code": m["provider_code"],
            "encoding": m["encoding"], "segments": m["segments"], "cost": m["cost"],
            "not_before": m["not_before"].isoformat() if m["not_before"] else None,
            "attempts": [_attempt(a) for a in attempts.get(m["id"], [])] if with_attempts else m["attempts"],
        })
    for r in store.rejected(cid):
        counts["rejected"] += 1
        reasons[_reason_key(r["reason"])] += 1
        messages.append({"line": r["line"], "phone": r["phone"], "status": "rejected", "reason": r["reason"],
                         "provider_message_id": None, "provider_code": None, "encoding": None, "segments": 0,
                         "cost": None, "not_before": None, "attempts": []})
    messages.sort(key=lambda x: x["line"])
    return {
        "campaign": {
            "name": campaign.name, "provider": campaign.provider, "channel": campaign.channel,
            "state": campaign.state, "state_reason": campaign.state_reason,
            "created_at": _iso(campaign.created_at), "started_at": _iso(campaign.started_at),
            "finished_at": _iso(campaign.finished_at), "recipients": len(messages),
            "segments_sent": segments, "cost": round(cost, 6),
        },
        "counts": dict(sorted(counts.items())),
        "reasons": dict(reasons.most_common()),
        "provider_codes": dict(codes.most_common()),
        "messages": messages,
    }


def _reason_key(reason: str) -> str:
    # group "duplicate of line 12" and "retrying at 12:00:01 ..." under one heading
    for prefix in ("duplicate of line", "retrying at", "quiet hours", "suppressed", "invalid number",
                   "too long", "held:", "rejected by", "refused by"):
        if reason.startswith(prefix):
            return reason.split(":")[0] if prefix not in ("duplicate of line", "retrying at") else prefix
    return reason[:120]


def _attempt(a: dict[str, Any]) -> dict[str, Any]:
    return {"at": _iso(a["started_at"]), "duration_ms": a["duration_ms"], "http_status": a["http_status"],
            "outcome": a["outcome"], "provider_message_id": a["provider_message_id"],
            "provider_code": a["provider_code"], "detail": a["detail"]}


def _iso(d: Any) -> str | None:
    return d.isoformat() if d else None


def write_json(report: dict[str, Any], out: TextIO) -> None:
    json.dump(report, out, indent=2, default=str)
    out.write("\n")


CSV_COLUMNS = ["line", "phone", "status", "reason", "provider_message_id", "provider_code", "encoding",
               "segments", "cost", "not_before", "attempts", "last_http_status", "last_outcome"]


def write_csv(report: dict[str, Any], out: TextIO) -> None:
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    for m in report["messages"]:
        att = m["attempts"] if isinstance(m["attempts"], list) else []
        last = att[-1] if att else {}
        w.writerow([m["line"], m["phone"], m["status"], m["reason"] or "", m["provider_message_id"] or "",
                    m["provider_code"] or "", m["encoding"] or "", m["segments"], m["cost"] if m["cost"] is not None else "",
                    m["not_before"] or "", len(att), last.get("http_status") or "", last.get("outcome") or ""])


def to_text(report: dict[str, Any], fmt: str) -> str:
    buf = io.StringIO()
    (write_json if fmt == "json" else write_csv)(report, buf)
    return buf.getvalue()
