"""Segment counting: GSM-7 vs UCS-2, boundaries, characters that may not be split."""

from __future__ import annotations

import pytest
from gsm0338 import Codec  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.encoding import GSM7_EXTENSION, TextInfo, analyse, fits

EXTENSION_CHARS = "€^{}[]~|\\"


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_text_needs_one_segment_up_to_160_then_153_per_part(length: int, segments: int) -> None:
    assert analyse("a" * length) == TextInfo("GSM-7", length, segments, length)


@pytest.mark.parametrize("char", list(EXTENSION_CHARS))
def test_extension_table_characters_count_two_septets(char: str) -> None:
    assert analyse(char) == TextInfo("GSM-7", 2, 1, 1)
    assert analyse(char * 80).segments == 1
    assert analyse(char * 81) == TextInfo("GSM-7", 162, 2, 81)


def test_extension_table_read_from_gsm0338_is_the_3gpp_one() -> None:
    assert GSM7_EXTENSION == frozenset(EXTENSION_CHARS + "\f")


def test_extension_character_is_not_split_at_the_153_septet_boundary() -> None:
    straddling = "a" * 152 + "€" + "a" * 152
    fitting = "a" * 151 + "€" + "a" * 153
    assert analyse(straddling) == TextInfo("GSM-7", 306, 3, 305)
    assert analyse(fitting) == TextInfo("GSM-7", 306, 2, 305)


@pytest.mark.parametrize(
    ("length", "segments"),
    [(70, 1), (71, 2), (134, 2), (135, 3)],
)
def test_ucs2_text_needs_one_segment_up_to_70_units_then_67_per_part(length: int, segments: int) -> None:
    assert analyse("ć" * length) == TextInfo("UCS-2", length, segments, length)


def test_emoji_counts_two_utf16_units_and_one_character() -> None:
    assert analyse("😀") == TextInfo("UCS-2", 2, 1, 1)
    assert analyse("😀" * 35) == TextInfo("UCS-2", 70, 1, 35)
    assert analyse("😀" * 36).segments == 2


def test_emoji_surrogate_pair_is_not_split_at_the_67_unit_boundary() -> None:
    straddling = "ć" * 66 + "😀" + "ć" * 66
    fitting = "ć" * 65 + "😀" + "ć" * 67
    assert analyse(straddling) == TextInfo("UCS-2", 134, 3, 133)
    assert analyse(fitting) == TextInfo("UCS-2", 134, 2, 133)


def test_capital_c_cedilla_is_gsm7_but_small_c_cedilla_is_not() -> None:
    # 3GPP TS 23.038 puts Ç (not ç) at 0x09; gsm0338 follows the table.
    assert Codec().encode("Ç")[0] == b"\x09"
    with pytest.raises(UnicodeEncodeError):
        Codec().encode("ç")
    assert analyse("Ça va").encoding == "GSM-7"
    assert analyse("ça va").encoding == "UCS-2"


def test_one_character_outside_the_gsm_table_switches_the_whole_message_to_ucs2() -> None:
    assert analyse("a" * 159 + "e") == TextInfo("GSM-7", 160, 1, 160)
    assert analyse("a" * 159 + "ć") == TextInfo("UCS-2", 160, 3, 160)


def test_gsm7_accented_letters_and_greek_capitals_stay_gsm7() -> None:
    assert analyse("éèùìòÇØøÅåÆæßÉÄÖÑÜäöñüà¿¡£¥§ΔΦΓΛΩΠΨΣΘΞ@$\n\r").encoding == "GSM-7"


def test_curly_quotes_are_not_gsm7() -> None:
    assert analyse("it’s").encoding == "UCS-2"


def test_bare_escape_character_is_not_sent_as_gsm7() -> None:
    assert analyse("a\x1bb").encoding == "UCS-2"


def test_empty_text_is_one_gsm7_segment_of_zero_units() -> None:
    assert analyse("") == TextInfo("GSM-7", 0, 1, 0)


def test_fits_compares_segments_with_the_allowed_maximum() -> None:
    assert fits(analyse("a" * 160), 1)
    assert not fits(analyse("a" * 161), 1)
    assert fits(analyse("a" * 161), 2)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("abc €[|ç😀ć\n"), max_size=400))
def test_units_match_the_encoded_size_and_segments_respect_part_sizes(text: str) -> None:
    info = analyse(text)
    try:
        septets = len(Codec().encode(text)[0])
    except UnicodeEncodeError:
        assert info.encoding == "UCS-2"
        assert info.units == len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    else:
        assert info.encoding == "GSM-7"
        assert info.units == septets
        single, part = 160, 153
    assert info.chars == len(text)
    if info.units <= single:
        assert info.segments == 1
    else:
        assert -(-info.units // part) <= info.segments <= -(-info.units // (part - 1))


def test_texts_of_the_default_alphabet_alone_take_a_shortcut_to_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import random
    import re

    from dispatcher import encoding

    rnd = random.Random(5)
    basic = sorted(encoding.GSM7_BASIC)
    others = sorted(encoding.GSM7_EXTENSION) + ["ç", "ć", "’", "\x1b", "😀", "\u00a0"]
    texts = ["".join(rnd.choice(basic if rnd.random() < 0.97 else others) for _ in range(n))
             for n in [0, 1, 70, 153, 159, 160, 161, 306, 307, 459, 1000] * 300]
    fast = [analyse(t) for t in texts]
    shortcut = sum(encoding._BASIC_TEXT.fullmatch(t) is not None for t in texts)
    monkeypatch.setattr(encoding, "_BASIC_TEXT", re.compile("(?!)"))   # matches nothing: every text the long way
    assert fast == [analyse(t) for t in texts]
    assert 300 < shortcut < len(texts) - 300   # both ways taken often
