"""Drop Cowboy contact lists: create, read, rename, delete, append contacts (``/list`` endpoints).

Headers carry the credentials (``x-team-id`` / ``x-secret``); the bodies carry only the documented
fields. Every method raises ``ProviderCheckError`` with the provider's words when the answer is not 200.
"""

from __future__ import annotations

from typing import Any, Sequence

import httpx

from ..errors import ProviderCheckError
from .base import SendResult
from .http import DEFAULT_RETRY, Reply, request

FIELD_TYPES = ("record_id", "first_name", "last_name", "company", "email", "phone", "address1", "address2",
               "city", "state", "postal", "country", "custom1", "custom2", "custom3", "custom4", "custom5")


class DropCowboyLists:
    def __init__(self, base_url: str, credentials: dict[str, str], client: httpx.Client, *, timeout: float) -> None:
        self.base = base_url.rstrip("/")
        self.headers = {"x-team-id": credentials["team_id"], "x-secret": credentials["secret"]}
        self.client = client
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer: Reply | SendResult = request(self.client, method, f"{self.base}/{path}", timeout=self.timeout,
                                             policy=DEFAULT_RETRY, label="dropcowboy lists", headers=self.headers,
                                             **({"json": body} if body is not None else {}))
        if isinstance(answer, SendResult):
            raise ProviderCheckError("dropcowboy", f"{method} /{path}: {answer.detail or answer.outcome.value}")
        if answer.status_code != 200:
            raise ProviderCheckError("dropcowboy", f"{method} /{path} answered HTTP {answer.status_code}: {answer.excerpt()}")
        return answer.body

    def create(self, name: str) -> dict[str, Any]:
        return dict(self._call("POST", "list", {"list_name": name}))

    def get(self, list_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"list/{list_id}"))

    def rename(self, list_id: str, name: str) -> None:
        self._call("POST", f"list/{list_id}", {"list_name": name})

    def delete(self, list_id: str) -> None:
        self._call("DELETE", f"list/{list_id}")

    def append(self, list_id: str, fields: Sequence[str], values: Sequence[Sequence[str]], *, region: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"fields": list(fields), "values": [list(v) for v in values]}
        if region:
            body["region"] = region
        return dict(self._call("POST", f"list/{list_id}/contacts", body) or {})
