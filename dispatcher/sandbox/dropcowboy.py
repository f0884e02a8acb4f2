"""Drop Cowboy: ``/v1/sms``, ``/v1/rvm``, contact lists and the account fixtures (pools, brands, ...).

Auth: headers ``x-team-id`` and ``x-secret`` on every call; ``/sms`` and ``/rvm`` bodies carry
``team_id`` and ``secret`` too, and those must name the same account. Send failures answer
``{"error": "<field>: <what>", "accepted_count": 0, "rejected": [{"phone_number", "reason"}]}``
where ``reason`` is ``invalid_number``, ``invalid_request``, ``dnc``, ``opted_out`` or ``billing``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatcher.sandbox.base import Dialect, Outcome, Sandbox, endpoint, matches, retry_after_header
from dispatcher.sandbox.checks import CALLING_CODES, is_e164, is_http_url, is_nonempty_str, to_e164
from dispatcher.sandbox.state import iso

NAME = "dropcowboy"
SMS_FIELDS = frozenset({"team_id", "secret", "phone_number", "caller_id", "pool_id", "sms_body", "opt_in",
                        "callback_url", "foreign_id"})
RVM_FIELDS = frozenset({"team_id", "secret", "foreign_id", "brand_id", "phone_number", "recording_id", "voice_id",
                        "tts_body", "audio_url", "audio_type", "forwarding_number", "phone_ivr_id", "pool_id",
                        "postal_code", "callback_url", "byoc"})
CONTACT_FIELDS = frozenset({"record_id", "first_name", "last_name", "company", "email", "phone", "address1",
                            "address2", "city", "state", "postal", "country", "custom1", "custom2", "custom3",
                            "custom4", "custom5"})
SMS_COST = 0.0075
RVM_COST = 0.02
TTS_FEE = 0.005


class DropCowboy(Dialect):
    name = NAME

    def authorized(self, request: Request, expected: Mapping[str, str | None]) -> bool:
        headers = request.headers
        return matches(headers.get("x-team-id"), expected["team_id"]) and matches(
            headers.get("x-secret"), expected["secret"])

    def unauthorized(self, body: Any) -> Response:
        return JSONResponse({"error": "invalid x-team-id / x-secret"}, status_code=401)

    def throttled(self, retry_after: float, body: Any) -> Response:
        return JSONResponse({"error": "rate limit exceeded"}, status_code=429, headers=retry_after_header(retry_after))

    def malformed(self, body: Any) -> Response:
        return JSONResponse({"error": "body: must be a JSON object", "accepted_count": 0, "rejected": []},
                            status_code=400)

    def loggable(self, body: dict[str, Any]) -> Any:
        return {**body, "secret": "***"} if "secret" in body else body


def _rejected(body: dict[str, Any], error: str, reason: str, status: int = 400) -> tuple[Response, Outcome]:
    phone = body.get("phone_number")
    return JSONResponse(
        {"error": error, "accepted_count": 0,
         "rejected": [{"phone_number": phone if isinstance(phone, str) else None, "reason": reason}]},
        status_code=status,
    ), "rejected"


def _body_credentials(request: Request, body: dict[str, Any],
                      expected: Mapping[str, str | None]) -> tuple[Response, Outcome] | None:
    """The body's ``team_id``/``secret`` must be present and name the account the headers name."""
    for field, header in (("team_id", "x-team-id"), ("secret", "x-secret")):
        value = body.get(field)
        if not is_nonempty_str(value):
            return _rejected(body, f"{field}: required", "invalid_request")
        want = expected[field] if expected[field] is not None else request.headers.get(header)
        if value != want:
            return JSONResponse({"error": "invalid x-team-id / x-secret"}, status_code=401), "unauthorized"
    return None


def _optional(body: dict[str, Any], field: str, *, limit: int | None = None) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{field}: must be a string"
    if limit is not None and len(value) > limit:
        return f"{field}: must be at most {limit} characters (got {len(value)})"
    return None


