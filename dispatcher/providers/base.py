"""The provider seam: one ``send`` over small frozen models.

An adapter turns an ``SmsRequest`` into one HTTP request of its provider's documented API
and classifies the answer into exactly one ``Outcome``. It never raises for a provider
answer or a transport failure; it returns a ``SendResult`` the engine records as an attempt.
Adapters know nothing of Celery, Redis or the database.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Protocol

import httpx


class Outcome(str, enum.Enum):
    SENT = "sent"              # accepted by the provider
    RETRYABLE = "retryable"    # 5xx, connect errors, timeouts before the body was sent
    THROTTLED = "throttled"    # 429, Skycore E106/E113/E120: back off (retry_after)
    REJECTED = "rejected"      # permanent for this message (invalid number, content)
    SUPPRESSED = "suppressed"  # opt-out / blacklist / dnc: add to the suppression list
    AUTH = "auth"              # credentials refused: stop the campaign
    BILLING = "billing"        # account cannot pay: stop the campaign
    UNKNOWN = "unknown"        # the request may have been accepted (read timeout): never re-send blindly


class NumberFormat(str, enum.Enum):
    E164 = "e164"                    # +15552223333
    E164_NO_PLUS = "e164_no_plus"    # 15552223333 (Skycore)
    NATIONAL_WITH_COUNTRY = "national_with_country"  # cell=national number + country=ISO (Dripcel)


@dataclass(frozen=True, slots=True)
class SmsRequest:
    """One message to one recipient. ``to`` is always E.164 with '+'; adapters reformat."""

    message_id: str          # our id; sent as foreign_id / ExternalId where the API has one
    to: str                  # E.164, e.g. "+15552223333"
    region: str              # ISO 3166 alpha-2 of the number, e.g. "US"
    text: str
    segments: int = 1
    opt_in: bool = True      # recorded consent exists (the engine never sends without)
    test_mode: bool = False  # provider's own dry run where it has one (Dripcel sendOptions.testMode)


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    status_code: int | None = None       # HTTP status, None when no answer arrived
    provider_message_id: str | None = None
    provider_code: str | None = None     # e.g. Skycore "E110"
    detail: str | None = None            # provider's words or ours, safe to show a user
    retry_after: float | None = None     # seconds, for THROTTLED
    cost: float | None = None
    duration: float = 0.0                # seconds spent, retries included
    tries: int = 1                       # HTTP requests made (transport retries included)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """What a campaign says about its provider. Credentials are already resolved from the environment."""

    base_url: str
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)   # secrets: never in a repr or log
    options: Mapping[str, Any] = field(default_factory=dict)
    callback_url: str | None = None      # our webhook receiver, when configured
    test_mode: bool = False
    channel: str = "sms"                 # sms | rvm (Drop Cowboy) | email (Dripcel)


class Provider(Protocol):
    name: ClassVar[str]
    default_base_url: ClassVar[str]
    number_format: ClassVar[NumberFormat]
    concatenates: ClassVar[bool]          # False: one segment at most (Drop Cowboy)
    required_credentials: ClassVar[tuple[str, ...]]
    required_options: ClassVar[tuple[str, ...]]
    optional_options: ClassVar[tuple[str, ...]]

    def __init__(self, config: ProviderConfig, client: httpx.Client) -> None: ...

    def send(self, sms: SmsRequest, *, timeout: float) -> SendResult: ...

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Problems with a campaign's ``provider.options`` (unknown keys included); empty when fine."""
        ...

    def check(self, *, timeout: float) -> list[str]:
        """Read-only check of credentials and options against the provider; empty when fine."""
        ...

