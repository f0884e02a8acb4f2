"""The sandbox's mutable state: scripted behaviour (config), request log, stats, throttles, lists.

Everything lives in one process and one event loop, so nothing here needs a lock. ``Config.apply``
is strict: an unknown key or a value of the wrong kind raises ``ConfigError`` and changes nothing.
"""

from __future__ import annotations

import copy
import os
import random
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

from dispatcher.sandbox.checks import is_e164, is_http_url

PROVIDERS: tuple[str, ...] = ("dropcowboy", "dripcel", "skycore", "fonedynamics")

CREDENTIAL_KEYS: dict[str, tuple[str, ...]] = {
    "dropcowboy": ("team_id", "secret"),
    "dripcel": ("api_key",),
    "skycore": ("api_key",),
    "fonedynamics": ("account_sid", "auth_token"),
}
CREDENTIAL_ENV: dict[str, dict[str, str]] = {
    "dropcowboy": {"team_id": "DROPCOWBOY_TEAM_ID", "secret": "DROPCOWBOY_SECRET"},
    "dripcel": {"api_key": "DRIPCEL_API_KEY"},
    "skycore": {"api_key": "SKYCORE_API_KEY"},
    "fonedynamics": {"account_sid": "FONEDYNAMICS_ACCOUNT_SID", "auth_token": "FONEDYNAMICS_AUTH_TOKEN"},
}

BEHAVIOURS = frozenset({"invalid", "blacklisted", "optout", "slow", "undeliverable"})
RECEIPT_STATUSES = frozenset({"delivered", "failed"})
STAT_KEYS: tuple[str, ...] = (
    "requests", "accepted", "rejected", "throttled", "unauthorized", "faults", "duplicates", "segments",
    "receipts_sent", "receipts_failed",
)
LOG_LIMIT = 100_000

FIXTURE_KINDS: dict[str, str] = {"pools": "pool", "brands": "brand", "recordings": "recording", "media": "media"}
DEFAULT_FIXTURES: dict[str, list[dict[str, Any]]] = {
    "pools": [{"pool_id": "text", "pool_name": "Sandbox text pool", "numbers": ["+15557778888"]}],
    "brands": [{"brand_id": "sandbox-brand", "brand_name": "Sandbox Brand", "api_allowed": True}],
    "recordings": [
        {"recording_id": "sandbox-recording", "recording_name": "Sandbox recording", "api_allowed": True},
    ],
    "media": [{"media_id": "sandbox-media", "media_name": "Sandbox image", "media_type": "image/png"}],
}


class ConfigError(ValueError):
    """A ``POST /_sandbox/config`` body the sandbox cannot apply; ``str()`` says which key and why."""


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds, e.g. ``2024-05-01T12:00:00.123Z``."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(key: str, value: Any, *, low: float = 0.0, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
        raise ConfigError(f"{key}: must be {bounds}, got {value!r}")
    return float(value)


