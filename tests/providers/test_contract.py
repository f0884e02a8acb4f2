"""One contract suite, run against every adapter talking HTTP to the real sandbox process, over each
transport the workers may use (the lean keep-alive one and httpx's own).

The sandbox is an independent reading of the provider documents (docs/sandbox.md), so a case
that passes here means the adapter and that reading agree on the wire and on the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import httpx
import pytest

from dispatcher.providers import PROVIDERS
from dispatcher.providers.base import Outcome, ProviderConfig, SendResult, SmsRequest
from dispatcher.providers.http import HttpAdapter, RetryPolicy
from dispatcher.runtime import http_client
from dispatcher.settings import Settings

NUMBER = "+14155550147"
FAST = RetryPolicy(initial_wait=0.05, max_wait=0.2)


@dataclass(frozen=True)
class Setup:
    """How one adapter is pointed at the sandbox."""

    name: str
    base_url: Callable[[str], str]
    credentials: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)
    throttles_with_429: bool = True  # Skycore answers E113 inside HTTP 200, without Retry-After
    echoes_message_id: str | None = None  # the request field that carries our message id

    def wrong_credentials(self) -> dict[str, str]:
        return {key: value + "-wrong" for key, value in self.credentials.items()}


SETUPS = {
    "dropcowboy": Setup("dropcowboy", lambda url: f"{url}/v1", {"team_id": "team-1", "secret": "secret-1"},
                        {"caller_id": "+15557778888", "pool_id": "text"}, echoes_message_id="foreign_id"),
    "dripcel": Setup("dripcel", lambda url: url, {"api_key": "dripcel-key"}, {"delivery_method": "standard"}),
    "skycore": Setup("skycore", lambda url: f"{url}/skycore/api", {"api_key": "skycore-key"}, {"from": "60856"},
                     throttles_with_429=False),
    "fonedynamics": Setup("fonedynamics", lambda url: url, {"account_sid": "AC-1", "auth_token": "token-1"},
                          {"property_sid": "PS-1", "from": "Acme"}, echoes_message_id="ExternalId"),
}
assert set(SETUPS) == set(PROVIDERS)


@pytest.fixture(scope="module", params=["keepalive", "httpx"])
def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """The client the workers build (``runtime.http_client``), over each transport it may choose."""
    with http_client(Settings(http_transport=request.param)) as shared:
        yield shared


@pytest.fixture(params=sorted(SETUPS))
def setup(request: pytest.FixtureRequest, sandbox: Any) -> Setup:
    chosen = SETUPS[request.param]
    sandbox.configure(credentials={chosen.name: chosen.credentials}, receipts={"enabled": False})
    return chosen


@pytest.fixture()
def make_adapter(setup: Setup, sandbox: Any, client: httpx.Client) -> Callable[..., HttpAdapter]:
    def make(*, credentials: dict[str, str] | None = None, policy: RetryPolicy = FAST,
             callback_url: str | None = None, options: dict[str, Any] | None = None) -> HttpAdapter:
        config = ProviderConfig(base_url=setup.base_url(sandbox.url), credentials=credentials or setup.credentials,
                                options=setup.options if options is None else options, callback_url=callback_url)
        return PROVIDERS[setup.name](config, client, retry=policy)  # type: ignore[call-arg, return-value]

    return make


def message(n: int = 1, to: str = NUMBER) -> SmsRequest:
    return SmsRequest(message_id=f"msg-{n}", to=to, region="US", text=f"Contract test message {n}")


def sent_bodies(sandbox: Any, setup: Setup) -> list[Any]:
    return [entry["json"] for entry in sandbox.requests(setup.name)]


def test_accepted(setup, make_adapter, sandbox):
    result = make_adapter().send(message(), timeout=5)
    assert result.outcome is Outcome.SENT, result
    assert result.provider_message_id and (result.status_code, result.tries) == (200, 1)
    assert result.duration > 0
    (logged,) = sandbox.requests(setup.name)
    assert logged["status"] == 200
    if setup.echoes_message_id:
        assert logged["json"][setup.echoes_message_id] == "msg-1"


def test_accepted_with_a_callback_url(setup, make_adapter):
    adapter = make_adapter(callback_url="http://127.0.0.1:9/webhooks/x?token=t")
    assert adapter.send(message(), timeout=5).outcome is Outcome.SENT


def test_invalid_number_is_rejected(setup, make_adapter, sandbox):
    sandbox.configure(numbers={NUMBER: "invalid"})
    result = make_adapter().send(message(), timeout=5)
    assert result.outcome is Outcome.REJECTED, result
    assert result.detail and result.tries == 1


@pytest.mark.parametrize("behaviour", ["blacklisted", "optout"])
def test_blacklisted_or_opted_out_number_is_suppressed(setup, make_adapter, sandbox, behaviour):
    sandbox.configure(numbers={NUMBER: behaviour})
    result = make_adapter().send(message(), timeout=5)
    assert result.outcome is Outcome.SUPPRESSED, result
    assert result.detail


def test_throttled_with_retry_after(setup, make_adapter, sandbox):
    sandbox.configure(throttle_rps={setup.name: 0.5})  # one request, then one every 2 s
    no_wait = RetryPolicy(wait_budget=1.0)  # the 2 s Retry-After is beyond it: no transport retry
    adapter = make_adapter(policy=no_wait)
    assert adapter.send(message(1), timeout=5).outcome is Outcome.SENT
    result = adapter.send(message(2), timeout=5)
    assert result.outcome is Outcome.THROTTLED, result
    assert result.tries == 1
    if setup.throttles_with_429:
        assert result.status_code == 429 and result.retry_after == 2.0
    else:
        assert result.provider_code == "E113"


def test_throttled_then_accepted_once_retry_after_has_passed(setup, make_adapter, sandbox):
    if not setup.throttles_with_429:
        pytest.skip("Skycore's throttle answer is inside HTTP 200: the engine backs off, not the transport")
    sandbox.configure(throttle_rps={setup.name: 1.0})
    adapter = make_adapter()
    assert adapter.send(message(1), timeout=5).outcome is Outcome.SENT
    result = adapter.send(message(2), timeout=5)
    assert (result.outcome, result.tries) == (Outcome.SENT, 2), result
    assert result.duration >= 0.9
    assert [entry["status"] for entry in sandbox.requests(setup.name)] == [200, 429, 200]


def test_5xx_then_success(setup, make_adapter, sandbox):
    sandbox.configure(fail_next={"count": 1, "status": 503, "provider": setup.name})
    result = make_adapter().send(message(), timeout=5)
    assert (result.outcome, result.tries) == (Outcome.SENT, 2), result
    assert [entry["status"] for entry in sandbox.requests(setup.name)] == [503, 200]


def test_5xx_until_retries_run_out_is_retryable(setup, make_adapter, sandbox):
    sandbox.configure(fail_next={"count": 5, "status": 502, "provider": setup.name})
    result = make_adapter().send(message(), timeout=5)
    assert (result.outcome, result.status_code, result.tries) == (Outcome.RETRYABLE, 502, 3), result


def test_refused_credentials_are_auth(setup, make_adapter):
    result = make_adapter(credentials=setup.wrong_credentials()).send(message(), timeout=5)
    assert result.outcome is Outcome.AUTH, result


def test_billing_failure(setup, make_adapter, sandbox):
    sandbox.configure(billing_failure=True)
    result = make_adapter().send(message(), timeout=5)
    assert result.outcome is Outcome.BILLING, result


def test_timeout_is_unknown_and_not_retried(setup, make_adapter, sandbox):
    sandbox.configure(numbers={NUMBER: "slow"}, slow_ms=2000)
    result = make_adapter().send(message(), timeout=0.5)
    assert (result.outcome, result.status_code, result.tries) == (Outcome.UNKNOWN, None, 1), result
    assert 0.4 <= result.duration < 2


def test_unreachable_provider_is_retryable(setup, make_adapter):
    adapter = make_adapter()
    adapter.base_url = setup.base_url("http://127.0.0.1:9")  # discard port: nothing listens
    result = adapter.send(message(), timeout=2)
    assert (result.outcome, result.status_code, result.tries) == (Outcome.RETRYABLE, None, 3), result


def test_each_send_reaches_the_sandbox_once(setup, make_adapter, sandbox):
    adapter = make_adapter()
    results = [adapter.send(message(n, to=f"+1415555{n:04d}"), timeout=5) for n in range(1, 4)]
    assert all(result.outcome is Outcome.SENT for result in results)
    assert len(sandbox.requests(setup.name)) == 3
    assert sandbox.http.get("/_sandbox/stats").json()["duplicates"] == 0


def test_check_passes_with_good_settings(setup, make_adapter):
    assert make_adapter().check(timeout=5) == []


def test_check_reports_refused_credentials_and_unknown_pool(setup, make_adapter):
    if setup.name != "dropcowboy":
        pytest.skip(f"{setup.name} documents no read-only endpoint: check() has nothing to ask")
    problems = make_adapter(credentials=setup.wrong_credentials()).check(timeout=5)
    assert problems == ["credentials refused: GET /pool answered HTTP 401"]
    problems = make_adapter(options={**setup.options, "pool_id": "no-such-pool"}).check(timeout=5)
    assert len(problems) == 1 and "'no-such-pool'" in problems[0]


def test_drop_cowboy_rvm_is_accepted(setup, make_adapter):
    if setup.name != "dropcowboy":
        pytest.skip("ringless voicemail is Drop Cowboy's alone")
    from dispatcher.providers.dropcowboy import RvmRequest

    adapter = make_adapter()
    rvm = RvmRequest(message_id="msg-rvm", to=NUMBER, brand_id="sandbox-brand", recording_id="sandbox-recording",
                     postal_code="94107")
    result: SendResult = adapter.send_rvm(rvm, timeout=5)  # type: ignore[attr-defined]
    assert result.outcome is Outcome.SENT, result


def test_dripcel_bulk_email_is_accepted(setup, make_adapter):
    if setup.name != "dripcel":
        pytest.skip("bulk email is Dripcel's alone")
    adapter = make_adapter()
    result = adapter.send_email_bulk(sender="news@example.com", template_id="t-1",  # type: ignore[attr-defined]
                                     destinations=["a@example.com"], filter_non_contacts=True, timeout=5)
    assert result.outcome is Outcome.SENT, result
