"""Drop Cowboy adapter against recorded answers."""

from __future__ import annotations

import httpx
import pytest

from dispatcher.errors import InputError
from dispatcher.providers.base import Outcome, ProviderConfig
from dispatcher.providers.dropcowboy import DropCowboy, RvmRequest

OPTIONS = {"caller_id": "+15557778888", "pool_id": "text"}


@pytest.fixture()
def adapter(mock_client, policy):
    def make(*answers, options=OPTIONS, callback_url=None, base_url="https://dc.test/v1"):
        client, script = mock_client(*answers)
        config = ProviderConfig(base_url=base_url, credentials={"team_id": "team-1", "secret": "s3cret"},
                                options=options, callback_url=callback_url)
        return DropCowboy(config, client, retry=policy), script

    return make


def test_sms_request_carries_credentials_in_headers_and_body(adapter, make_sms):
    provider, script = adapter("dropcowboy/sms_queued")
    provider.send(make_sms(), timeout=5)
    sent = script.last
    assert sent.method == "POST" and str(sent.url) == "https://dc.test/v1/sms"
    assert sent.headers["x-team-id"] == "team-1" and sent.headers["x-secret"] == "s3cret"
    assert script.last_json() == {
        "team_id": "team-1", "secret": "s3cret", "phone_number": "+14155550147", "caller_id": "+15557778888",
        "pool_id": "text", "sms_body": "Hello world", "opt_in": True, "foreign_id": "msg-1",
    }


def test_callback_url_is_sent_when_configured(adapter, make_sms):
    provider, script = adapter("dropcowboy/sms_queued", callback_url="https://hooks.test/webhooks/dropcowboy")
    provider.send(make_sms(), timeout=5)
    assert script.last_json()["callback_url"] == "https://hooks.test/webhooks/dropcowboy"


def test_queued_is_sent_with_the_drop_id(adapter, make_sms):
    provider, _ = adapter("dropcowboy/sms_queued")
    result = provider.send(make_sms(), timeout=5)
    assert result.outcome is Outcome.SENT
    assert result.provider_message_id == "5f1c2d3e-0000-4000-8000-00000000d001"
    assert (result.status_code, result.tries) == (200, 1)


def test_queued_without_drop_id_falls_back_to_our_foreign_id(adapter, make_sms):
    provider, _ = adapter("dropcowboy/sms_queued_without_drop_id")
    result = provider.send(make_sms(message_id="msg-42"), timeout=5)
    assert (result.outcome, result.provider_message_id) == (Outcome.SENT, "msg-42")


def test_200_with_nothing_accepted_is_a_body_level_failure(adapter, make_sms):
    provider, _ = adapter("dropcowboy/sms_all_rejected")
    result = provider.send(make_sms(), timeout=5)
    assert result.outcome is Outcome.SUPPRESSED
    assert "do not contact" in (result.detail or "")


def test_invalid_number_is_rejected_with_the_reason(adapter, make_sms):
    provider, _ = adapter("dropcowboy/sms_invalid_number")
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.status_code) == (Outcome.REJECTED, 400)
    assert "phone_number" in (result.detail or "")


def test_blacklisted_number_is_suppressed(adapter, make_sms):
    provider, _ = adapter("dropcowboy/sms_blacklisted")
    assert provider.send(make_sms(), timeout=5).outcome is Outcome.SUPPRESSED


def test_bad_credentials_are_auth(adapter, make_sms):
    provider, _ = adapter("dropcowboy/unauthorized")
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.status_code) == (Outcome.AUTH, 401)


def test_throttled_after_retries_keeps_retry_after(adapter, make_sms, sleeps):
    provider, script = adapter("dropcowboy/throttled")
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.retry_after, result.tries) == (Outcome.THROTTLED, 2.0, 3)
    assert sleeps == [2.0, 2.0]


def test_throttled_then_queued(adapter, make_sms):
    provider, _ = adapter("dropcowboy/throttled", "dropcowboy/sms_queued")
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.tries) == (Outcome.SENT, 2)


def test_no_recorded_opt_in_is_refused_without_a_request(adapter, make_sms):
    provider, script = adapter("dropcowboy/sms_queued")
    result = provider.send(make_sms(opt_in=False), timeout=5)
    assert (result.outcome, result.tries) == (Outcome.REJECTED, 0)
    assert script.requests == []


def test_body_over_160_characters_is_refused_without_a_request(adapter, make_sms):
    provider, script = adapter("dropcowboy/sms_queued")
    assert provider.send(make_sms(text="x" * 160), timeout=5).outcome is Outcome.SENT
    result = provider.send(make_sms(text="x" * 161), timeout=5)
    assert (result.outcome, result.tries) == (Outcome.REJECTED, 0)
    assert "161" in (result.detail or "") and len(script.requests) == 1


def test_read_timeout_is_unknown(adapter, make_sms):
    provider, script = adapter(httpx.ReadTimeout("timed out"))
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.tries) == (Outcome.UNKNOWN, 1)


