"""GSM 03.38 / UCS-2 encoding, segment counts and the unaccented (không dấu) form."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewarn.alerts.encoding import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SmsEncodingError,
    gsm7_length,
    is_gsm7,
    segments,
    sms_encoding,
    ucs2_length,
    unaccented,
)
from ewarn.errors import EwarnError

# Every Vietnamese letter outside ASCII, by its base letter, written out (not generated):
# the 12 vowels a ă â e ê i o ô ơ u ư y with the five tones (sắc, huyền, hỏi, ngã, nặng).
VIETNAMESE = {
    "a": "áàảãạăắằẳẵặâấầẩẫậ",
    "e": "éèẻẽẹêếềểễệ",
    "i": "íìỉĩị",
    "o": "óòỏõọôốồổỗộơớờởỡợ",
    "u": "úùủũụưứừửữự",
    "y": "ýỳỷỹỵ",
    "d": "đ",
}
LOWER = [(c, base) for base, letters in VIETNAMESE.items() for c in letters]
ALL_LETTERS = LOWER + [(c.upper(), base.upper()) for c, base in LOWER]
# the seven Vietnamese letters that the GSM 7-bit basic table has (3GPP TS 23.038 §6.2.1)
IN_GSM_BASIC = set("àèéìòùÉ")


def test_the_letter_list_is_complete():
    assert len(ALL_LETTERS) == 134
    assert len({c for c, _ in ALL_LETTERS}) == 134
    assert all(unicodedata.is_normalized("NFC", c) and len(c) == 1 for c, _ in ALL_LETTERS)


@pytest.mark.parametrize(("letter", "base"), ALL_LETTERS, ids=[c for c, _ in ALL_LETTERS])
def test_every_vietnamese_letter(letter, base):
    # in a word with any other accented letter the whole text is UCS-2
    word = f"x{letter}ư"
    assert sms_encoding(word) == "UCS-2"
    if letter in IN_GSM_BASIC:
        assert is_gsm7(letter) and gsm7_length(letter) == 1
    else:
        assert sms_encoding(letter) == "UCS-2"
        assert not is_gsm7(f"abc {letter}")
    flat = unaccented(letter)
    assert flat == base
    assert is_gsm7(flat) and sms_encoding(flat) == "GSM-7"
    # decomposed input (NFD, as some keyboards and files give it) gives the same result
    assert unaccented(unicodedata.normalize("NFD", letter)) == base


def test_unaccented_sentence():
    text = ("CẢNH BÁO lũ quét, sạt lở đất cấp 3 xã Phúc Khánh, Lào Cai. Tránh xa suối, taluy dốc; "
            "sơ tán đến Trường THCS Đồng Tuyển.")
    flat = unaccented(text)
    assert flat == ("CANH BAO lu quet, sat lo dat cap 3 xa Phuc Khanh, Lao Cai. Tranh xa suoi, taluy doc; "
                    "so tan den Truong THCS Dong Tuyen.")
    assert sms_encoding(flat) == "GSM-7"
    assert len(flat) == len(text)


def test_unaccented_replaces_typographic_and_unknown_characters():
    assert unaccented("“Sơ tán” – ngay… ‘đi’") == '"So tan" - ngay... \'di\''
    assert unaccented("nhiệt độ 25°C\u00a0tại điểm A×B") == "nhiet do 25oC tai diem AxB"
    out = unaccented("mưa 🌧 lớn 中")
    assert out == "mua ? lon ?"
    assert is_gsm7(out)
    assert unaccented("bão", replacement="") == "bao"
    with pytest.raises(SmsEncodingError, match="replacement"):
        unaccented("x", replacement="ư")


@given(st.text(max_size=200))
def test_unaccented_is_always_gsm7(text):
    assert is_gsm7(unaccented(text))


def test_gsm_tables():
    # 128 positions, one of them the escape: 127 characters; extension chars count twice
    assert len(GSM7_BASIC) == 127
    assert set("\f^{}\\[~]|€") == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION
    assert {"@", "£", "¥", "Δ", "ß", "¡", "¿", "§", "\n", "\r"} <= GSM7_BASIC
    assert "`" not in GSM7_BASIC and "ç" not in GSM7_BASIC


@pytest.mark.parametrize("char", sorted(GSM7_EXTENSION))
def test_extension_characters_count_twice(char):
    assert gsm7_length(char) == 2
    assert gsm7_length(f"a{char}b") == 4
    assert sms_encoding(char) == "GSM-7"
    # 80 of them fill exactly one message, 81 do not
    assert segments(char * 80) == 1
    assert segments(char * 81) == 2
    # 159 plain + one extension character is 161 septets
    assert segments("a" * 159 + char) == 2


def test_gsm7_length_refuses_other_characters():
    with pytest.raises(SmsEncodingError, match=r"'ư' \(U\+01B0\) at position 3") as err:
        gsm7_length("abcư")
    assert isinstance(err.value, EwarnError)


@pytest.mark.parametrize(("n", "parts"), [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)])
def test_gsm7_boundaries(n, parts):
    assert segments("a" * n) == parts


@pytest.mark.parametrize(("n", "parts"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)])
def test_ucs2_boundaries(n, parts):
    text = "ạ" * n
    assert sms_encoding(text) == "UCS-2"
    assert ucs2_length(text) == n
    assert segments(text) == parts


def test_empty_text_is_one_message():
    assert segments("") == 1
    assert sms_encoding("") == "GSM-7"


def test_extension_pair_is_not_split_across_parts():
    # 152 plain septets then "€": the pair does not fit in the first 153-septet part
    text = "a" * 152 + "€" + "a" * 152
    assert gsm7_length(text) == 306  # would be 2 parts by arithmetic alone
    assert segments(text) == 3


def test_characters_outside_the_bmp_count_two_code_units():
    rain = "\U0001f327"  # cloud with rain, a surrogate pair in UTF-16
    assert ucs2_length(rain) == 2
    assert segments(rain * 35) == 1
    assert segments(rain * 35 + "a") == 2
    # 66 units then a pair: the pair goes to the next 67-unit part
    assert segments("ạ" * 66 + rain + "ạ" * 66) == 3
