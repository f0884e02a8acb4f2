"""The shared transport: retries, Retry-After, exception mapping, timeouts."""

from __future__ import annotations

from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from dispatcher.providers.base import Outcome, SendResult
from dispatcher.providers.http import Reply, RetryPolicy, excerpt, outcome_from_text, request, retry_after

URL = "https://provider.test/send"


def ok() -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


def status(code: int, **headers: str) -> httpx.Response:
    return httpx.Response(code, headers=headers, json={"error": f"status {code}"})


def send(client: httpx.Client, policy: RetryPolicy, timeout: float = 5.0) -> Reply | SendResult:
    return request(client, "POST", URL, json={"a": 1}, timeout=timeout, policy=policy, label="test")


def test_5xx_then_success_is_retried_once_with_backoff(mock_client, policy, sleeps):
    client, script = mock_client(status(503), ok())
    reply = send(client, policy)
    assert isinstance(reply, Reply)
    assert (reply.status_code, reply.tries) == (200, 2)
    assert len(script.requests) == 2 and len(sleeps) == 1
    assert 0 < sleeps[0] <= policy.max_wait


def test_5xx_exhausted_after_three_tries_is_retryable(mock_client, policy, sleeps):
    client, script = mock_client(status(502))
    result = send(client, policy)
    assert isinstance(result, SendResult)
    assert result.outcome is Outcome.RETRYABLE
    assert (result.status_code, result.tries, len(script.requests), len(sleeps)) == (502, 3, 3, 2)
    assert "502" in (result.detail or "")


def test_backoff_grows_and_stays_within_max_wait(mock_client, sleeps):
    policy = RetryPolicy(attempts=5, initial_wait=0.5, max_wait=1.5, wait_budget=100, sleep=sleeps)
    client, _ = mock_client(status(500))
    send(client, policy)
    assert len(sleeps) == 4
    assert 0.5 <= sleeps[0] <= 1.0
    assert all(wait <= 1.5 for wait in sleeps)


def test_429_honours_retry_after_then_succeeds(mock_client, policy, sleeps):
    client, _ = mock_client(status(429, **{"Retry-After": "2"}), ok())
    reply = send(client, policy)
    assert isinstance(reply, Reply) and reply.tries == 2
    assert sleeps == [2.0]


def test_429_exhausted_is_throttled_with_retry_after(mock_client, policy, sleeps):
    client, script = mock_client(status(429, **{"Retry-After": "1"}))
    result = send(client, policy)
    assert isinstance(result, SendResult)
    assert (result.outcome, result.retry_after, result.tries) == (Outcome.THROTTLED, 1.0, 3)
    assert sleeps == [1.0, 1.0]


def test_retry_after_beyond_budget_stops_retrying_at_once(mock_client, policy, sleeps):
    client, script = mock_client(status(429, **{"Retry-After": "30"}), ok())
    result = send(client, policy)
    assert isinstance(result, SendResult)
    assert (result.outcome, result.retry_after, result.tries) == (Outcome.THROTTLED, 30.0, 1)
    assert sleeps == [] and len(script.requests) == 1


def test_total_sleep_never_exceeds_the_budget(mock_client, sleeps):
    policy = RetryPolicy(attempts=10, wait_budget=5.0, sleep=sleeps)
    client, _ = mock_client(status(503, **{"Retry-After": "2"}))
    result = send(client, policy)
    assert isinstance(result, SendResult) and result.outcome is Outcome.RETRYABLE
    assert sleeps == [2.0, 2.0] and result.tries == 3
    assert result.retry_after == 2.0


def test_retry_after_as_http_date():
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    seconds = retry_after(httpx.Headers({"Retry-After": format_datetime(when, usegmt=True)}))
    assert seconds is not None and 27 <= seconds <= 30


@pytest.mark.parametrize("value", ["soon", "", "nan"])
def test_unreadable_retry_after_is_ignored(value):
    assert retry_after(httpx.Headers({"Retry-After": value})) is None


def test_negative_retry_after_means_now():
    assert retry_after(httpx.Headers({"Retry-After": "-3"})) == 0.0


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow handshake"),
                                 httpx.PoolTimeout("pool full")])
