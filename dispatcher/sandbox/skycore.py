"""Skycore messaging API v2: ``POST /skycore/api`` with ``"action": "sendsms"``.

Auth: header ``x-api-key``. Every answer except a scripted fault is HTTP 200; a failure is
``{"status": "Failure", "error-code", "error-info", "to"}``. Codes are the provider's own, plus
``E700`` (sandbox code: unknown action, unknown field, or a field of the wrong type).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatcher.sandbox.base import NOT_JSON, Dialect, Outcome, Sandbox, endpoint, matches
from dispatcher.sandbox.checks import segments
from dispatcher.sandbox.state import iso

NAME = "skycore"
FIELDS = frozenset({"action", "message-text", "to", "from", "from-mask", "campaign-ref", "click-tracking"})
RECEIVER = re.compile(r"[1-9][0-9]{6,14}")
SENDER = re.compile(r"[0-9]{3,15}")
ACCEPTED_DETAILS = "SMS request accepted and queued for delivery"


def _to(body: Any) -> Any:
    return body.get("to") if isinstance(body, dict) else None


def failure(code: str, info: str, body: Any) -> Response:
    return JSONResponse({"status": "Failure", "error-code": code, "error-info": info, "to": _to(body)})


class Skycore(Dialect):
    name = NAME

    def authorized(self, request: Request, expected: Mapping[str, str | None]) -> bool:
        return matches(request.headers.get("x-api-key"), expected["api_key"])

    def unauthorized(self, body: Any) -> Response:
        return failure("E101", "Invalid API Key.", body)

    def throttled(self, retry_after: float, body: Any) -> Response:
        return failure("E113", "Throughput exceeded.", body)

    def malformed(self, body: Any) -> Response:
        what = "not valid JSON" if body is NOT_JSON else "not a JSON object"
        return failure("E700", f"Invalid request: body is {what}.", body)


def _problem(body: dict[str, Any], campaigns: list[str]) -> tuple[str, str] | None:
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        return "E700", f"Invalid request: unknown parameter {unknown[0]!r}."
    action = body.get("action")
    if not isinstance(action, str) or action.lower() != "sendsms":
        return "E700", "Invalid request: action must be 'sendsms'."
    to = body.get("to")
    if to is None or to == "":
        return "E201", "Receiver number is required."
    if not isinstance(to, str) or not RECEIVER.fullmatch(to):
        return "E110", "Invalid receiver number: country code and number, digits only, without + or 00."
    text = body.get("message-text")
    if not isinstance(text, str) or not text:
        return "E712", "Message text is required."
    sender = body.get("from")
    if not isinstance(sender, str) or not SENDER.fullmatch(sender):
        return "E111", "Invalid Sender."
    mask = body.get("from-mask")
    if mask is not None and not isinstance(mask, str):
        return "E700", "Invalid request: from-mask must be a string."
    ref = body.get("campaign-ref")
    if ref is not None and not isinstance(ref, str):
        return "E700", "Invalid request: campaign-ref must be a string."
    if campaigns and ref not in campaigns:
        return "E714", "Missing or invalid campaign reference."
    tracking = body.get("click-tracking")
    if tracking is not None and not isinstance(tracking, bool):
        return "E700", "Invalid request: click-tracking must be true or false."
    return None


async def api(sb: Sandbox, request: Request, body: dict[str, Any]) -> tuple[Response, Outcome]:
    state = sb.state
    problem = _problem(body, state.config.skycore_campaigns)
    if problem:
        return failure(*problem, body), "rejected"
    to: str = body["to"]
    number = "+" + to
    behaviour = sb.behaviour(number)
    if behaviour == "invalid":
        return failure("E110", "Invalid receiver number.", body), "rejected"
    if behaviour == "blacklisted":
        return failure("E114", "Number is blacklisted.", body), "rejected"
    if behaviour == "optout":
        return failure("E715", "Number is not subscribed to this campaign.", body), "rejected"
    if state.config.billing_failure:
        return failure("E713", "Billing problem: insufficient balance.", body), "rejected"
    await sb.slow(behaviour)
    tracking_id = uuid.uuid4().hex
    text: str = body["message-text"]
    state.sent(NAME, number, text, segments(text))
    url = state.config.skycore_postback_url
    if url and state.config.receipts_enabled:
        failed = sb.receipt_failed(behaviour)
        sb.send_receipt(NAME, url, {
            "tracking-id": tracking_id,
            "to": to,
            "status": "UNDELIVERED" if failed else "DELIVERED",
            "error-code": "E999" if failed else None,
            "error-info": "Message could not be delivered." if failed else None,
            "timestamp": iso(time.time() + state.config.receipt_delay),
        })
    return JSONResponse({"status": "Success", "tracking-id": tracking_id, "to": to, "from": body["from"],
                         "status-details": ACCEPTED_DETAILS}), "accepted"


def routes(sb: Sandbox) -> list[Route]:
    return [Route("/skycore/api", endpoint(sb, Skycore(), api), methods=["POST"])]
