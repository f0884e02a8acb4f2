"""Database tables. The database is the source of truth; Redis and Celery are transport."""

from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import Column, DateTime, Index, JSON, Text, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTC(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (stored naive UTC, read back aware)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None else None


class CampaignState(str, enum.Enum):
    LOADING = "loading"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    STOPPED = "stopped"        # by the dispatcher, with a reason (auth, billing, a failed load)


class Status(str, enum.Enum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"
    DEFERRED = "deferred"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


OPEN_STATUSES = (Status.QUEUED.value, Status.SENDING.value, Status.DEFERRED.value)


class Campaign(SQLModel, table=True):
    __tablename__ = "campaign"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=100)
    provider: str = Field(max_length=32)
    channel: str = Field(default="sms", max_length=16)
    state: str = Field(default=CampaignState.LOADING.value, max_length=16, index=True)
    state_reason: str | None = Field(default=None, sa_column=Column(Text))
    source_path: str = Field(sa_column=Column(Text, nullable=False))
    spec: dict = Field(sa_column=Column(JSON, nullable=False))    # as written: ${VAR} never resolved here
    schedule_at: datetime | None = Field(default=None, sa_type=UTC)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTC)
    started_at: datetime | None = Field(default=None, sa_type=UTC)
    finished_at: datetime | None = Field(default=None, sa_type=UTC)
    loaded_lines: int = 0            # last CSV line committed: a failed load resumes after it
    load_complete: bool = False
    batch_count: int = 0


class Batch(SQLModel, table=True):
    __tablename__ = "batch"
    __table_args__ = (UniqueConstraint("campaign_id", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    seq: int
    size: int = 0
    touched_at: datetime | None = Field(default=None, sa_type=UTC)    # last enqueue or worker pass: the reconciler looks for stale ones


class Message(SQLModel, table=True):
    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("campaign_id", "phone"),
        Index("ix_message_batch_status", "batch_id", "status", "id"),   # a claim reads a batch in id order
        Index("ix_message_campaign_status", "campaign_id", "status"),
        Index("ix_message_status_not_before", "status", "not_before"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    batch_id: int = Field(foreign_key="batch.id")
    line: int                               # line of the contact file
    phone: str = Field(max_length=320)      # E.164; the address for the email channel
    region: str = Field(max_length=3)
    timezones: str | None = Field(default=None, max_length=200)  # space-separated IANA zones
    fields: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    consent: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    opt_in: bool = False
    body: str = Field(sa_column=Column(Text, nullable=False))
    encoding: str = Field(default="GSM-7", max_length=8)
    segments: int = 1
    status: str = Field(default=Status.QUEUED.value, max_length=12)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    not_before: datetime | None = Field(default=None, sa_type=UTC)
    attempts: int = 0
    provider_message_id: str | None = Field(default=None, max_length=128, index=True)
    provider_code: str | None = Field(default=None, max_length=64)
    cost: float | None = None
    claimed_at: datetime | None = Field(default=None, sa_type=UTC)
    updated_at: datetime | None = Field(default=None, sa_type=UTC)


class Attempt(SQLModel, table=True):
    __tablename__ = "attempt"
    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    started_at: datetime = Field(sa_type=UTC)
    duration_ms: int = 0
    http_status: int | None = None
    outcome: str = Field(max_length=16)
    provider_message_id: str | None = Field(default=None, max_length=128)
    provider_code: str | None = Field(default=None, max_length=64)
    detail: str | None = Field(default=None, sa_column=Column(Text))


class RejectedRow(SQLModel, table=True):
    """A contact-file row that produced no message (invalid number, bad opt_in, duplicate)."""
    __tablename__ = "rejected_row"
    __table_args__ = (UniqueConstraint("campaign_id", "line"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    line: int
    phone: str | None = Field(default=None, max_length=64)   # as written (truncated)
    reason: str = Field(sa_column=Column(Text, nullable=False))


class Suppression(SQLModel, table=True):
    __tablename__ = "suppression"
    phone: str = Field(primary_key=True, max_length=320)   # E.164, or an email address
    source: str = Field(max_length=32)          # manual, import, stop-reply, dropcowboy-dnc, skycore-E114, ...
    reason: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTC)


class WebhookEvent(SQLModel, table=True):
    """A provider callback, recorded before it is processed (answer fast, process after)."""
    __tablename__ = "webhook_event"
    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32)
    kind: str = Field(max_length=16)            # receipt | reply
    payload: dict = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTC)
    processed_at: datetime | None = Field(default=None, sa_type=UTC)
    result: str | None = Field(default=None, sa_column=Column(Text))


class ProviderList(SQLModel, table=True):
    """A contact list we created at a provider, so `lists push` reuses it by name."""
    __tablename__ = "provider_list"
    __table_args__ = (UniqueConstraint("provider", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32)
    name: str = Field(max_length=200)
    list_id: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTC)
    contacts_pushed: int = 0
