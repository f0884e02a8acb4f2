"""A template of text and plain ``{{ name }}`` substitutions renders without Jinja's generated code
(template._plain_pieces), with exactly Jinja's result: the same text, the same refusals, in the same order."""

from __future__ import annotations

import random

from dispatcher.template import MAX_RENDERED, MessageTemplate, TemplateError

NAMES = ["first_name", "city", "code", "x"]
TEXTS = ["Hi ", ", 20% off today", " ", "\n", "\r\n", "  ", "Zoë ", "😀", "}", "{", "a } b", "% done", "\t",
         "Reply STOP to opt out.", "x" * 700]
SUBSTITUTIONS = ["{{ %s }}", "{{%s}}", "{{- %s }}", "{{ %s -}}", "{{ %s|upper }}", "{{ %s[0] }}",
                 "{%% if %s %%}yes{%% endif %%}", "{{ %s ~ '!' }}"]
EXTRAS = ["{# a comment #}", "{% raw %}{{ not a name }}{% endraw %}", "{{ 'constant' }}", "{{ 3 * 4 }}"]
VALUES = ["", "Ann", "  padded  ", "Zoë", "line\nbreak", "😀" * 40, "y" * 1200, "{{ x }}"]


def _template(rnd: random.Random) -> str:
    parts = []
    for _ in range(rnd.randint(0, 6)):
        kind = rnd.random()
        if kind < 0.45:
            parts.append(rnd.choice(TEXTS))
        elif kind < 0.85:
            # mostly plain substitutions, sometimes anything else the sandbox allows
            form = SUBSTITUTIONS[0] if rnd.random() < 0.7 else rnd.choice(SUBSTITUTIONS)
            parts.append(form % rnd.choice(NAMES))
        else:
            parts.append(rnd.choice(EXTRAS))
    return "".join(parts)


def _outcome(t: MessageTemplate, fields: dict[str, str]) -> str:
    try:
        return "text: " + t.render(fields)
    except TemplateError as exc:
        return f"refused: {exc}"


def test_plain_templates_render_exactly_as_jinja_renders_them() -> None:
    rnd = random.Random(20261201)
    plain = compared = 0
    for _ in range(3000):
        source = _template(rnd)
        try:
            fast = MessageTemplate(source)
        except TemplateError:
            continue
        jinja = MessageTemplate(source)
        jinja._plain = None            # force Jinja's own generated code
        plain += fast._plain is not None
        for _ in range(5):
            fields = {n: rnd.choice(VALUES) for n in NAMES if rnd.random() < 0.8}
            fields["unused"] = "z"
            assert _outcome(fast, fields) == _outcome(jinja, fields), (source, fields)
            compared += 1
    assert plain > 1000 and compared > 10_000


def test_only_text_and_plain_names_take_the_fast_path() -> None:
    assert MessageTemplate("Hi {{ first_name }}, {{city}}!")._plain is not None
    assert MessageTemplate("")._plain == ()
    for source in ("{{ first_name|upper }}", "{% if city %}x{% endif %}", "{{ 'a' }}", "{{ first_name[0] }}"):
        assert MessageTemplate(source)._plain is None


def test_a_missing_value_and_a_long_text_are_refused_in_the_order_jinja_refuses_them() -> None:
    t = MessageTemplate("{{ a }}{{ b }}")
    assert t._plain is not None
    assert _outcome(t, {"a": "x" * (MAX_RENDERED + 1)}) == \
        f"refused: rendered message longer than {MAX_RENDERED} characters"
    assert _outcome(t, {"b": "x"}) == "refused: missing value: 'a' is undefined"
