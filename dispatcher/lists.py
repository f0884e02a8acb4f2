"""`dispatcher lists`: push a campaign's eligible contacts to a Drop Cowboy contact list, and manage lists.

Eligible means what the plan would send or defer (recorded consent, not suppressed, valid number).
Columns map to Drop Cowboy's field types by name (``postal_code`` → ``postal``); other columns fill
``custom1`` … ``custom5`` in file order; the rest are not sent (and the summary says which).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select, update

from .campaign import Campaign
from .errors import InputError, NotFoundError
from .loader import plan_rows
from .models import ProviderList, utcnow
from .providers.dropcowboy_lists import FIELD_TYPES, DropCowboyLists
from .store import Store

L = ProviderList.__table__
ALIASES = {"postal_code": "postal", "zip": "postal", "zip_code": "postal", "address": "address1"}
CHUNK = 1000


@dataclass
class PushResult:
    list_id: str
    list_name: str
    created: bool
    pushed: int = 0
    accepted: int = 0
    rejected: list[Any] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)


def field_mapping(columns: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """[(column, field type)] with ``phone`` first, and the columns left out."""
    out: list[tuple[str, str]] = [("phone", "phone")]
    unmapped: list[str] = []
    customs = [f"custom{i}" for i in range(1, 6)]
    for col in columns:
        if col in ("phone", "opt_in", "timezone"):
            continue
        ftype = ALIASES.get(col, col)
        if ftype in FIELD_TYPES and ftype != "phone" and ftype not in {f for _, f in out}:
            out.append((col, ftype))
        elif customs:
            out.append((col, customs.pop(0)))
        else:
            unmapped.append(col)
    return out, unmapped


def client_for(campaign: Campaign, http: httpx.Client, *, timeout: float) -> DropCowboyLists:
    if campaign.spec.provider.name != "dropcowboy":
        raise InputError(f"{campaign.source}: contact lists are a Drop Cowboy feature; this campaign uses "
                         f"{campaign.spec.provider.name}")
    from .providers.dropcowboy import DropCowboy

    return DropCowboyLists(campaign.base_url() or DropCowboy.default_base_url, campaign.credentials(), http, timeout=timeout)


def push(campaign: Campaign, store: Store, lists: DropCowboyLists, *, list_name: str | None = None) -> PushResult:
    name = list_name or campaign.name
    with store.tx() as conn:
        row = conn.execute(select(L).where(L.c.provider == "dropcowboy", L.c.name == name)).mappings().first()
    created = row is None
    if row is None:
        made = lists.create(name)
        list_id = str(made["list_id"])
        with store.tx() as conn:
            conn.execute(L.insert().values(provider="dropcowboy", name=name, list_id=list_id, created_at=utcnow()))
    else:
        list_id = row["list_id"]
        lists.get(list_id)   # still there?
    columns = sorted({k for k in campaign.template.variables} | set(_header(campaign)))
    mapping, unmapped = field_mapping(columns)
    result = PushResult(list_id, name, created, fields=[f for _, f in mapping], unmapped=unmapped)
    values: list[list[str]] = []

    def flush() -> None:
        if values:
            answer = lists.append(list_id, result.fields, values, region=campaign.spec.contacts.default_region)
            result.pushed += len(values)
            result.accepted += int(answer.get("accepted_count", len(values)) or 0)
            result.rejected += list(answer.get("rejected") or [])
            values.clear()

    for chunk in plan_rows(campaign, store, now=utcnow()):
        for p in chunk:
            if p.values is None or p.decision is None or p.decision.action not in ("send", "defer"):
                continue
            rec = {"phone": p.values["phone"], **p.values["fields"]}
            values.append([str(rec.get(col, "") or "") for col, _ in mapping])
            if len(values) >= CHUNK:
                flush()
    flush()
    with store.tx() as conn:
        conn.execute(update(L).where(L.c.provider == "dropcowboy", L.c.name == name)
                     .values(contacts_pushed=L.c.contacts_pushed + result.pushed))
    return result


def resolve(store: Store, name_or_id: str) -> tuple[str, str | None]:
    """(list_id, our name for it) from a name we created or a provider list id."""
    with store.tx() as conn:
        row = conn.execute(select(L).where(L.c.provider == "dropcowboy",
                                           (L.c.name == name_or_id) | (L.c.list_id == name_or_id))).mappings().first()
    return (row["list_id"], row["name"]) if row else (name_or_id, None)


def forget(store: Store, list_id: str) -> None:
    with store.tx() as conn:
        conn.execute(L.delete().where(L.c.provider == "dropcowboy", L.c.list_id == list_id))


def renamed(store: Store, list_id: str, name: str) -> None:
    with store.tx() as conn:
        conn.execute(update(L).where(L.c.provider == "dropcowboy", L.c.list_id == list_id).values(name=name))


def _header(campaign: Campaign) -> list[str]:
    from .campaign import read_header

    header = read_header(campaign.contacts_path)
    if header is None:
        raise NotFoundError(f"{campaign.contacts_path} is empty")
    return header
