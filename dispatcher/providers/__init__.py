"""Provider adapters by name: ``PROVIDERS["dropcowboy"]`` is the ``DropCowboy`` class."""

from __future__ import annotations

from dispatcher.providers.base import Provider
from dispatcher.providers.dripcel import Dripcel
from dispatcher.providers.dropcowboy import DropCowboy
from dispatcher.providers.fonedynamics import FoneDynamics
from dispatcher.providers.skycore import Skycore

PROVIDERS: dict[str, type[Provider]] = {cls.name: cls for cls in (DropCowboy, Dripcel, Skycore, FoneDynamics)}


class UnknownProviderError(KeyError):
    """A provider name that is not in ``PROVIDERS``; ``str()`` lists the valid names."""

    def __str__(self) -> str:
        return str(self.args[0])


def get_provider_class(name: str) -> type[Provider]:
    """The adapter class for ``name``; raises ``UnknownProviderError`` (a ``KeyError``) naming the valid ones."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise UnknownProviderError(f"unknown provider {name!r}; valid names: {', '.join(sorted(PROVIDERS))}") from None


__all__ = ["PROVIDERS", "UnknownProviderError", "get_provider_class"]
