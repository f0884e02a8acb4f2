"""Helpers for the adapter unit tests: recorded answers served by ``httpx.MockTransport``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from dispatcher.providers.base import SmsRequest
from dispatcher.providers.http import RetryPolicy

FIXTURES = Path(__file__).parent / "fixtures"


def recorded(name: str) -> httpx.Response:
    """The answer stored in ``fixtures/<provider>/<name>.json`` (``status``, ``headers``, ``body`` or ``text``)."""
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    headers = data.get("headers", {})
    if "text" in data:
        return httpx.Response(data["status"], headers=headers, text=data["text"])
    return httpx.Response(data["status"], headers=headers, json=data["body"])


Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Scripted:
    """A MockTransport that answers with the given responses (or raises the given exceptions) in
    order, repeating the last one, and keeps every request it saw."""

    def __init__(self, *answers: Answer | str) -> None:
        self.answers = [recorded(a) if isinstance(a, str) else a for a in answers]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def last_json(self) -> Any:
        return json.loads(self.last.content)


class Sleeps(list[float]):
    """Stands in for ``time.sleep``: records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture()
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture()
def policy(sleeps: Sleeps) -> RetryPolicy:
    return RetryPolicy(sleep=sleeps)


@pytest.fixture()
def mock_client() -> Iterator[Callable[..., tuple[httpx.Client, Scripted]]]:
    clients: list[httpx.Client] = []

    def make(*answers: Answer | str) -> tuple[httpx.Client, Scripted]:
        script = Scripted(*answers)
        client = httpx.Client(transport=httpx.MockTransport(script))
        clients.append(client)
        return client, script

    yield make
    for client in clients:
        client.close()


@pytest.fixture()
def make_sms() -> Callable[..., SmsRequest]:
    def make(**overrides: Any) -> SmsRequest:
        fields: dict[str, Any] = {"message_id": "msg-1", "to": "+14155550147", "region": "US", "text": "Hello world"}
        return SmsRequest(**{**fields, **overrides})

    return make