def _common(request: Request, body: dict[str, Any], sb: Sandbox,
            allowed: frozenset[str]) -> tuple[Response, Outcome] | None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        return _rejected(body, f"{unknown[0]}: unknown field", "invalid_request")
    answer = _body_credentials(request, body, sb.state.config.credentials[NAME])
    if answer is not None:
        return answer
    phone = body.get("phone_number")
    if phone is None:
        return _rejected(body, "phone_number: required", "invalid_number")
    if not is_e164(phone):
        return _rejected(body, "phone_number: must be E.164, like +15552223333", "invalid_number")
    return None


def _sms_problem(body: dict[str, Any], sb: Sandbox) -> str | None:
    caller = body.get("caller_id")
    if caller is None:
        return "caller_id: required"
    if not is_e164(caller):
        return "caller_id: must be E.164, like +15557778888"
    pool = body.get("pool_id")
    if not is_nonempty_str(pool):
        return "pool_id: required"
    if sb.state.fixture("pools", pool) is None:
        return f"pool_id: unknown pool {pool!r}"
    text = body.get("sms_body")
    if text is None:
        return "sms_body: required"
    if not isinstance(text, str) or not text:
        return "sms_body: must be a non-empty string"
    if len(text) > 160:
        return f"sms_body: must be at most 160 characters (got {len(text)})"
    if "opt_in" not in body:
        return "opt_in: required"
    if body["opt_in"] is not True:
        return "opt_in: must be true (consent to send must exist)"
    problem = _optional(body, "foreign_id", limit=256)
    if problem:
        return problem
    if body.get("callback_url") is not None and not is_http_url(body["callback_url"]):
        return "callback_url: must be an http(s) URL"
    return None


def _rvm_problem(body: dict[str, Any], sb: Sandbox) -> str | None:
    foreign = body.get("foreign_id")
    if not is_nonempty_str(foreign):
        return "foreign_id: required"
    if len(foreign) > 256:
        return f"foreign_id: must be at most 256 characters (got {len(foreign)})"
    brand = body.get("brand_id")
    if not is_nonempty_str(brand):
        return "brand_id: required"
    if sb.state.fixture("brands", brand) is None:
        return f"brand_id: unknown brand {brand!r}"
    for field in ("recording_id", "voice_id", "tts_body", "audio_url", "audio_type", "phone_ivr_id", "pool_id",
                  "postal_code", "callback_url"):
        problem = _optional(body, field)
        if problem:
            return problem
    recording, voice, tts, audio = (body.get(k) for k in ("recording_id", "voice_id", "tts_body", "audio_url"))
    sources = sum(1 for s in (recording, voice if voice is not None else tts, audio) if s is not None)
    if sources != 1:
        return "audio: give exactly one of recording_id, voice_id with tts_body, or audio_url"
    if recording is not None and sb.state.fixture("recordings", recording) is None:
        return f"recording_id: unknown recording {recording!r}"
    if (voice is not None or tts is not None) and not (is_nonempty_str(voice) and is_nonempty_str(tts)):
        return "tts_body: required with voice_id" if is_nonempty_str(voice) else "voice_id: required with tts_body"
    if audio is not None and not is_http_url(audio):
        return "audio_url: must be an http(s) URL"
    forwarding = body.get("forwarding_number")
    if forwarding is not None and not is_e164(forwarding):
        return "forwarding_number: must be E.164"
    if body.get("pool_id") is not None and sb.state.fixture("pools", body["pool_id"]) is None:
        return f"pool_id: unknown pool {body['pool_id']!r}"
    if body.get("callback_url") is not None and not is_http_url(body["callback_url"]):
        return "callback_url: must be an http(s) URL"
    if body.get("byoc") is not None and not isinstance(body["byoc"], dict):
        return "byoc: must be an object"
    return None


