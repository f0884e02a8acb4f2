"""One exception tree for the dispatcher, split by what the caller must do.

    DispatcherError
    ├── InputError              the user's files are wrong: fix them and run again
    │   ├── CampaignFileError   campaign YAML: file, line, field
    │   └── ContactsError       contacts CSV as a whole (missing column, unreadable file)
    ├── NotFoundError           a named campaign, batch or list does not exist
    ├── StateError              the operation does not fit the campaign's state
    ├── ProviderCheckError      a read-only provider check failed (credentials, pool, brand)
    └── TransientError          infrastructure hiccup (database, broker): back off and retry

Provider *responses* are not exceptions: adapters classify every answer into an
``Outcome`` (see ``dispatcher.providers.base``) that the engine records as an attempt.
Foreign exceptions (httpx, SQLAlchemy, redis) are translated once, at the module that
talks to that library, and never escape into ``workers/``.
"""

from __future__ import annotations


class DispatcherError(Exception):
    """Base of every error the dispatcher raises on purpose."""


class InputError(DispatcherError):
    """The user's input is wrong. ``str()`` is the message a user sees."""


class Location:
    __slots__ = ("file", "line", "field")

    def __init__(self, file: str, line: int | None = None, field: str | None = None) -> None:
        self.file = file
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f": {self.field}"
        return where


class CampaignFileError(InputError):
    """One or more problems in a campaign file; each names file, line and field."""

    def __init__(self, problems: list[tuple[Location, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{loc}: {msg}" for loc, msg in problems))


class ContactsError(InputError):
    """The contacts file cannot be used at all (as opposed to a bad row, which is recorded)."""


class NotFoundError(DispatcherError):
    pass


class StateError(DispatcherError):
    pass


class ProviderCheckError(DispatcherError):
    def __init__(self, provider: str, message: str) -> None:
        self.provider = provider
        super().__init__(f"{provider}: {message}")


class TransientError(DispatcherError):
    """Database or broker unavailable for now; the operation may be retried."""