def test_rvm_with_a_recording(adapter):
    provider, script = adapter("dropcowboy/rvm_accepted")
    rvm = RvmRequest(message_id="msg-9", to="+14155550147", brand_id="brand-1", recording_id="rec-1",
                     postal_code="94107")
    result = provider.send_rvm(rvm, timeout=5)
    assert str(script.last.url) == "https://dc.test/v1/rvm"
    assert script.last_json() == {"team_id": "team-1", "secret": "s3cret", "brand_id": "brand-1",
                                  "foreign_id": "msg-9", "phone_number": "+14155550147",
                                  "recording_id": "rec-1", "postal_code": "94107"}
    assert (result.outcome, result.provider_message_id) == (Outcome.SENT, "5f1c2d3e-0000-4000-8000-00000000r001")


def test_rvm_with_text_to_speech(adapter):
    provider, script = adapter("dropcowboy/rvm_accepted")
    provider.send_rvm(RvmRequest(message_id="m", to="+14155550147", brand_id="b", voice_id="v", tts_body="Hi"),
                      timeout=5)
    assert script.last_json()["voice_id"] == "v" and script.last_json()["tts_body"] == "Hi"


@pytest.mark.parametrize("sources", [{}, {"recording_id": "r", "audio_url": "https://a.test/x.mp3"},
                                     {"voice_id": "v"}, {"recording_id": "r", "tts_body": "Hi"}])
def test_rvm_needs_exactly_one_audio_source(sources):
    with pytest.raises(ValueError):
        RvmRequest(message_id="m", to="+14155550147", brand_id="b", **sources)


def test_check_passes_when_pool_exists(adapter):
    provider, script = adapter("dropcowboy/pool_list")
    assert provider.check(timeout=5) == []
    assert [(r.method, r.url.path) for r in script.requests] == [("GET", "/v1/pool")]
    assert script.last.headers["x-team-id"] == "team-1"


def test_check_reports_an_unknown_pool(adapter):
    provider, _ = adapter("dropcowboy/pool_list", options={**OPTIONS, "pool_id": "nope"})
    problems = provider.check(timeout=5)
    assert len(problems) == 1 and "'nope'" in problems[0] and "text" in problems[0]


def test_check_reports_refused_credentials_once(adapter):
    provider, script = adapter("dropcowboy/unauthorized", options={**OPTIONS, "brand_id": "brand-1"})
    problems = provider.check(timeout=5)
    assert problems == ["credentials refused: GET /pool answered HTTP 401"]
    assert len(script.requests) == 1


def test_check_looks_up_brand_and_recording_when_named(adapter):
    provider, script = adapter("dropcowboy/pool_list", "dropcowboy/brand_list", "dropcowboy/recording_list",
                               options={**OPTIONS, "brand_id": "brand-1", "recording_id": "rec-2"})
    problems = provider.check(timeout=5)
    assert [r.url.path for r in script.requests] == ["/v1/pool", "/v1/brand", "/v1/recording"]
    assert len(problems) == 1 and "recording_id 'rec-2'" in problems[0]


def test_check_reports_an_unreachable_provider(adapter):
    provider, _ = adapter(httpx.ConnectError("refused"))
    problems = provider.check(timeout=5)
    assert len(problems) == 1 and problems[0].startswith("GET /pool: could not reach")


def test_validate_options():
    assert DropCowboy.validate_options(OPTIONS) == []
    assert DropCowboy.validate_options({"caller_id": "+15557778888"}) == [
        "provider.options.pool_id is required for dropcowboy"]
    assert DropCowboy.validate_options({**OPTIONS, "caller_id": "5557778888"}) == [
        "provider.options.caller_id must be an E.164 number like +15557778888, got '5557778888'"]
    problems = DropCowboy.validate_options({**OPTIONS, "recording_id": "r", "audio_url": "https://a.test/x.mp3"})
    assert problems == ["provider.options: give at most one RVM audio source, got recording_id, audio_url"]


def test_constructor_refuses_unknown_options_and_missing_credentials(mock_client):
    client, _ = mock_client()
    with pytest.raises(InputError, match="pool_idd is not an option"):
        DropCowboy(ProviderConfig("https://dc.test/v1", {"team_id": "t", "secret": "s"}, {**OPTIONS, "pool_idd": 1}),
                   client)
    with pytest.raises(InputError, match="secret"):
        DropCowboy(ProviderConfig("https://dc.test/v1", {"team_id": "t"}, OPTIONS), client)


def test_empty_base_url_uses_the_public_default(adapter, make_sms):
    provider, script = adapter("dropcowboy/sms_queued", base_url="")
    provider.send(make_sms(), timeout=5)
    assert str(script.last.url) == "https://api.dropcowboy.com/v1/sms"


def test_check_reports_a_silent_provider_plainly(adapter):
    provider, _ = adapter(httpx.ReadTimeout("timed out"))
    assert provider.check(timeout=2) == ["GET /pool: no answer within 2s"]
