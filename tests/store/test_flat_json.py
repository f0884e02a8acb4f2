"""The loader's JSON for a contact's fields (store.flat_json) is exactly json.dumps's, the text SQLAlchemy stores for a
JSON column: over seeded random dicts of every kind of text (controls, quotes, backslashes, accents, emoji, lone
surrogates), and of values that are not text, which json.dumps itself encodes."""

from __future__ import annotations

import json
import random
from typing import Any

from dispatcher.store import flat_json

ALPHABET = ["a", "Z", "0", " ", '"', "\\", "/", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "é", "ß", "Ω", "中", "\u2028",
            "\ufeff", "\U0001f600", "\ud800", "\udfff", ",", ":", "{", "}"]


def _text(rnd: random.Random) -> str:
    return "".join(rnd.choice(ALPHABET) for _ in range(rnd.choice([0, 1, 2, 5, 20])))


def _value(rnd: random.Random) -> Any:
    kind = rnd.random()
    if kind < 0.85:
        return _text(rnd)
    return rnd.choice([None, True, 0, -1.5, float("nan"), [1, "x"], {"n": "y"}, ("t",)])


class Text(str):
    """A str subclass: json.dumps encodes it as text."""


def test_flat_json_is_json_dumps_for_every_dict_of_texts_and_of_other_values() -> None:
    rnd = random.Random(11)
    flat = 0
    for _ in range(20_000):
        d = {_text(rnd): _value(rnd) for _ in range(rnd.choice([0, 1, 2, 3, 6]))}
        if rnd.random() < 0.05:
            d[Text(_text(rnd))] = Text(_text(rnd))
        if rnd.random() < 0.02:
            d[rnd.choice([1, 2.5, None, False])] = _text(rnd)   # keys json.dumps turns into text
        flat += all(type(k) is str and type(v) is str for k, v in d.items())
        assert flat_json(d) == json.dumps(d), d
    assert flat > 10_000   # most of them took the fast path
