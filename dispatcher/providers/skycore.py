"""Skycore messaging API v2: ``POST {base}`` with ``{"action": "sendsms", ...}``.

The base URL is the full endpoint (the documents name no public one, so campaigns must set it).
``to`` is the number with country code and without ``+``. Skycore reports failure inside
HTTP 200 as ``{"status": "Failure", "error-code", "error-info"}``; the code decides the outcome:

    E106 E113 E120                      THROTTLED (back off)
    E114 E715                           SUPPRESSED
    E713                                BILLING
    E100-E109 (not E106), E112          AUTH
    anything else (E110 E111 E201 ...)  REJECTED

A 200 whose body says neither Success nor Failure is UNKNOWN: the send may have been accepted.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Mapping

from dispatcher.providers.base import NumberFormat, Outcome, SendResult, SmsRequest
from dispatcher.providers.http import HttpAdapter, Reply, option_text, outcome_from_status

FROM_MASK_MAX = 11

_THROTTLE = {"E106", "E113", "E120"}
_SUPPRESS = {"E114", "E715"}
_BILLING = {"E713"}
_AUTH = ({f"E{n}" for n in range(100, 110)} - _THROTTLE) | {"E112"}
_EVERY_SECONDS = re.compile(r"every\s+(\d+(?:\.\d+)?)\s*seconds?", re.I)


def outcome_for_code(code: str) -> Outcome:
    """The outcome of a Skycore ``error-code``."""
    code = code.strip().upper()
    if code in _THROTTLE:
        return Outcome.THROTTLED
    if code in _SUPPRESS:
        return Outcome.SUPPRESSED
    if code in _BILLING:
        return Outcome.BILLING
    if code in _AUTH:
        return Outcome.AUTH
    return Outcome.REJECTED


class Skycore(HttpAdapter):
    name: ClassVar[str] = "skycore"
    default_base_url: ClassVar[str] = ""  # the seed shows only API_ENDPOINT_URL
    number_format: ClassVar[NumberFormat] = NumberFormat.E164_NO_PLUS
    concatenates: ClassVar[bool] = True
    required_credentials: ClassVar[tuple[str, ...]] = ("api_key",)
    required_options: ClassVar[tuple[str, ...]] = ("from",)
    optional_options: ClassVar[tuple[str, ...]] = ("from-mask", "campaign-ref", "click-tracking")

    @classmethod
    def _option_problems(cls, options: Mapping[str, Any], *, channel: str = "sms") -> list[str]:
        problems: list[str] = []
        mask = option_text(options, "from-mask")
        if mask is not None and len(mask) > FROM_MASK_MAX:
            problems.append(f"provider.options.from-mask {mask!r} is longer than {FROM_MASK_MAX} characters "
                            "(Skycore would cut it)")
        sender = option_text(options, "from")
        if sender is not None and not sender.isdigit():
            problems.append(f"provider.options.from must be a shortcode or number with country code, digits only, "
                            f"got {sender!r}")
        tracking = options.get("click-tracking")
        if tracking is not None and not isinstance(tracking, bool):
            problems.append(f"provider.options.click-tracking must be true or false, got {tracking!r}")
        return problems

    def send(self, sms: SmsRequest, *, timeout: float) -> SendResult:
        """Send one SMS; the answer's body, not only its status, decides the outcome."""
        options = self.config.options
        payload: dict[str, Any] = {
            "action": "sendsms",
            "message-text": sms.text,
            "to": sms.to.lstrip("+"),
            "from": option_text(options, "from"),
        }
        for key in ("from-mask", "campaign-ref"):
            value = option_text(options, key)
            if value is not None:
                payload[key] = value
        if options.get("click-tracking") is not None:
            payload["click-tracking"] = bool(options["click-tracking"])
        answer = self._request("POST", self.base_url, json=payload, headers=self._headers(), to=sms.to,
                               timeout=timeout)
        return answer if isinstance(answer, SendResult) else _classify(answer)

    def _headers(self) -> dict[str, str]:
        return {"x-api-key": self.config.credentials["api_key"]}


def _classify(reply: Reply) -> SendResult:
    status = str(reply.get("status") or "").lower()
    code = str(reply.get("error-code") or "").strip().upper() or None
    info = reply.get("error-info")
    detail = str(info) if info else reply.excerpt()
    if status == "failure" or code:
        if code:
            outcome = outcome_for_code(code)
        else:
            outcome = Outcome.REJECTED if reply.status_code < 300 else outcome_from_status(reply.status_code)
        retry_after = _seconds(detail) if outcome is Outcome.THROTTLED else None
        return reply.result(outcome, provider_code=code, detail=detail, retry_after=retry_after)
    if 200 <= reply.status_code < 300:
        if status == "success":
            tracking_id = reply.get("tracking-id")
            return reply.result(Outcome.SENT, provider_message_id=None if tracking_id is None else str(tracking_id),
                                detail=reply.get("status-details"))
        return reply.result(Outcome.UNKNOWN, detail=f"answer is neither Success nor Failure: {reply.excerpt()}")
    return reply.result(outcome_from_status(reply.status_code), detail=reply.excerpt())


def _seconds(info: str) -> float | None:
    """``E106 ... you can call the API every 5 seconds`` -> 5.0."""
    match = _EVERY_SECONDS.search(info)
    return float(match.group(1)) if match else None
