"""Channels: what one send is for SMS, Drop Cowboy ringless voicemail and Dripcel bulk email.

SMS and RVM send one request per recipient; email sends one request for many recipients
(``destinations``), whose answer applies to each of them. The engine calls ``send_one`` or
``send_group``; adapters stay unaware of the engine.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Sequence

from .providers.base import Outcome, Provider, SendResult, SmsRequest
from .providers.http import local_result

SMS, RVM, EMAIL = "sms", "rvm", "email"
CHANNELS = (SMS, RVM, EMAIL)
PROVIDER_OF = {RVM: "dropcowboy", EMAIL: "dripcel"}     # channels other than sms exist at one provider each
GROUPED = {EMAIL}
RVM_AUDIO = ("recording_id", "voice_id", "audio_url")


def needs_length_rule(channel: str) -> bool:
    return channel == SMS


def uses_phone(channel: str) -> bool:
    return channel != EMAIL


def send_one(provider: Provider, channel: str, *, message_id: int, to: str, region: str, body: str, segments: int,
             opt_in: bool, fields: Mapping[str, Any], options: Mapping[str, Any], test_mode: bool,
             timeout: float) -> SendResult:
    if channel == SMS:
        return provider.send(SmsRequest(message_id=str(message_id), to=to, region=region, text=body,
                                        segments=segments, opt_in=opt_in, test_mode=test_mode), timeout=timeout)
    if channel == RVM:
        from .providers.dropcowboy import RvmRequest

        try:
            rvm = RvmRequest(
                message_id=str(message_id), to=to, brand_id=str(options["brand_id"]),
                recording_id=_opt(options, "recording_id"), voice_id=_opt(options, "voice_id"),
                tts_body=body if _opt(options, "voice_id") else None, audio_url=_opt(options, "audio_url"),
                forwarding_number=_opt(options, "forwarding_number"), phone_ivr_id=_opt(options, "phone_ivr_id"),
                pool_id=_opt(options, "pool_id"), postal_code=(str(fields.get("postal_code") or "") or None))
        except ValueError as exc:
            return local_result(Outcome.REJECTED, str(exc))
        return provider.send_rvm(rvm, timeout=timeout)  # type: ignore[attr-defined]
    return local_result(Outcome.REJECTED, f"channel {channel} sends in groups")


def send_group(provider: Provider, *, addresses: Sequence[str], options: Mapping[str, Any],
               schedule: datetime | None, timeout: float) -> SendResult:
    """One bulk email request for ``addresses``; its result stands for each of them."""
    return provider.send_email_bulk(  # type: ignore[attr-defined]
        sender=str(options["from"]), template_id=str(options["template_id"]), destinations=list(addresses),
        filter_non_contacts=options.get("filter_non_contacts"), to_start_at=schedule, timeout=timeout)


def group_size(options: Mapping[str, Any]) -> int:
    from .providers.dripcel import EMAIL_DESTINATIONS_PER_REQUEST

    return int(options.get("destinations_per_request", EMAIL_DESTINATIONS_PER_REQUEST))


def _opt(options: Mapping[str, Any], key: str) -> str | None:
    v = options.get(key)
    return str(v) if v not in (None, "") else None
