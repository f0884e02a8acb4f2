"""Dripcel: ``POST /send/sms`` and ``POST /send/email/bulk``.

Auth: ``Authorization: Bearer <api_key>``. Success is 200 ``{"ok": true, "data": ...}``; every
failure is 400 ``{"ok": false, "error": "<text>"}`` (401 for the key, 429 when too fast). The texts
adapters may look for: ``invalid cell``, ``opted out``, ``blacklisted``, ``insufficient credits``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatcher.sandbox.base import Dialect, Outcome, Sandbox, endpoint, matches, retry_after_header
from dispatcher.sandbox.checks import CALLING_CODES, ISO2, is_email, is_nonempty_str, parse_iso, segments, to_e164

NAME = "dripcel"
SMS_FIELDS = frozenset({"content", "cell", "skipNonContacts", "country", "deliveryMethod", "campaign_id",
                        "sendOptions"})
EMAIL_FIELDS = frozenset({"from", "template_id", "destinations", "filter_non_contacts", "to_start_at"})
DELIVERY_METHODS = ("reverse", "standard", "transactional")
CELL = re.compile(r"\+?[0-9]{6,15}")
COST_PER_PART = 0.25


class Dripcel(Dialect):
    name = NAME

    def authorized(self, request: Request, expected: Mapping[str, str | None]) -> bool:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip()
        return scheme.lower() == "bearer" and " " not in key and matches(key, expected["api_key"])

    def unauthorized(self, body: Any) -> Response:
        return JSONResponse({"ok": False, "error": "Unauthorized"}, status_code=401)

    def throttled(self, retry_after: float, body: Any) -> Response:
        return JSONResponse({"ok": False, "error": "Too many requests"}, status_code=429,
                            headers=retry_after_header(retry_after))

    def malformed(self, body: Any) -> Response:
        return JSONResponse({"ok": False, "error": "body: must be a JSON object"}, status_code=400)


def _fail(error: str) -> tuple[Response, Outcome]:
    return JSONResponse({"ok": False, "error": error}, status_code=400), "rejected"


def _sms_problem(body: dict[str, Any]) -> str | None:
    unknown = sorted(set(body) - SMS_FIELDS)
    if unknown:
        return f"{unknown[0]}: unknown field"
    if not is_nonempty_str(body.get("content")):
        return "content: required"
    cell = body.get("cell")
    if cell is None or cell == "":
        return "cell: required"
    if not isinstance(cell, str) or not CELL.fullmatch(cell):
        return f"invalid cell {cell!r}: digits only, optionally with a leading +"
    if not isinstance(body.get("skipNonContacts"), bool):
        return "skipNonContacts: required, true or false"
    country = body.get("country")
    if not isinstance(country, str) or not ISO2.fullmatch(country):
        return "country: required, an ISO 3166 alpha-2 code like ZA"
    if country.upper() in CALLING_CODES and to_e164(cell, country) is None:
        return f"invalid cell {cell!r} for country {country}"
    method = body.get("deliveryMethod")
    if method not in DELIVERY_METHODS:
        return f"deliveryMethod: must be one of {', '.join(DELIVERY_METHODS)}"
    campaign = body.get("campaign_id")
    if campaign is not None and not isinstance(campaign, str):
        return "campaign_id: must be a string"
    options = body.get("sendOptions")
    if options is not None:
        if not isinstance(options, dict):
            return "sendOptions: must be an object"
        if options.get("testMode") is not None and not isinstance(options["testMode"], bool):
            return "sendOptions.testMode: must be true or false"
    return None


async def send_sms(sb: Sandbox, request: Request, body: dict[str, Any]) -> tuple[Response, Outcome]:
    problem = _sms_problem(body)
    if problem:
        return _fail(problem)
    cell: str = body["cell"]
    number = to_e164(cell, body["country"]) or cell
    behaviour = sb.behaviour(number)
    if behaviour == "invalid":
        return _fail(f"invalid cell {cell!r}: not a mobile number")
    if behaviour == "blacklisted":
        return _fail("Contact is blacklisted")
    if behaviour == "optout":
        return _fail("Contact has opted out")
    state = sb.state
    if state.config.billing_failure:
        return _fail("insufficient credits")
    await sb.slow(behaviour)
    test_mode = bool((body.get("sendOptions") or {}).get("testMode"))
    parts = segments(body["content"])
    if not test_mode:  # the provider's dry run delivers nothing, costs nothing
        state.sent(NAME, number, body["content"], parts)
    cost = 0.0 if test_mode else round(COST_PER_PART * parts, 4)
    return JSONResponse({"ok": True, "data": {"customerId": uuid.uuid4().hex[:24], "totalCost": cost}}), "accepted"


def _email_problem(body: dict[str, Any]) -> str | None:
    unknown = sorted(set(body) - EMAIL_FIELDS)
    if unknown:
        return f"{unknown[0]}: unknown field"
    if not is_email(body.get("from")):
        return "from: required, an e-mail address"
    if not is_nonempty_str(body.get("template_id")):
        return "template_id: required"
    destinations = body.get("destinations")
    if not isinstance(destinations, list) or not destinations:
        return "destinations: required, a non-empty list of e-mail addresses"
    for i, address in enumerate(destinations):
        if not is_email(address):
            return f"destinations[{i}]: invalid email {address!r}"
    flag = body.get("filter_non_contacts")
    if flag is not None and not isinstance(flag, bool):
        return "filter_non_contacts: must be true or false"
    start = body.get("to_start_at")
    if start is not None and parse_iso(start) is None:
        return "to_start_at: must be an ISO 8601 date-time like 2023-10-01T12:00:00Z"
    return None


async def send_email_bulk(sb: Sandbox, request: Request, body: dict[str, Any]) -> tuple[Response, Outcome]:
    problem = _email_problem(body)
    if problem:
        return _fail(problem)
    if sb.state.config.billing_failure:
        return _fail("insufficient credits")
    for address in body["destinations"]:
        sb.state.sent(NAME, address.lower(), f"email:{body['template_id']}", 0)
    return JSONResponse({"ok": True, "data": {}}), "accepted"


def routes(sb: Sandbox) -> list[Route]:
    d = Dripcel()
    return [
        Route("/send/sms", endpoint(sb, d, send_sms), methods=["POST"]),
        Route("/send/email/bulk", endpoint(sb, d, send_email_bulk), methods=["POST"]),
    ]
