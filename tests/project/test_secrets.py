"""Secrets never show in the representations that end up in logs and tracebacks."""

from __future__ import annotations

from dispatcher.providers.base import ProviderConfig
from dispatcher.settings import Settings


def test_settings_repr_masks_the_webhook_token():
    s = Settings(webhook_token="tok-0123456789abcdef")
    assert "tok-0123456789abcdef" not in repr(s) and "tok-0123456789abcdef" not in str(s)
    assert s.webhook_token is not None and s.webhook_token.get_secret_value() == "tok-0123456789abcdef"


def test_provider_config_repr_leaves_out_credentials():
    c = ProviderConfig(base_url="http://127.0.0.1:1/v1", credentials={"team_id": "t", "secret": "s3cr3t-value-42"})
    assert "s3cr3t-value-42" not in repr(c)
    assert c.credentials["secret"] == "s3cr3t-value-42"
