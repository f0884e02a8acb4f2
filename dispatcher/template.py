"""Message templates: Jinja2's sandbox, strict about undefined names, no loops or includes."""

from __future__ import annotations

from typing import Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
# Message templates substitute contact fields; anything that can loop or pull in other files is refused.
_REFUSED = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.Import, nodes.FromImport, nodes.Include,
            nodes.Extends, nodes.Block, nodes.FilterBlock, nodes.With, nodes.Assign, nodes.AssignBlock)
MAX_RENDERED = 2000


class TemplateError(ValueError):
    """The template cannot be used; str() is a user-facing reason."""


class MessageTemplate:
    """A compiled message template. ``variables`` are the names it reads from a contact row."""

    def __init__(self, source: str) -> None:
        try:
            ast = _ENV.parse(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error on template line {exc.lineno}: {exc.message}") from None
        for node in ast.find_all(_REFUSED):
            raise TemplateError(f"'{type(node).__name__.lower()}' blocks are not allowed in message templates")
        for node in ast.find_all(nodes.Getattr):
            if node.attr.startswith("_"):
                raise TemplateError(f"access to '{node.attr}' is not allowed in message templates")
        self.variables: frozenset[str] = frozenset(meta.find_undeclared_variables(ast))
        self._template = _ENV.from_string(source)

    def render(self, fields: Mapping[str, str]) -> str:
        try:
            text = self._template.render(fields)
        except (SecurityError, UndefinedError) as exc:
            raise TemplateError(f"template refused: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any runtime failure of a user template is a user error
            raise TemplateError(f"template failed: {type(exc).__name__}: {exc}") from None
        if len(text) > MAX_RENDERED:
            raise TemplateError(f"rendered message longer than {MAX_RENDERED} characters")
        return text.strip()
