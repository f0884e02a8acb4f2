"""Message templates: a small subset of Jinja2, run in its immutable sandbox.

A message template substitutes contact fields (``{{ first_name }}``), may choose between texts
(``{% if %}``), and may pass a value through a few filters (``|upper``, ``|default("there")``).
Everything else is refused when the template is compiled, so ``dispatcher validate`` reports it on
the ``message`` line rather than on every row: loops and other blocks, attribute access and calls
(``{{ ''.__class__ }}``, ``{{ name.upper() }}``), indexing other than by a constant number, the
``**`` operator and filters outside ``ALLOWED_FILTERS``.

What compiles still runs in the sandbox, where ``*`` and ``%`` (which can build huge strings from
a short template) are intercepted, and rendering stops as soon as the text passes
``MAX_RENDERED`` characters. A template of text and plain ``{{ name }}`` alone, the common case,
is rendered by joining its parts, as Jinja's code for it would (it yields the same pieces).
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_RENDERED = 2000
ALLOWED_FILTERS = frozenset({
    "abs", "capitalize", "count", "d", "default", "first", "float", "int", "last", "length", "lower",
    "replace", "round", "string", "title", "trim", "truncate", "upper", "wordcount",
})
_REFUSED_BLOCKS = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.Import, nodes.FromImport, nodes.Include,
                   nodes.Extends, nodes.Block, nodes.FilterBlock, nodes.With, nodes.Assign, nodes.AssignBlock,
                   nodes.EvalContextModifier)


class TemplateError(ValueError):
    """The template cannot be used; str() is a user-facing reason."""


class _TooLong(Exception):
    pass


def _replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    # Chained replaces grow a text geometrically ('aa'|replace('a', 'aa')|replace(...)): check before building.
    s, old, new = str(value), str(old), str(new)
    occurrences = s.count(old) if old else len(s) + 1
    if len(s) + occurrences * max(0, len(new) - len(old)) > MAX_RENDERED:
        raise SecurityError(f"replace would make the text longer than {MAX_RENDERED} characters")
    return s.replace(old, new, -1 if count is None else count)


class _Environment(ImmutableSandboxedEnvironment):
    # Intercepted operators are also never folded at compile time, so '{{ "x" * 10**9 }}' cannot
    # exhaust memory while `validate` compiles the template.
    intercepted_binops = frozenset({"*", "%", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise SecurityError("the ** operator is not allowed")
        if operator == "%" and isinstance(left, str):
            raise SecurityError("%-formatting of text is not allowed")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_RENDERED:
                    raise SecurityError(f"repeating a text would make it longer than {MAX_RENDERED} characters")
        return super().call_binop(context, operator, left, right)


_ENV = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_ENV.globals.clear()                     # no range(), lipsum(), dict(), cycler(), joiner(), namespace()
_ENV.filters = {name: f for name, f in _ENV.filters.items() if name in ALLOWED_FILTERS}
_ENV.filters["replace"] = _replace


def _constant_int(node: nodes.Node | None) -> bool:
    if node is None:
        return True
    if isinstance(node, (nodes.Neg, nodes.Pos)):
        node = node.node
    return isinstance(node, nodes.Const) and isinstance(node.value, int) and not isinstance(node.value, bool)


def _refusal(node: nodes.Node) -> str | None:
    """Why ``node`` may not appear in a message template; None when it may."""
    if isinstance(node, _REFUSED_BLOCKS):
        name = "autoescape" if isinstance(node, nodes.EvalContextModifier) else type(node).__name__.lower()
        return f"'{name}' blocks are not allowed in message templates"
    if isinstance(node, nodes.Getattr):
        return (f"attribute access ('.{node.attr}') is not allowed in message templates; "
                "use a filter instead, e.g. {{ first_name|upper }}")
    if isinstance(node, nodes.Call):
        return "function and method calls are not allowed in message templates; use a filter, e.g. {{ first_name|title }}"
    if isinstance(node, nodes.Pow):
        return "the ** operator is not allowed in message templates"
    if isinstance(node, nodes.Getitem):
        arg = node.arg
        ok = (_constant_int(arg.start) and _constant_int(arg.stop) and _constant_int(arg.step)
              if isinstance(arg, nodes.Slice) else _constant_int(arg))
        if not ok:
            return "indexing is only allowed with a constant number in message templates, e.g. {{ first_name[0] }}"
    if isinstance(node, nodes.Filter) and node.name not in ALLOWED_FILTERS:
        return f"filter '{node.name}' is not allowed in message templates (allowed: {', '.join(sorted(ALLOWED_FILTERS))})"
    if isinstance(node, nodes.Name) and node.name == "self":
        return "'self' is not allowed in message templates"
    return None


class MessageTemplate:
    """A compiled message template. ``variables`` are the names it reads from a contact row.

    Raises ``TemplateError`` (a user-facing reason) when the source does not parse or uses
    anything outside the subset described in the module docstring.
    """

    def __init__(self, source: str) -> None:
        try:
            ast = _ENV.parse(source)
            for node in ast.find_all(nodes.Node):
                why = _refusal(node)
                if why:
                    raise TemplateError(why)
            self.variables: frozenset[str] = frozenset(meta.find_undeclared_variables(ast))
            self._template = _ENV.from_string(ast)
            self._plain = _plain_parts(ast)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error on template line {exc.lineno}: {exc.message}") from None
        except (RecursionError, MemoryError, SyntaxError):  # Python's own limits on the compiled template
            raise TemplateError("the template is nested too deeply") from None
        self._trial_render()

    def _trial_render(self) -> None:
        # Abuse built from constants alone ('{{ "x" * 10**8 }}') is refused now, on the message line,
        # instead of on every row. Other failures depend on a row's values and are left to render().
        try:
            self._render({name: "" for name in self.variables})
        except SecurityError as exc:
            raise TemplateError(f"template refused: {exc}") from None
        except _TooLong:
            raise TemplateError(f"the template alone renders longer than {MAX_RENDERED} characters") from None
        except Exception:  # noqa: BLE001, S110 - depends on the row (e.g. {{ name[0] }} of an empty name)
            pass

    def _render(self, fields: Mapping[str, str]) -> str:
        if self._plain is not None:
            generated = _plain_pieces(self._plain, fields)
        else:
            # Only the variables the template reads: a wide contact row costs nothing extra.
            generated = self._template.generate({k: fields[k] for k in self.variables if k in fields})
        pieces: list[str] = []
        size = 0
        for piece in generated:
            size += len(piece)
            if size > MAX_RENDERED:
                raise _TooLong
            pieces.append(piece)
        return "".join(pieces).strip()

    def render(self, fields: Mapping[str, str]) -> str:
        """The text for one contact, stripped. Raises ``TemplateError`` when a variable is missing, the
        sandbox refuses an operation, or the text would pass ``MAX_RENDERED`` characters."""
        try:
            return self._render(fields)
        except _TooLong:
            raise TemplateError(f"rendered message longer than {MAX_RENDERED} characters") from None
        except SecurityError as exc:
            raise TemplateError(f"template refused: {exc}") from None
        except UndefinedError as exc:
            raise TemplateError(f"missing value: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any runtime failure of a user template is a user error
            raise TemplateError(f"template failed: {type(exc).__name__}: {exc}") from None


def _plain_parts(ast: nodes.Template) -> tuple[tuple[bool, str], ...] | None:
    """A template of text and ``{{ name }}`` alone as (is a name, text or name) parts; None for any other."""
    if not ast.body:
        return ()
    if len(ast.body) > 1 or type(ast.body[0]) is not nodes.Output:
        return None
    parts = []
    for node in ast.body[0].nodes:
        if type(node) is nodes.TemplateData:
            parts.append((False, node.data))
        elif type(node) is nodes.Name and node.ctx == "load":
            parts.append((True, node.name))
        else:
            return None
    return tuple(parts)


def _plain_pieces(parts: tuple[tuple[bool, str], ...], fields: Mapping[str, str]) -> Iterator[str]:
    """What Jinja's code for such a template yields, without building its context: the text as parsed, and each
    value through ``str``; a missing one is the environment's undefined, whose ``str`` raises, when its turn comes."""
    for is_name, text in parts:
        yield (str(fields[text]) if text in fields else str(_ENV.undefined(name=text))) if is_name else text
