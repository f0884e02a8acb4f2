"""Fone Dynamics REST v2: ``POST /v2/Properties/{PropertySid}/Messages``.

Auth: HTTP Basic ``AccountSid:AuthToken``. Success is 200 ``{"Message": {...}}``; failures are
``{"Status": <http status>, "ErrorCode": "<code>", "Message": "<text>"}`` with the codes in
docs/sandbox.md, plus ``InvalidParameter`` for unknown fields or optional fields of the wrong kind.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
import zlib
from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatcher.sandbox.base import Dialect, Outcome, Sandbox, endpoint, matches, retry_after_header
from dispatcher.sandbox.checks import is_e164, is_email, is_http_url, segments
from dispatcher.sandbox.state import iso

NAME = "fonedynamics"
FIELDS = frozenset({"From", "To", "Text", "Schedule", "DeliveryReceipt", "DeliveryReceiptWebhookUri",
                    "DeliveryReceiptWebhookMethod", "ExternalId", "ForwardToSms", "ForwardFromSms",
                    "ForwardToEmail", "ForwardFromEmail", "WebhookUri", "WebhookMethod"})
ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
MAX_SCHEDULE_AHEAD = 14 * 86400
MAX_SCHEDULE_BEHIND = 3600


def error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"Status": status, "ErrorCode": code, "Message": message}, status_code=status)


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """The (user, password) of an ``Authorization: Basic`` header, or None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if sep else None


class FoneDynamics(Dialect):
    name = NAME

    def authorized(self, request: Request, expected: Mapping[str, str | None]) -> bool:
        creds = basic_credentials(request)
        return creds is not None and matches(creds[0], expected["account_sid"]) and matches(
            creds[1], expected["auth_token"])

    def unauthorized(self, body: Any) -> Response:
        return error(401, "Unauthorized", "Invalid AccountSid or auth token.")

    def throttled(self, retry_after: float, body: Any) -> Response:
        return JSONResponse({"Status": 429, "ErrorCode": "TooManyRequests", "Message": "Too many requests."},
                            status_code=429, headers=retry_after_header(retry_after))

    def malformed(self, body: Any) -> Response:
        return error(400, "InvalidParameter", "The request body must be a JSON object.")


def is_sender(value: Any) -> bool:
    """E.164 with '+', or alphanumeric: 1-11 of A-Z a-z 0-9 and space with at least one letter."""
    return is_e164(value) or (isinstance(value, str) and ALPHANUMERIC_SENDER.fullmatch(value) is not None)


def _problem(body: dict[str, Any], now: float) -> tuple[str, str] | None:
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        return "InvalidParameter", f"Unknown parameter '{unknown[0]}'."
    if not is_e164(body.get("To")):
        return "InvalidTo", "To must be an E164 number including the + prefix."
    sender = body.get("From")
    if sender not in (None, "") and not is_sender(sender):
        return "InvalidFrom", ("From must be an E164 number, an alphanumeric sender ID of 1 to 11 letters, "
                               "digits or spaces with at least one letter, or blank for a leased number.")
    text = body.get("Text")
    if not isinstance(text, str) or not text:
        return "TextRequired", "Text is required."
    schedule = body.get("Schedule")
    if schedule is not None:
        if isinstance(schedule, bool) or not isinstance(schedule, int):
            return "InvalidSchedule", "Schedule must be an integer: UTC seconds since the Unix epoch."
        if schedule > now + MAX_SCHEDULE_AHEAD:
            return "InvalidSchedule", "Schedule can be at most 14 days in the future."
        if schedule < now - MAX_SCHEDULE_BEHIND:
            return "InvalidSchedule", "Schedule is more than one hour in the past."
    if body.get("DeliveryReceipt") is not None and not isinstance(body["DeliveryReceipt"], bool):
        return "InvalidParameter", "DeliveryReceipt must be true or false."
    for field in ("DeliveryReceiptWebhookUri", "WebhookUri"):
        if body.get(field) not in (None, "") and not is_http_url(body[field]):
            return "InvalidParameter", f"{field} must be an http(s) URI."
    for field in ("DeliveryReceiptWebhookMethod", "WebhookMethod"):
        value = body.get(field)
        if value is not None and (not isinstance(value, str) or value.upper() not in ("POST", "GET")):
            return "InvalidParameter", f"{field} must be POST or GET."
    if body.get("ExternalId") is not None and not isinstance(body["ExternalId"], str):
        return "InvalidParameter", "ExternalId must be a string."
    if body.get("ForwardToSms") not in (None, "") and not is_e164(body["ForwardToSms"]):
        return "InvalidParameter", "ForwardToSms must be an E164 number."
    if body.get("ForwardFromSms") not in (None, "") and not is_sender(body["ForwardFromSms"]):
        return "InvalidParameter", "ForwardFromSms must be an E164 number or an alphanumeric sender ID."
    for field in ("ForwardToEmail", "ForwardFromEmail"):
        if body.get(field) not in (None, "") and not is_email(body[field]):
            return "InvalidParameter", f"{field} must be an email address."
    return None


def leased_sender(to: str) -> str:
    """The number a leased sender ID resolves to: stable per recipient, as a lease would be."""
    return f"+614{zlib.crc32(to.encode()) % 100_000_000:08d}"


async def messages(sb: Sandbox, request: Request, body: dict[str, Any]) -> tuple[Response, Outcome]:
    now = time.time()
    problem = _problem(body, now)
    if problem:
        return error(400, *problem), "rejected"
    to: str = body["To"]
    behaviour = sb.behaviour(to)
    if behaviour == "invalid":
        return error(400, "InvalidTo", "The recipient number is not valid."), "rejected"
    if behaviour == "blacklisted":
        return error(400, "RecipientBlacklisted", "The recipient is blacklisted."), "rejected"
    if behaviour == "optout":
        return error(400, "RecipientOptedOut", "The recipient has opted out."), "rejected"
    state = sb.state
    if state.config.billing_failure:
        return error(402, "InsufficientFunds", "The account has insufficient funds."), "rejected"
    await sb.slow(behaviour)
    text: str = body["Text"]
    sid = "M" + uuid.uuid4().hex.upper()[:31]
    creds = basic_credentials(request)
    state.sent(NAME, to, text, segments(text))
    url = body.get("DeliveryReceiptWebhookUri")
    if url and body.get("DeliveryReceipt") is not False and state.config.receipts_enabled:
        failed = sb.receipt_failed(behaviour)
        after = max(0.0, float(body.get("Schedule") or 0) - now)
        sb.send_receipt(NAME, url, {
            "MessageSid": sid,
            "ExternalId": body.get("ExternalId"),
            "To": to,
            "Status": "UNDELIVERED" if failed else "DELIVERED",
            "ErrorCode": "Undeliverable" if failed else None,
            "DateUpdated": iso(now + after + state.config.receipt_delay),
        }, after=after, method=str(body.get("DeliveryReceiptWebhookMethod") or "POST").upper())
    return JSONResponse({"Message": {
        "MessageSid": sid,
        "AccountSid": creds[0] if creds else None,
        "PropertySid": request.path_params["property_sid"],
        "From": body.get("From") or leased_sender(to),
        "To": to,
        "Text": text,
    }}), "accepted"


def routes(sb: Sandbox) -> list[Route]:
    return [Route("/v2/Properties/{property_sid}/Messages", endpoint(sb, FoneDynamics(), messages),
                  methods=["POST"])]
