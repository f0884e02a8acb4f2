"""Message templates run in a sandbox: abuse is refused when the template is compiled (so `validate` reports it on
the message line), rendering cannot reach Python objects, and no rendered text passes MAX_RENDERED characters."""

from __future__ import annotations

import pytest

from dispatcher.template import MAX_RENDERED, MessageTemplate, TemplateError

REFUSED = [
    ("{{ ''.__class__ }}", "attribute access ('.__class__') is not allowed"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "not allowed"),
    ("{{ first_name.__class__.__init__.__globals__ }}", "attribute access"),
    ("{{ first_name.upper() }}", "function and method calls are not allowed"),
    ("{{ first_name['__class__'] }}", "indexing is only allowed with a constant number"),
    ("{{ first_name[first_name] }}", "indexing is only allowed with a constant number"),
    ("{{ first_name|attr('__class__') }}", "filter 'attr' is not allowed"),
    ("{{ first_name|map('upper') }}", "filter 'map' is not allowed"),
    ("{{ first_name|center(1000000000) }}", "filter 'center' is not allowed"),
    ("{{ self }}", "'self' is not allowed"),
    ("{{ self._TemplateReference__context }}", "attribute access"),
    ("{{ range(10) }}", "calls are not allowed"),
    ("{{ lipsum(100000) }}", "calls are not allowed"),
    ("{{ cycler.__init__.__globals__.os }}", "attribute access"),
    ("{% for i in range(1000000000) %}x{% endfor %}", "'for' blocks are not allowed"),
    ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "'macro' blocks are not allowed"),
    ("{% set x = 'a' %}{{ x }}", "'assign' blocks are not allowed"),
    ("{% include '/etc/passwd' %}", "'include' blocks are not allowed"),
    ("{% extends 'base' %}", "'extends' blocks are not allowed"),
    ("{% filter upper %}x{% endfilter %}", "blocks are not allowed"),
    ("{{ 'x' * 1000000000 }}", f"longer than {MAX_RENDERED} characters"),
    ("{{ 'x' * 10 ** 9 }}", "the ** operator is not allowed"),
    ("{{ 9 ** 9 ** 9 }}", "the ** operator is not allowed"),
    ("{{ '%s%s' % (first_name, first_name) }}", "%-formatting of text is not allowed"),
    ("{{ 'ab'|replace('a', 'aaaa')|replace('a', 'aaaa')|replace('a', 'aaaa')|replace('a', 'aaaa')|replace('a', 'aaaa')"
     "|replace('a', 'aaaa') }}", f"longer than {MAX_RENDERED} characters"),
    ("x" * (MAX_RENDERED + 1), f"renders longer than {MAX_RENDERED} characters"),
    ("{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}", "nested too deeply"),
    ("{{ first_name", "template syntax error on template line 1"),
]


@pytest.mark.parametrize(("source", "why"), REFUSED, ids=[s[:40] for s, _ in REFUSED])
def test_template_abuse_is_refused_when_compiled(source: str, why: str) -> None:
    with pytest.raises(TemplateError) as exc:
        MessageTemplate(source)
    assert why in str(exc.value)


def test_a_plain_template_with_filters_and_conditions_renders() -> None:
    t = MessageTemplate("Hi {{ first_name|default('there')|title }}{% if city %} in {{ city|upper }}{% endif %}, "
                        "{{ first_name[0] }}{{ code[:3] }}. Reply STOP to opt out.")
    assert t.variables == {"first_name", "city", "code"}
    assert t.render({"first_name": "ada", "city": "paris", "code": "ABCDEF", "phone": "+1"}) == \
        "Hi Ada in PARIS, aABC. Reply STOP to opt out."


def test_rendering_a_row_cannot_reach_python_objects_through_its_values() -> None:
    # The values are data, never code: a value that looks like a template is printed as written.
    t = MessageTemplate("{{ first_name }}")
    assert t.render({"first_name": "{{ ''.__class__.__mro__ }}"}) == "{{ ''.__class__.__mro__ }}"
    assert t.render({"first_name": "{% for i in range(9) %}x{% endfor %}"}) == "{% for i in range(9) %}x{% endfor %}"


def test_output_that_only_grows_with_a_row_value_is_capped_per_row() -> None:
    t = MessageTemplate("{{ first_name * 100 }}")    # fine for short names: refused only where it grows too long
    assert t.render({"first_name": "Ada"}) == "Ada" * 100
    with pytest.raises(TemplateError, match=f"longer than {MAX_RENDERED} characters"):
        t.render({"first_name": "Adalovelace" * 2})
    long_value = MessageTemplate("Hi {{ first_name }}")
    with pytest.raises(TemplateError, match=f"rendered message longer than {MAX_RENDERED} characters"):
        long_value.render({"first_name": "x" * 100_000})
    with pytest.raises(TemplateError, match=f"longer than {MAX_RENDERED} characters"):
        MessageTemplate("{{ first_name|replace('a', first_name) }}").render({"first_name": "a" * 100})


def test_a_missing_value_or_a_failing_operation_is_a_row_error_not_an_exception() -> None:
    with pytest.raises(TemplateError, match="missing value: 'first_name' is undefined"):
        MessageTemplate("Hi {{ first_name }}").render({})
    with pytest.raises(TemplateError, match="missing value: str object has no element 0"):
        MessageTemplate("{{ first_name[0] }}").render({"first_name": ""})
    with pytest.raises(TemplateError, match="template failed"):
        MessageTemplate("{{ first_name|int / 0 }}").render({"first_name": "1"})


def test_only_the_variables_the_template_reads_reach_it() -> None:
    t = MessageTemplate("{{ a }}")
    wide_row = {f"c{i}": "x" * 1000 for i in range(1000)} | {"a": "ok"}
    assert t.render(wide_row) == "ok"