def _status(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise ConfigError(f"{key}: must be an HTTP status code (100..599), got {value!r}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: must be true or false, got {value!r}")
    return value


def _url(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not is_http_url(value):
        raise ConfigError(f"{key}: must be an http(s) URL or null, got {value!r}")
    return str(value)


def _provider(key: str, value: Any) -> str:
    if value not in PROVIDERS:
        raise ConfigError(f"{key}: unknown provider {value!r} (one of {', '.join(PROVIDERS)})")
    return str(value)


def _only(key: str, value: Any, allowed: set[str] | frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be an object, got {value!r}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(f"{key}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return value


def _fixtures(key: str, value: Any) -> list[dict[str, Any]]:
    id_key, name_key = f"{FIXTURE_KINDS[key]}_id", f"{FIXTURE_KINDS[key]}_name"
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list of ids or objects with {id_key!r}")
    items: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        if isinstance(item, str) and item:
            items.append({id_key: item, name_key: item, "api_allowed": True})
        elif isinstance(item, dict) and isinstance(item.get(id_key), str) and item[id_key]:
            items.append(dict(item))
        else:
            raise ConfigError(f"{key}[{i}]: must be a non-empty id or an object with {id_key!r}, got {item!r}")
    return items


class Config:
    """Scripted behaviour. Defaults are what ``POST /_sandbox/reset`` returns to."""

    KEYS = frozenset({
        "latency_ms", "failure_rate", "failure_status", "fail_next", "outage_seconds", "throttle_rps",
        "numbers", "slow_ms", "credentials", "billing_failure", "receipts", "skycore_postback_url",
        "dropcowboy_webhook_url", "skycore_campaigns", "record", "seed", *FIXTURE_KINDS,
    })

    def __init__(self, *, latency_ms: float = 0.0) -> None:
        self.latency: float = latency_ms / 1000.0          # seconds
        self.failure_rate = 0.0
        self.failure_status = 503
        self.fail_next_count = 0
        self.fail_next_status = 503
        self.fail_next_provider: str | None = None
        self.outage_until = 0.0                             # time.monotonic() deadline
        self.throttle_rps: dict[str, float] = {}
        self.numbers: dict[str, str] = {}
        self.slow = 30.0                                    # seconds
        self.credentials: dict[str, dict[str, str | None]] = {
            p: {k: os.environ.get(env) or None for k, env in keys.items()} for p, keys in CREDENTIAL_ENV.items()
        }
        self.billing_failure = False
        self.receipts_enabled = True
        self.receipt_delay = 0.1                            # seconds
        self.receipt_status = "delivered"
        self.skycore_postback_url: str | None = None
        self.dropcowboy_webhook_url: str | None = None
        self.skycore_campaigns: list[str] = []
        self.record = True
        self.fixtures: dict[str, list[dict[str, Any]]] = copy.deepcopy(DEFAULT_FIXTURES)
        self.random = random.Random()

    def apply(self, patch: Any) -> None:
        """Apply a config body: named keys replace their value; ``numbers``, ``credentials`` and
        ``receipts`` are merged into the current ones (in ``numbers``, a null value removes the number).

        Raises ConfigError, leaving the config unchanged, for any unknown key or bad value.
        """
        if not isinstance(patch, dict):
            raise ConfigError("config: body must be a JSON object")
        unknown = sorted(set(patch) - self.KEYS)
        if unknown:
            raise ConfigError(f"config: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(self.KEYS))})")
        staged = copy.copy(self)
        staged.numbers = dict(self.numbers)
        staged.credentials = {p: dict(c) for p, c in self.credentials.items()}
        staged.fixtures = dict(self.fixtures)
        staged.throttle_rps = dict(self.throttle_rps)
        for key, value in patch.items():
            staged._set(key, value)
        self.__dict__.update(staged.__dict__)

    def _set(self, key: str, value: Any) -> None:
        if key == "latency_ms":
            self.latency = _number(key, value) / 1000.0
        elif key == "failure_rate":
            self.failure_rate = _number(key, value, high=1.0)
        elif key == "failure_status":
            self.failure_status = _status(key, value)
        elif key == "fail_next":
            spec = _only(key, value, {"count", "status", "provider"})
            count = spec.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ConfigError(f"fail_next.count: must be an integer >= 0, got {count!r}")
            self.fail_next_count = count
            self.fail_next_status = _status("fail_next.status", spec.get("status", 503))
            provider = spec.get("provider")
            self.fail_next_provider = None if provider is None else _provider("fail_next.provider", provider)
        elif key == "outage_seconds":
            seconds = _number(key, value)
            self.outage_until = time.monotonic() + seconds if seconds else 0.0
        elif key == "throttle_rps":
            self.throttle_rps = self._throttle(value)
        elif key == "numbers":
            if not isinstance(value, dict):
                raise ConfigError(f"numbers: must be an object mapping E.164 numbers to behaviours, got {value!r}")
            for number, behaviour in value.items():
                if not is_e164(number):
                    raise ConfigError(f"numbers: {number!r} is not an E.164 number like +15550001111")
                if behaviour is None:
                    self.numbers.pop(number, None)
                elif behaviour in BEHAVIOURS:
                    self.numbers[number] = behaviour
                else:
                    raise ConfigError(f"numbers.{number}: unknown behaviour {behaviour!r} "
                                      f"(one of {', '.join(sorted(BEHAVIOURS))})")
        elif key == "slow_ms":
            self.slow = _number(key, value) / 1000.0
        elif key == "credentials":
            for provider, creds in _only(key, value, set(PROVIDERS)).items():
                allowed = set(CREDENTIAL_KEYS[provider])
                for name, secret in _only(f"credentials.{provider}", creds, allowed).items():
                    if secret is not None and (not isinstance(secret, str) or not secret):
                        raise ConfigError(f"credentials.{provider}.{name}: must be a non-empty string or null")
                    self.credentials[provider][name] = secret
        elif key == "billing_failure":
            self.billing_failure = _bool(key, value)
        elif key == "receipts":
            spec = _only(key, value, {"enabled", "delay_ms", "status"})
            if "enabled" in spec:
                self.receipts_enabled = _bool("receipts.enabled", spec["enabled"])
            if "delay_ms" in spec:
                self.receipt_delay = _number("receipts.delay_ms", spec["delay_ms"]) / 1000.0
            if "status" in spec:
                if spec["status"] not in RECEIPT_STATUSES:
                    raise ConfigError(f"receipts.status: must be 'delivered' or 'failed', got {spec['status']!r}")
                self.receipt_status = spec["status"]
        elif key == "skycore_postback_url":
            self.skycore_postback_url = _url(key, value)
        elif key == "dropcowboy_webhook_url":
            self.dropcowboy_webhook_url = _url(key, value)
        elif key == "skycore_campaigns":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"skycore_campaigns: must be a list of campaign references, got {value!r}")
            self.skycore_campaigns = list(value)
        elif key == "record":
            self.record = _bool(key, value)
        elif key == "seed":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"seed: must be an integer or null, got {value!r}")
            self.random = random.Random(value)
        elif key in FIXTURE_KINDS:
            self.fixtures[key] = _fixtures(key, value)

    @staticmethod
    def _throttle(value: Any) -> dict[str, float]:
        if value is None:
            return {}
        if isinstance(value, dict):
            rates: dict[str, float] = {}
            for provider, rps in value.items():
                _provider("throttle_rps", provider)
                if rps is not None:
                    rates[provider] = _number(f"throttle_rps.{provider}", rps, low=0.001)
            return rates
        rps = _number("throttle_rps", value, low=0.0)
        return {p: rps for p in PROVIDERS} if rps > 0 else {}

    def as_dict(self) -> dict[str, Any]:
        """The current config in the shape ``POST /_sandbox/config`` accepts (credentials masked)."""
        outage = max(0.0, self.outage_until - time.monotonic()) if self.outage_until else 0.0
        return {
            "latency_ms": self.latency * 1000.0,
            "failure_rate": self.failure_rate,
            "failure_status": self.failure_status,
            "fail_next": {"count": self.fail_next_count, "status": self.fail_next_status,
                          "provider": self.fail_next_provider},
            "outage_seconds": round(outage, 3),
            "throttle_rps": dict(self.throttle_rps),
            "numbers": dict(self.numbers),
            "slow_ms": self.slow * 1000.0,
            "credentials": {p: {k: (None if v is None else "***") for k, v in c.items()}
                            for p, c in self.credentials.items()},
            "billing_failure": self.billing_failure,
            "receipts": {"enabled": self.receipts_enabled, "delay_ms": self.receipt_delay * 1000.0,
                         "status": self.receipt_status},
            "skycore_postback_url": self.skycore_postback_url,
            "dropcowboy_webhook_url": self.dropcowboy_webhook_url,
            "skycore_campaigns": list(self.skycore_campaigns),
            "record": self.record,
            **{k: copy.deepcopy(v) for k, v in self.fixtures.items()},
        }


class TokenBucket:
    """``rate`` requests per second with a burst of ``max(1, rate)``."""

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self, now: float) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class State:
    """All the sandbox knows. ``reset()`` returns it to a fresh start with the launch defaults."""

    def __init__(self, *, latency_ms: float = 0.0) -> None:
        self.default_latency_ms = latency_ms
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        self.generation += 1     # requests that arrived before this reset are counted and logged nowhere
        self.config = Config(latency_ms=self.default_latency_ms)
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self.stats: dict[str, dict[str, int]] = {p: dict.fromkeys(STAT_KEYS, 0) for p in PROVIDERS}
        self.seen: set[tuple[str, str]] = set()
        self.duplicates = 0
        self.buckets: dict[str, TokenBucket] = {}
        self.lists: dict[str, dict[str, Any]] = {}
        self.receipt_log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)

    def configure(self, patch: Any) -> None:
        """Apply a config body (see ``Config.apply``); a changed throttle starts with a full bucket."""
        before = dict(self.config.throttle_rps)
        self.config.apply(patch)
        if self.config.throttle_rps != before:
            self.buckets = {p: TokenBucket(r) for p, r in self.config.throttle_rps.items()}

    def fault(self, provider: str) -> int | None:
        """The status of a scripted transport failure for this request, or None."""
        c = self.config
        if c.fail_next_count and (c.fail_next_provider is None or c.fail_next_provider == provider):
            c.fail_next_count -= 1
            return c.fail_next_status
        if c.outage_until:
            if time.monotonic() < c.outage_until:
                return c.failure_status
            c.outage_until = 0.0
        if c.failure_rate and c.random.random() < c.failure_rate:
            return c.failure_status
        return None

    def throttle(self, provider: str) -> float:
        """0.0 if the request may pass, else the seconds the client should wait."""
        bucket = self.buckets.get(provider)
        return bucket.take(time.monotonic()) if bucket is not None else 0.0

    def sent(self, provider: str, recipient: str, text: str, parts: int = 1) -> None:
        """Note an accepted send's segments; a recipient+text pair already accepted is a duplicate.

        The request itself is counted as ``accepted`` by the endpoint pipeline.
        """
        st = self.stats[provider]
        st["segments"] += parts
        key = (recipient, text)
        if key in self.seen:
            self.duplicates += 1
            st["duplicates"] += 1
        else:
            self.seen.add(key)

    def fixture(self, kind: str, ident: Any) -> dict[str, Any] | None:
        id_key = f"{FIXTURE_KINDS[kind]}_id"
        for item in self.config.fixtures[kind]:
            if item[id_key] == ident:
                return item
        return None