async def _deliver(sb: Sandbox, body: dict[str, Any], key: str, *, cost: float,
                   tts_fee: float = 0.0) -> tuple[Response, Outcome]:
    """Scripted numbers, billing, then acceptance with a webhook."""
    phone: str = body["phone_number"]
    behaviour = sb.behaviour(phone)
    if behaviour == "invalid":
        return _rejected(body, "phone_number: not a valid mobile number", "invalid_number")
    if behaviour == "blacklisted":
        return _rejected(body, "phone_number: on a do-not-contact list", "dnc")
    if behaviour == "optout":
        return _rejected(body, "phone_number: opted out", "opted_out")
    state = sb.state
    if state.config.billing_failure:
        return _rejected(body, "account: insufficient balance", "billing", status=402)
    await sb.slow(behaviour)
    drop_id = str(uuid.uuid4())
    foreign_id = body.get("foreign_id")
    state.sent(NAME, phone, key)
    url = body.get("callback_url") or state.config.dropcowboy_webhook_url
    if url and state.config.receipts_enabled:
        failed = sb.receipt_failed(behaviour)
        sb.send_receipt(NAME, url, {
            "drop_id": drop_id,
            "phone_number": phone,
            "attempt_date": iso(time.time() + state.config.receipt_delay),
            "status": "failure" if failed else "success",
            "reason": "Undeliverable" if failed else "",
            "dnc": False,
            "spam": False,
            "product_cost": 0.0 if failed else cost,
            "compliance_fee": 0.0,
            "tts_fee": 0.0 if failed else tts_fee,
            "network": {"name": "Sandbox Wireless", "type": "mobile"},
            "foreign_id": foreign_id,
        })
    return JSONResponse({"status": "queued", "drop_id": drop_id, "foreign_id": foreign_id,
                         "accepted_count": 1, "rejected": []}), "accepted"


async def sms(sb: Sandbox, request: Request, body: dict[str, Any]) -> tuple[Response, Outcome]:
    answer = _common(request, body, sb, SMS_FIELDS)
    if answer is not None:
        return answer
    problem = _sms_problem(body, sb)
    if problem:
        return _rejected(body, problem, "invalid_request")
    return await _deliver(sb, body, body["sms_body"], cost=SMS_COST)


async def rvm(sb: Sandbox, request: Request, body: dict[str, Any]) -> tuple[Response, Outcome]:
    answer = _common(request, body, sb, RVM_FIELDS)
    if answer is not None:
        return answer
    problem = _rvm_problem(body, sb)
    if problem:
        return _rejected(body, problem, "invalid_request")
    audio = body.get("recording_id") or body.get("audio_url") or f"{body['voice_id']}:{body['tts_body']}"
    tts = TTS_FEE if body.get("tts_body") else 0.0
    return await _deliver(sb, body, f"rvm:{audio}", cost=RVM_COST, tts_fee=tts)


# --- contact lists ----------------------------------------------------------------------------

def _error(message: str, status: int = 400) -> tuple[Response, Outcome]:
    return JSONResponse({"error": message}, status_code=status), "rejected"


def _list_fields(body: dict[str, Any], allowed: frozenset[str]) -> str | None:
    unknown = sorted(set(body) - allowed - {"team_id", "secret"})
    return f"{unknown[0]}: unknown field" if unknown else None


def _list_view(item: dict[str, Any]) -> dict[str, Any]:
    return {"list_id": item["list_id"], "list_name": item["list_name"], "created_at": item["created_at"],
            "contact_count": len(item["contacts"])}


async def list_create(sb: Sandbox, request: Request, body: dict[str, Any]) -> tuple[Response, Outcome]:
    problem = _list_fields(body, frozenset({"list_name"}))
    if problem:
        return _error(problem)
    if not is_nonempty_str(body.get("list_name")):
        return _error("list_name: required")
    list_id = str(uuid.uuid4())
    item = {"list_id": list_id, "list_name": body["list_name"], "created_at": iso(time.time()), "contacts": []}
    sb.state.lists[list_id] = item
    return JSONResponse({k: item[k] for k in ("list_id", "list_name", "created_at")}), None


async def list_get(sb: Sandbox, request: Request, body: Any) -> tuple[Response, Outcome]:
    item = sb.state.lists.get(request.path_params["list_id"])
    if item is None:
        return _error("list not found", 404)
    return JSONResponse(_list_view(item)), None