def test_failures_before_sending_are_retried_then_retryable(mock_client, policy, sleeps, exc):
    client, script = mock_client(exc)
    result = send(client, policy)
    assert isinstance(result, SendResult)
    assert (result.outcome, result.status_code, result.tries) == (Outcome.RETRYABLE, None, 3)
    assert len(sleeps) == 2


def test_connect_error_then_success(mock_client, policy):
    client, _ = mock_client(httpx.ConnectError("refused"), ok())
    reply = send(client, policy)
    assert isinstance(reply, Reply) and reply.tries == 2


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("no answer"), httpx.WriteTimeout("stuck"),
                                 httpx.RemoteProtocolError("Server disconnected without sending a response."),
                                 httpx.ReadError("connection reset")])
def test_failures_after_sending_are_unknown_and_never_retried(mock_client, policy, sleeps, exc):
    client, script = mock_client(exc, ok())
    result = send(client, policy)
    assert isinstance(result, SendResult)
    assert (result.outcome, result.tries) == (Outcome.UNKNOWN, 1)
    assert len(script.requests) == 1 and sleeps == []


def test_read_timeout_detail_names_the_timeout(mock_client, policy):
    client, _ = mock_client(httpx.ReadTimeout("timed out"))
    result = send(client, policy, timeout=2.5)
    assert isinstance(result, SendResult)
    assert "2.5s" in (result.detail or "")


def test_unsendable_request_is_rejected_without_retry(policy):
    with httpx.Client() as client:
        result = request(client, "POST", "ftp://provider.test/send", timeout=1, policy=policy)
    assert isinstance(result, SendResult)
    assert (result.outcome, result.tries) == (Outcome.REJECTED, 1)


def test_the_per_send_timeout_applies_to_each_request(mock_client, policy):
    client, script = mock_client(status(503), ok())
    send(client, policy, timeout=1.5)
    for sent in script.requests:
        assert sent.extensions["timeout"] == {"connect": 1.5, "read": 1.5, "write": 1.5, "pool": 1.5}


def test_real_read_timeout_against_a_silent_server_is_unknown(policy):
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
    thread.start()
    port = server.getsockname()[1]
    try:
        with httpx.Client() as client:
            result = request(client, "POST", f"http://127.0.0.1:{port}/", json={}, timeout=0.3, policy=policy)
    finally:
        for conn in accepted:
            conn.close()
        server.close()
    assert isinstance(result, SendResult)
    assert (result.outcome, result.tries) == (Outcome.UNKNOWN, 1)
    assert 0.25 <= result.duration < 3


def test_non_json_body_is_kept_as_text(mock_client, policy):
    client, _ = mock_client(httpx.Response(400, text="<html>Bad Request</html>"))
    reply = send(client, policy)
    assert isinstance(reply, Reply)
    assert reply.body is None and reply.get("error") is None
    assert reply.excerpt() == "<html>Bad Request</html>"


def test_html_502_is_retryable_with_an_excerpt(mock_client, policy):
    client, _ = mock_client("fonedynamics/gateway_html")
    result = send(client, policy)
    assert isinstance(result, SendResult) and result.outcome is Outcome.RETRYABLE
    assert "Bad Gateway" in (result.detail or "")


def test_duration_and_tries_are_filled(mock_client, policy):
    client, _ = mock_client(ok())
    reply = send(client, policy)
    assert isinstance(reply, Reply)
    result = reply.result(Outcome.SENT)
    assert result.tries == 1 and result.status_code == 200 and result.duration >= 0


@pytest.mark.parametrize(("text", "outcome"), [
    ("Contact has opted out", Outcome.SUPPRESSED),
    ("contact opted-out of marketing", Outcome.SUPPRESSED),
    ("Cell is blacklisted", Outcome.SUPPRESSED),
    ("user unsubscribed", Outcome.SUPPRESSED),
    ("number is on the do not contact list", Outcome.SUPPRESSED),
    ("Insufficient credits", Outcome.BILLING),
    ("invalid cell number", Outcome.REJECTED),
])
def test_outcome_from_provider_text(text, outcome):
    assert outcome_from_text(text) is outcome


def test_excerpt_is_one_short_line():
    assert excerpt("a\n  b") == "a b"
    assert len(excerpt("x" * 1000)) == 200

