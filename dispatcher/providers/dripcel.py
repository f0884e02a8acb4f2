"""Dripcel: SMS (``POST {base}/send/sms``) and bulk email (``POST {base}/send/email/bulk``).

``cell`` is the national number and ``country`` the ISO code of ``SmsRequest.region``.
Success is 200 ``{"ok": true, "data": {"customerId", "totalCost"}}``; any failure is 400
``{"ok": false, "error": "..."}``, SUPPRESSED when the text says opted out, blacklisted or
unsubscribed, BILLING when it speaks of credit or funds, else REJECTED. The documents do not
show the auth header: ``_auth_headers`` is the one place that decides it (Bearer API key).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar, Mapping, Sequence

import phonenumbers

from dispatcher.providers.base import NumberFormat, Outcome, SendResult, SmsRequest
from dispatcher.providers.http import (
    HttpAdapter,
    Reply,
    local_result,
    option_text,
    outcome_from_status,
    outcome_from_text,
)

DELIVERY_METHODS = ("reverse", "standard", "transactional")


EMAIL_DESTINATIONS_PER_REQUEST = 100


def _auth_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


class Dripcel(HttpAdapter):
    name: ClassVar[str] = "dripcel"
    default_base_url: ClassVar[str] = "https://api.dripcel.com"
    number_format: ClassVar[NumberFormat] = NumberFormat.NATIONAL_WITH_COUNTRY
    concatenates: ClassVar[bool] = True
    required_credentials: ClassVar[tuple[str, ...]] = ("api_key",)
    required_options: ClassVar[tuple[str, ...]] = ()
    optional_options: ClassVar[tuple[str, ...]] = ("delivery_method", "skip_non_contacts", "campaign_id")
    channel_options: ClassVar[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
        "email": (("from", "template_id"), ("filter_non_contacts", "destinations_per_request")),
    }

    @classmethod
    def _option_problems(cls, options: Mapping[str, Any], *, channel: str = "sms") -> list[str]:
        problems: list[str] = []
        method = options.get("delivery_method", "standard")
        if method not in DELIVERY_METHODS:
            problems.append(f"provider.options.delivery_method must be one of {', '.join(DELIVERY_METHODS)}, "
                            f"got {method!r}")
        skip = options.get("skip_non_contacts", False)
        if not isinstance(skip, bool):
            problems.append(f"provider.options.skip_non_contacts must be true or false, got {skip!r}")
        if channel == "email":
            sender = options.get("from")
            if sender is not None and (not isinstance(sender, str) or "@" not in sender):
                problems.append(f"provider.options.from must be an email address, got {sender!r}")
            size = options.get("destinations_per_request", EMAIL_DESTINATIONS_PER_REQUEST)
            if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 1000:
                problems.append(f"provider.options.destinations_per_request must be a whole number from 1 to 1000, got {size!r}")
            if not isinstance(options.get("filter_non_contacts", False), bool):
                problems.append("provider.options.filter_non_contacts must be true or false")
        return problems

    def send(self, sms: SmsRequest, *, timeout: float) -> SendResult:
        """Send one SMS; a number that cannot be put in national form is REJECTED locally (tries=0)."""
        national = _national(sms.to)
        if national is None:
            return local_result(Outcome.REJECTED, "invalid cell: not a parseable phone number")
        cell, number_region = national
        options = self.config.options
        payload: dict[str, Any] = {
            "content": sms.text,
            "cell": cell,
            "country": (sms.region or number_region).upper(),
            "deliveryMethod": options.get("delivery_method", "standard"),
            "skipNonContacts": bool(options.get("skip_non_contacts", False)),
        }
        campaign_id = option_text(options, "campaign_id")
        if campaign_id is not None:
            payload["campaign_id"] = campaign_id
        if self.config.test_mode or sms.test_mode:
            payload["sendOptions"] = {"testMode": True}
        answer = self._request("POST", self._url("send", "sms"), json=payload, headers=self._headers(),
                               to=sms.to, timeout=timeout)
        return answer if isinstance(answer, SendResult) else _classify(answer)

    def send_email_bulk(
        self,
        *,
        sender: str,
        template_id: str,
        destinations: Sequence[str],
        timeout: float,
        filter_non_contacts: bool | None = None,
        to_start_at: datetime | None = None,
    ) -> SendResult:
        """Send one email template to many addresses; ``to_start_at`` (aware datetime) schedules it."""
        if not destinations:
            return local_result(Outcome.REJECTED, "destinations is empty")
        payload: dict[str, Any] = {"from": sender, "template_id": template_id, "destinations": list(destinations)}
        if filter_non_contacts is not None:
            payload["filter_non_contacts"] = filter_non_contacts
        if to_start_at is not None:
            payload["to_start_at"] = to_start_at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        answer = self._request("POST", self._url("send", "email", "bulk"), json=payload, headers=self._headers(),
                               timeout=timeout)
        return answer if isinstance(answer, SendResult) else _classify(answer)

    def _headers(self) -> dict[str, str]:
        return _auth_headers(self.config.credentials["api_key"])


def _classify(reply: Reply) -> SendResult:
    error = reply.get("error")
    error = error if isinstance(error, str) else reply.excerpt()
    ok = reply.get("ok")
    if 200 <= reply.status_code < 300 and ok is not False:
        data = reply.get("data")
        data = data if isinstance(data, dict) else {}
        customer_id = data.get("customerId")
        cost = data.get("totalCost")
        return reply.result(
            Outcome.SENT,
            provider_message_id=None if customer_id is None else str(customer_id),
            cost=float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None,
        )
    if reply.status_code in (400, 422) or reply.status_code < 300:  # a 2xx here said ok: false
        return reply.result(outcome_from_text(error), detail=error)
    return reply.result(outcome_from_status(reply.status_code), detail=error)


def _national(number: str) -> tuple[str, str] | None:
    """``+27821234567`` -> ``("0821234567", "ZA")``: the national form, digits only, and the number's region."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    digits = "".join(ch for ch in national if ch.isdigit())
    return (digits, phonenumbers.region_code_for_number(parsed) or "") if digits else None