async def list_rename(sb: Sandbox, request: Request, body: dict[str, Any]) -> tuple[Response, Outcome]:
    item = sb.state.lists.get(request.path_params["list_id"])
    if item is None:
        return _error("list not found", 404)
    problem = _list_fields(body, frozenset({"list_name"}))
    if problem:
        return _error(problem)
    if not is_nonempty_str(body.get("list_name")):
        return _error("list_name: required")
    item["list_name"] = body["list_name"]
    return Response(status_code=200), None


async def list_delete(sb: Sandbox, request: Request, body: Any) -> tuple[Response, Outcome]:
    if sb.state.lists.pop(request.path_params["list_id"], None) is None:
        return _error("list not found", 404)
    return Response(status_code=200), None


async def list_contacts(sb: Sandbox, request: Request, body: dict[str, Any]) -> tuple[Response, Outcome]:
    """Append contacts: a row is accepted when at least one of its ``phone`` values converts to E.164."""
    item = sb.state.lists.get(request.path_params["list_id"])
    if item is None:
        return _error("list not found", 404)
    problem = _list_fields(body, frozenset({"fields", "values", "region"}))
    if problem:
        return _error(problem)
    fields, values, region = body.get("fields"), body.get("values"), body.get("region", "US")
    if not isinstance(fields, list) or not fields:
        return _error("fields: required, a non-empty list of field types")
    for i, field in enumerate(fields):
        if field not in CONTACT_FIELDS:
            return _error(f"fields[{i}]: unknown field type {field!r}")
    if "phone" not in fields:
        return _error("fields: must include 'phone'")
    if not isinstance(values, list):
        return _error("values: required, a list of rows")
    if region is None:
        region = "US"
    if not isinstance(region, str) or region.upper() not in CALLING_CODES:
        return _error(f"region: unknown ISO country code {region!r}")
    accepted = 0
    rejected: list[dict[str, Any]] = []
    for row_no, row in enumerate(values):
        if not isinstance(row, list) or len(row) != len(fields):
            rejected.append({"row": row_no, "reason": f"expected a list of {len(fields)} values"})
            continue
        phones = [to_e164(str(v), region) for f, v in zip(fields, row) if f == "phone" and v not in (None, "")]
        valid = [p for p in phones if p]
        if not valid:
            rejected.append({"row": row_no, "reason": "no phone value converts to E.164"})
            continue
        item["contacts"].append({**{f: v for f, v in zip(fields, row) if f != "phone"}, "phones": valid})
        accepted += 1
    return JSONResponse({"accepted_count": accepted, "rejected": rejected}), None


def _fixtures(kind: str) -> Any:
    async def handler(sb: Sandbox, request: Request, body: Any) -> tuple[Response, Outcome]:
        items = sb.state.config.fixtures[kind]
        flag = request.query_params.get("api_allowed")
        if flag in ("true", "false"):
            items = [i for i in items if bool(i.get("api_allowed", True)) == (flag == "true")]
        return JSONResponse(items), None

    handler.__name__ = f"list_{kind}"
    return handler


def routes(sb: Sandbox) -> list[Route]:
    d = DropCowboy()
    return [
        Route("/v1/sms", endpoint(sb, d, sms), methods=["POST"]),
        Route("/v1/rvm", endpoint(sb, d, rvm), methods=["POST"]),
        Route("/v1/list", endpoint(sb, d, list_create), methods=["POST"]),
        Route("/v1/list/{list_id}", endpoint(sb, d, list_get, body=False), methods=["GET"]),
        Route("/v1/list/{list_id}", endpoint(sb, d, list_rename), methods=["POST"]),
        Route("/v1/list/{list_id}", endpoint(sb, d, list_delete, body=False), methods=["DELETE"]),
        Route("/v1/list/{list_id}/contacts", endpoint(sb, d, list_contacts), methods=["POST"]),
        Route("/v1/pool", endpoint(sb, d, _fixtures("pools"), body=False), methods=["GET"]),
        Route("/v1/brand", endpoint(sb, d, _fixtures("brands"), body=False), methods=["GET"]),
        Route("/v1/recording", endpoint(sb, d, _fixtures("recordings"), body=False), methods=["GET"]),
        Route("/v1/media", endpoint(sb, d, _fixtures("media"), body=False), methods=["GET"]),
    ]
