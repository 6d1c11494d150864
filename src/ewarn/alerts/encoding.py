"""SMS character sets: GSM 03.38 (GSM-7) and UCS-2, segment counts, unaccented text.

An SMS carries 140 octets. Text that uses only the GSM 7-bit default alphabet
(3GPP TS 23.038, formerly GSM 03.38, §6.2.1 "GSM 7 bit Default Alphabet" and
§6.2.1.1 its extension table) is packed 7 bits per character: 160 characters
in one message, 153 per part of a concatenated message (the 6-octet user-data
header of 3GPP TS 23.040 §9.2.3.24.1 takes 7 septets). A character of the
extension table is sent as ESC (0x1B) plus one septet, so it counts twice, and
a part never splits such a pair. Any other character makes the whole message
UCS-2 (16 bits per UTF-16 code unit): 70 code units in one message, 67 per
part; a character outside the Basic Multilingual Plane takes two code units
(a surrogate pair, never split across parts).

Vietnamese needs UCS-2 for nearly every word: ă â đ ê ô ơ ư and most toned
vowels are not in the GSM alphabet. Only à è é ì ò ù and É are (they are in
the basic table for French and Italian), so a text whose only non-ASCII letters
are among those seven stays GSM-7. :func:`unaccented` makes the *không dấu*
form (SCIENCE.md §7): compatibility decomposition (NFKD), combining marks
removed, đ → d, Đ → D, typographic punctuation to ASCII, anything else
outside GSM-7 to "?".
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Literal

from ewarn.errors import EwarnError

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "GSM7_SEGMENT",
    "GSM7_SINGLE",
    "UCS2_SEGMENT",
    "UCS2_SINGLE",
    "Encoding",
    "SmsEncodingError",
    "gsm7_length",
    "is_gsm7",
    "parts_capacity",
    "segments",
    "sms_encoding",
    "sms_length",
    "ucs2_length",
    "unaccented",
]

#: Characters of one single-part GSM-7 message (140 octets × 8 / 7) [3GPP TS 23.038 §6.1.2.1].
GSM7_SINGLE = 160
#: Characters per part of a concatenated GSM-7 message (UDH of 6 octets = 7 septets) [3GPP TS 23.040].
GSM7_SEGMENT = 153
#: UTF-16 code units of one single-part UCS-2 message (140 octets / 2).
UCS2_SINGLE = 70
#: UTF-16 code units per part of a concatenated UCS-2 message ((140 − 6) / 2).
UCS2_SEGMENT = 67

#: The GSM 7-bit default alphabet in code order 0x00-0x7F, eight rows of 16 (3GPP TS 23.038
#: §6.2.1). Position 0x1B is the escape to the extension table, not a character.
_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
#: Characters of the basic table (one septet each).
GSM7_BASIC: frozenset[str] = frozenset(_BASIC_TABLE) - {"\x1b"}
#: Characters of the extension table (ESC + one septet: two septets each), 3GPP TS 23.038
#: §6.2.1.1: form feed 0x0A, ^ 0x14, { 0x28, } 0x29, \\ 0x2F, [ 0x3C, ~ 0x3D, ] 0x3E,
#: | 0x40, € 0x65.
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")

Encoding = Literal["GSM-7", "UCS-2"]

# typographic characters that have a plain GSM-7 equivalent (after NFKD)
_PLAIN = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "«": '"', "»": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2212": "-", "\u2022": "-", "\u00b7": ".", "\u2026": "...",
    "\t": " ", "\u00a0": " ", "\u2007": " ", "\u202f": " ", "\u200b": "",
    "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "ł": "l", "Ł": "L", "ı": "i",
    "°": "o", "×": "x", "÷": "/", "œ": "oe", "Œ": "OE",
})


class SmsEncodingError(EwarnError, ValueError):
    """A text cannot be sent in the encoding asked for (the message names the character)."""


def _bad_gsm7(text: str) -> int:
    """Index of the first character outside GSM-7, or -1."""
    allowed = GSM7_BASIC | GSM7_EXTENSION
    return next((i for i, c in enumerate(text) if c not in allowed), -1)


def is_gsm7(text: str) -> bool:
    """Whether every character of ``text`` is in the GSM 7-bit alphabet (basic or extension).

    Parameters
    ----------
    text : str

    Returns
    -------
    bool

    Examples
    --------
    >>> is_gsm7("Tranh xa suoi [ewarn]"), is_gsm7("Tránh xa suối")
    (True, False)
    """
    return set(text) <= GSM7_BASIC | GSM7_EXTENSION


def sms_encoding(text: str) -> Encoding:
    """The SMS data coding a gateway uses for ``text``: ``"GSM-7"`` if it can, else ``"UCS-2"``.

    Source: 3GPP TS 23.038 §4 (data coding scheme) — a message is all GSM-7 or all UCS-2.
    """
    return "GSM-7" if is_gsm7(text) else "UCS-2"


def gsm7_length(text: str) -> int:
    """Septets ``text`` takes in GSM-7: one per basic character, two per extension character.

    Parameters
    ----------
    text : str

    Returns
    -------
    int
        Length [septets].

    Raises
    ------
    SmsEncodingError
        A character is not in the GSM 7-bit alphabet (use :func:`unaccented` first).

    Examples
    --------
    >>> gsm7_length("a{b}€")
    8
    """
    bad = _bad_gsm7(text)
    if bad >= 0:
        raise SmsEncodingError(
            f"character {text[bad]!r} (U+{ord(text[bad]):04X}) at position {bad} is not in the GSM 7-bit "
            "alphabet; send the text as UCS-2 or make it unaccented first (ewarn.alerts.encoding.unaccented)")
    return len(text) + sum(c in GSM7_EXTENSION for c in text)


def ucs2_length(text: str) -> int:
    """UTF-16 code units of ``text``: one per BMP character, two outside the BMP (e.g. emoji).

    Returns
    -------
    int
        Length [UTF-16 code units].
    """
    return len(text) + sum(ord(c) > 0xFFFF for c in text)


def _parts(units: Iterable[int], single: int, per_part: int) -> int:
    """Parts needed for characters of the given unit widths; a character is never split."""
    widths = list(units)
    if sum(widths) <= single:
        return 1
    parts, used = 1, 0
    for w in widths:
        if used + w > per_part:
            parts, used = parts + 1, 0
        used += w
    return parts


def segments(text: str) -> int:
    """SMS parts needed to send ``text`` (1 for an empty text).

    GSM-7: up to 160 septets in one message, else parts of 153 (an extension
    character's two septets stay in one part). UCS-2: up to 70 UTF-16 code
    units in one message, else parts of 67 (a surrogate pair stays in one
    part). Source: 3GPP TS 23.038 §6.1.2 and TS 23.040 §9.2.3.24.1.

    Parameters
    ----------
    text : str

    Returns
    -------
    int
        Number of SMS parts.

    Examples
    --------
    >>> segments("a" * 160), segments("a" * 161), segments("ă" * 70), segments("ă" * 71)
    (1, 2, 1, 2)
    """
    if is_gsm7(text):
        return _parts((2 if c in GSM7_EXTENSION else 1 for c in text), GSM7_SINGLE, GSM7_SEGMENT)
    return _parts((2 if ord(c) > 0xFFFF else 1 for c in text), UCS2_SINGLE, UCS2_SEGMENT)


def parts_capacity(encoding: Encoding, parts: int = 1) -> int:
    """Most characters (GSM-7 septets or UCS-2 code units) that fit in ``parts`` SMS parts."""
    single, per = (GSM7_SINGLE, GSM7_SEGMENT) if encoding == "GSM-7" else (UCS2_SINGLE, UCS2_SEGMENT)
    return single if parts <= 1 else per * parts


def unaccented(text: str, *, replacement: str = "?") -> str:
    """The *không dấu* form of ``text``: GSM-7 only, Vietnamese letters without their marks.

    Steps: Unicode compatibility decomposition (NFKD, UAX #15), every combining
    mark removed (general category Mn, e.g. U+0301 acute, U+0323 dot below,
    U+031B horn, U+0306 breve, U+0302 circumflex), đ → d and Đ → D (the stroke
    is not a combining mark), typographic quotes, dashes, ellipsis and spaces
    → ASCII, recomposition (NFC), then every character still outside GSM-7
    (SCIENCE.md §7) → ``replacement``.

    Parameters
    ----------
    text : str
    replacement : str
        Put in place of a character that has no GSM-7 form (must itself be GSM-7).

    Returns
    -------
    str
        A GSM-7 text (:func:`is_gsm7` is true).

    Examples
    --------
    >>> unaccented("Sơ tán đến Trường THCS Bảo Yên – “ngay”")
    'So tan den Truong THCS Bao Yen - "ngay"'
    """
    if not is_gsm7(replacement):
        raise SmsEncodingError(f"replacement {replacement!r} is not GSM-7; use e.g. '?'")
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c)).translate(_PLAIN)
    out = unicodedata.normalize("NFC", stripped)
    if is_gsm7(out):
        return out
    allowed = GSM7_BASIC | GSM7_EXTENSION
    return "".join(c if c in allowed else replacement for c in out)


def sms_length(text: str) -> int:
    """Length of ``text`` in its own SMS encoding: GSM-7 septets or UCS-2 code units."""
    return gsm7_length(text) if is_gsm7(text) else ucs2_length(text)

