"""Drop Cowboy: SMS (``POST {base}/sms``) and ringless voicemail (``POST {base}/rvm``).

Credentials travel twice, as the documents ask: headers ``x-team-id``/``x-secret`` and body
``team_id``/``secret``. ``sms_body`` is limited to 160 characters and never concatenated.
``foreign_id`` carries our message id so webhooks can be matched; it does not deduplicate.

An HTTP 200 means accepted (``drop_id``), unless the body reports ``accepted_count: 0``
with ``rejected`` reasons. 400 is a validation failure; reasons that mention opt-out,
blacklist or do-not-contact are SUPPRESSED.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from dispatcher.providers.base import NumberFormat, Outcome, SendResult, SmsRequest
from dispatcher.providers.http import (
    HttpAdapter,
    Reply,
    is_e164,
    local_result,
    option_text,
    outcome_from_status,
    outcome_from_text,
)

_AUDIO_SOURCES = ("recording_id", "voice_id", "audio_url")
SMS_MAX_CHARS = 160


@dataclass(frozen=True, slots=True, kw_only=True)
class RvmRequest:
    """One ringless voicemail. Exactly one audio source: ``recording_id``, ``voice_id`` with
    ``tts_body``, or ``audio_url``; raises ``ValueError`` otherwise. Numbers in E.164."""

    message_id: str
    to: str
    brand_id: str
    recording_id: str | None = None
    voice_id: str | None = None
    tts_body: str | None = None
    audio_url: str | None = None
    forwarding_number: str | None = None
    phone_ivr_id: str | None = None
    pool_id: str | None = None
    postal_code: str | None = None

    def __post_init__(self) -> None:
        sources = [name for name in _AUDIO_SOURCES if getattr(self, name)]
        if len(sources) != 1:
            raise ValueError(f"exactly one of recording_id, voice_id, audio_url is required, got {sources or 'none'}")
        if bool(self.voice_id) != bool(self.tts_body):
            raise ValueError("voice_id and tts_body go together")


class DropCowboy(HttpAdapter):
    name: ClassVar[str] = "dropcowboy"
    default_base_url: ClassVar[str] = "https://api.dropcowboy.com/v1"
    number_format: ClassVar[NumberFormat] = NumberFormat.E164
    concatenates: ClassVar[bool] = False
    max_chars: ClassVar[int | None] = SMS_MAX_CHARS
    required_credentials: ClassVar[tuple[str, ...]] = ("team_id", "secret")
    required_options: ClassVar[tuple[str, ...]] = ("caller_id", "pool_id")
    # brand_id and one audio source are for RVM; check() confirms brand_id/recording_id exist.
    optional_options: ClassVar[tuple[str, ...]] = ("brand_id", *_AUDIO_SOURCES, "forwarding_number", "phone_ivr_id")
    channel_options: ClassVar[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
        "rvm": (("brand_id",), (*_AUDIO_SOURCES, "forwarding_number", "phone_ivr_id", "pool_id")),
    }

    @classmethod
    def _option_problems(cls, options: Mapping[str, Any], *, channel: str = "sms") -> list[str]:
        problems: list[str] = []
        for key in ("caller_id", "forwarding_number"):
            value = option_text(options, key)
            if value is not None and not is_e164(value):
                problems.append(f"provider.options.{key} must be an E.164 number like +15557778888, got {value!r}")
        sources = [key for key in _AUDIO_SOURCES if option_text(options, key) is not None]
        if len(sources) > 1:
            problems.append(f"provider.options: give at most one RVM audio source, got {', '.join(sources)}")
        if channel == "rvm" and not sources:
            problems.append("provider.options: ringless voicemail needs one audio source: recording_id, voice_id "
                            "(the message is read out as tts_body) or audio_url")
        return problems

    def send(self, sms: SmsRequest, *, timeout: float) -> SendResult:
        """Send one SMS; refuses locally (tries=0) without recorded opt-in or above 160 characters."""
        if not sms.opt_in:
            return local_result(Outcome.REJECTED, "dropcowboy requires opt_in=true and no consent is recorded")
        if len(sms.text) > SMS_MAX_CHARS:
            return local_result(Outcome.REJECTED,
                                f"sms_body is {len(sms.text)} characters; dropcowboy accepts {SMS_MAX_CHARS}")
        options = self.config.options
        payload: dict[str, Any] = {
            **self._body_credentials(),
            "phone_number": sms.to,
            "caller_id": option_text(options, "caller_id"),
            "pool_id": option_text(options, "pool_id"),
            "sms_body": sms.text,
            "opt_in": True,
            "foreign_id": sms.message_id,
        }
        return self._post("sms", payload, foreign_id=sms.message_id, to=sms.to, timeout=timeout)

    def send_rvm(self, rvm: RvmRequest, *, timeout: float) -> SendResult:
        """Send one ringless voicemail; classified like an SMS."""
        optional = ("recording_id", "voice_id", "tts_body", "audio_url", "forwarding_number", "phone_ivr_id",
                    "pool_id", "postal_code")
        payload: dict[str, Any] = {
            **self._body_credentials(),
            "brand_id": rvm.brand_id,
            "foreign_id": rvm.message_id,
            "phone_number": rvm.to,
            **{key: getattr(rvm, key) for key in optional if getattr(rvm, key)},
        }
        return self._post("rvm", payload, foreign_id=rvm.message_id, to=rvm.to, timeout=timeout)

    def check(self, *, timeout: float) -> list[str]:
        """Confirm the credentials with ``GET /pool`` and that ``pool_id`` exists; likewise
        ``brand_id`` (``GET /brand``) and ``recording_id`` (``GET /recording``) when set."""
        options = self.config.options
        wanted = [("pool", option_text(options, "pool_id"))]
        wanted += [(kind, option_text(options, f"{kind}_id")) for kind in ("brand", "recording")
                   if option_text(options, f"{kind}_id")]
        problems: list[str] = []
        for kind, ident in wanted:
            answer = self._request("GET", self._url(kind), headers=self._headers(), timeout=timeout)
            if isinstance(answer, SendResult):
                unanswered = f"no answer within {timeout:g}s" if answer.outcome is Outcome.UNKNOWN else answer.detail
                problems.append(f"GET /{kind}: {unanswered}")
                continue
            if answer.status_code in (401, 403):
                problems.append(f"credentials refused: GET /{kind} answered HTTP {answer.status_code}")
                break
            if answer.status_code != 200:
                problems.append(f"GET /{kind} answered HTTP {answer.status_code}: {answer.excerpt()}")
                continue
            known = _ids(answer.body, kind)
            if ident is not None and ident not in known:
                problems.append(f"provider.options.{kind}_id {ident!r} is not one of the account's {kind}s "
                                f"({', '.join(sorted(known)) or 'none'})")
        return problems

    def _post(self, path: str, payload: dict[str, Any], *, foreign_id: str, to: str, timeout: float) -> SendResult:
        if self.config.callback_url:
            payload["callback_url"] = self.config.callback_url
        answer = self._request("POST", self._url(path), json=payload, headers=self._headers(), to=to, timeout=timeout)
        return answer if isinstance(answer, SendResult) else _classify(answer, foreign_id=foreign_id)

    def _headers(self) -> dict[str, str]:
        creds = self.config.credentials
        return {"x-team-id": creds["team_id"], "x-secret": creds["secret"]}

    def _body_credentials(self) -> dict[str, str]:
        creds = self.config.credentials
        return {"team_id": creds["team_id"], "secret": creds["secret"]}


def _classify(reply: Reply, *, foreign_id: str) -> SendResult:
    reason = _reason(reply)
    if 200 <= reply.status_code < 300:
        if reply.get("accepted_count") == 0:
            return reply.result(outcome_from_text(reason), detail=reason or "no recipient accepted")
        drop_id = reply.get("drop_id") or reply.get("foreign_id") or foreign_id
        return reply.result(Outcome.SENT, provider_message_id=str(drop_id), detail=reply.get("status"))
    if reply.status_code in (400, 422):
        return reply.result(outcome_from_text(reason), detail=reason or reply.excerpt())
    return reply.result(outcome_from_status(reply.status_code), detail=reason or reply.excerpt())


def _reason(reply: Reply) -> str:
    """The provider's words: ``error`` and the ``rejected[].reason`` entries."""
    parts = []
    if isinstance(reply.get("error"), str):
        parts.append(reply.get("error"))
    rejected = reply.get("rejected")
    if isinstance(rejected, list):
        parts += [str(item["reason"]) for item in rejected if isinstance(item, dict) and item.get("reason")]
    return "; ".join(parts)


def _ids(body: Any, kind: str) -> set[str]:
    """Identifiers in a listing: an array of ids or of objects with ``<kind>_id``/``id``,
    possibly wrapped in an object."""
    if isinstance(body, dict):
        body = next((value for value in body.values() if isinstance(value, list)), [])
    found: set[str] = set()
    for item in body if isinstance(body, list) else []:
        if isinstance(item, (str, int)):
            found.add(str(item))
        elif isinstance(item, dict):
            found.update(str(item[key]) for key in (f"{kind}_id", "id", "_id") if item.get(key) is not None)
    return found
