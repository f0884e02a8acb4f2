"""Fone Dynamics REST v2: ``POST {base}/v2/Properties/{property_sid}/Messages``.

HTTP Basic with ``account_sid:auth_token`` (the seed does not show the scheme; ``_auth`` is
the one place that decides it). ``ExternalId`` carries our message id; it does not deduplicate.
200 ``{"Message": {"MessageSid", ...}}`` is SENT. 400 is REJECTED, except ``RecipientOptedOut``
and ``RecipientBlacklisted`` (SUPPRESSED); 401/403 are AUTH, 402 is BILLING.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Mapping

from dispatcher.providers.base import NumberFormat, Outcome, SendResult, SmsRequest
from dispatcher.providers.http import HttpAdapter, Reply, is_e164, option_text, outcome_from_status, outcome_from_text

_SUPPRESS = {"RecipientOptedOut", "RecipientBlacklisted"}
_BILLING = {"InsufficientFunds"}
_ALPHANUMERIC = re.compile(r"(?=[A-Za-z0-9 ]*[A-Za-z])[A-Za-z0-9 ]{1,11}")


def sender_problem(sender: str | None) -> str | None:
    """Why ``sender`` cannot be a ``From``: E.164, 1-11 of ``A-Za-z0-9`` and space with a letter,
    or blank for a leased sender. None when it can."""
    if sender is None or sender == "" or is_e164(sender) or _ALPHANUMERIC.fullmatch(sender):
        return None
    return (f"provider.options.from {sender!r} must be an E.164 number (+61499009990), 1-11 letters, digits "
            "and spaces with at least one letter, or blank for a leased sender")


class FoneDynamics(HttpAdapter):
    name: ClassVar[str] = "fonedynamics"
    default_base_url: ClassVar[str] = "https://api.fonedynamics.com"
    number_format: ClassVar[NumberFormat] = NumberFormat.E164
    concatenates: ClassVar[bool] = True
    required_credentials: ClassVar[tuple[str, ...]] = ("account_sid", "auth_token")
    required_options: ClassVar[tuple[str, ...]] = ("property_sid",)
    optional_options: ClassVar[tuple[str, ...]] = ("from",)

    @classmethod
    def _option_problems(cls, options: Mapping[str, Any], *, channel: str = "sms") -> list[str]:
        sender = options.get("from")
        problem = sender_problem(None if sender is None else str(sender))
        return [problem] if problem else []

    def send(self, sms: SmsRequest, *, timeout: float) -> SendResult:
        """Send one SMS; without ``from`` the provider leases a sender ID."""
        options = self.config.options
        payload: dict[str, Any] = {"To": sms.to, "Text": sms.text, "ExternalId": sms.message_id}
        sender = option_text(options, "from")
        if sender is not None:
            payload["From"] = sender
        if self.config.callback_url:
            payload["DeliveryReceipt"] = True
            payload["DeliveryReceiptWebhookUri"] = self.config.callback_url
        url = self._url("v2", "Properties", str(options.get("property_sid", "")), "Messages")
        answer = self._request("POST", url, json=payload, auth=self._auth(), to=sms.to, timeout=timeout)
        return answer if isinstance(answer, SendResult) else _classify(answer)

    def _auth(self) -> tuple[str, str]:
        creds = self.config.credentials
        return (creds["account_sid"], creds["auth_token"])


def _classify(reply: Reply) -> SendResult:
    code = reply.get("ErrorCode")
    code = str(code) if code else None
    message = reply.get("Message")
    if 200 <= reply.status_code < 300:
        sid = message.get("MessageSid") if isinstance(message, dict) else None
        return reply.result(Outcome.SENT, provider_message_id=None if sid is None else str(sid))
    detail = message if isinstance(message, str) and message else reply.excerpt()
    if code in _SUPPRESS:
        outcome = Outcome.SUPPRESSED
    elif code in _BILLING:
        outcome = Outcome.BILLING
    elif reply.status_code in (400, 422):
        outcome = Outcome.REJECTED if code else outcome_from_text(detail)
    else:
        outcome = outcome_from_status(reply.status_code)
    return reply.result(outcome, provider_code=code, detail=f"{code}: {detail}" if code else detail)
