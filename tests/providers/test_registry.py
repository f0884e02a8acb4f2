"""The registry and what every adapter class declares."""

from __future__ import annotations

import pytest

from dispatcher.providers import PROVIDERS, get_provider_class
from dispatcher.providers.base import NumberFormat


def test_registry_maps_names_to_classes():
    assert sorted(PROVIDERS) == ["dripcel", "dropcowboy", "fonedynamics", "skycore"]
    for name, cls in PROVIDERS.items():
        assert cls.name == name and get_provider_class(name) is cls


def test_unknown_provider_lists_the_valid_names():
    with pytest.raises(KeyError) as info:
        get_provider_class("twilio")
    assert str(info.value) == "unknown provider 'twilio'; valid names: dripcel, dropcowboy, fonedynamics, skycore"


@pytest.mark.parametrize("cls", PROVIDERS.values(), ids=PROVIDERS.keys())
def test_every_adapter_declares_its_differences(cls):
    assert isinstance(cls.default_base_url, str)
    assert isinstance(cls.number_format, NumberFormat)
    assert isinstance(cls.concatenates, bool)
    for attr in ("required_credentials", "required_options", "optional_options"):
        assert isinstance(getattr(cls, attr), tuple)
    assert not set(cls.required_options) & set(cls.optional_options)
    assert callable(cls.validate_options) and callable(cls.check) and callable(cls.send)


def test_only_drop_cowboy_refuses_concatenation():
    assert {name for name, cls in PROVIDERS.items() if not cls.concatenates} == {"dropcowboy"}
