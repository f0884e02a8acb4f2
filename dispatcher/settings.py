"""Deployment settings, from the environment only (never from code or campaign files)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True, secrets_dir=None)

    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "sqlite:///dispatcher.db"
    # Public base URL of `dispatcher webhooks`, e.g. http://127.0.0.1:8026; enables callback_url.
    webhook_base_url: str | None = None
    webhook_token: SecretStr | None = None
    # Worker tuning
    send_concurrency: int = Field(default=16, ge=1, le=256)
    http_timeout: float = Field(default=10.0, gt=0)
    # keepalive: the lean HTTP/1.1 transport under httpx (providers/transport.py); httpx: httpx's own (httpcore)
    http_transport: Literal["keepalive", "httpx"] = "keepalive"
    max_attempts: int = Field(default=5, ge=1)
    batch_size: int = Field(default=200, ge=1, le=10_000)
    stale_after: float = Field(default=120.0, gt=0)   # seconds before queued work is re-enqueued
    # Account-wide limits shared by every campaign of a provider, e.g. PROVIDER_RATE_LIMITS='{"skycore": "30/s"}'
    provider_rate_limits: dict[str, str] = Field(default_factory=dict)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
