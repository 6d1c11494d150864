"""SMS text of a :class:`~ewarn.alerts.notice.Notice`: Vietnamese first, English available.

A warning names the commune, the hazard, the Decision 18/2021 level, the window
in local time (Asia/Ho_Chi_Minh), the driving rain and what to do (move away
from streams and steep slopes, go to the named shelter)::

    [ewarn] CẢNH BÁO lũ quét, sạt lở đất cấp 3 (QĐ 18/2021) xã Phúc Khánh, Lào Cai: từ 21:00
    09/09 đến 10:00 10/09; mưa 24h đến 514 mm. Tránh xa suối, taluy dốc; sơ tán đến Trường Tiểu
    học Phúc Khánh. Cấp độ do ewarn tính, không chính thức.

The words are in Jinja2 templates (``alerts/templates``), one per kind
(``warning``, ``update``, ``reminder``, ``all_clear``) and language (``vi``,
``en``), plus ``summary`` for the per-cycle province message. Each template has
two forms, chosen by the contact's preference:

* accented (``unaccented=False``): full sentences with diacritics, sent as
  UCS-2 (70 / 67 characters per part), so 4-5 parts; ends with the
  short marker "Cấp độ do ewarn tính, không chính thức." ("Level computed by
  ewarn, not official.") because the level is computed from a forecast, not
  declared (:data:`ewarn.hazard_models.levels.LEVEL_DISCLAIMER` has the full
  text; CAP carries it).
* unaccented (``unaccented=True``): a compact telegram-style form, stripped to
  không dấu (:func:`ewarn.alerts.encoding.unaccented`) that ALWAYS fits one
  GSM-7 SMS of 160 characters. The "[ewarn]" signature is its only source
  marker (no room for more). When the text is too long (long commune or
  shelter names) it is shortened in a fixed order: drop the province (the
  commune official knows it; the shelter matters more), abbreviate the
  shelter name the usual Vietnamese way (:func:`abbreviate_shelter`:
  "Trường Tiểu học" → "Trường TH", "Ủy ban nhân dân" → "UBND" ...), drop it
  (the instruction stays: "sơ tán đến nơi an toàn"), drop the rain clause,
  then the commune-type word; then the commune name is cut; never two
  parts.

A notice has at most four texts (:func:`variants`): render once per form, not
once per contact. :func:`cap_texts` gives the longer CAP headline, description
(with the full disclaimer) and instruction from ``cap.vi.j2`` / ``cap.en.j2``.

Times are shown in Asia/Ho_Chi_Minh; a naive datetime is taken as UTC. Rain
is rounded to whole millimetres (half up). A level is evacuate-grade from
:data:`EVACUATE_LEVEL` ("sơ tán"); below it the instruction is to be ready
("sẵn sàng sơ tán").
"""

from __future__ import annotations

import math
import operator
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from ewarn.alerts.encoding import (
    GSM7_SINGLE,
    Encoding,
    gsm7_length,
    segments,
    sms_encoding,
)
from ewarn.alerts.encoding import unaccented as to_unaccented
from ewarn.alerts.notice import HAZARDS, KINDS, Notice, ProvinceSummary
from ewarn.config import LOCAL_TZ
from ewarn.errors import EwarnError
from ewarn.hazard_models.levels import LEVEL_DISCLAIMER, LEVELS, MAX_LEVEL

__all__ = [
    "EVACUATE_LEVEL",
    "HAZARD_NAMES",
    "LANGUAGES",
    "CapTexts",
    "MessageError",
    "RenderedMessage",
    "abbreviate_shelter",
    "cap_texts",
    "commune_label",
    "environment",
    "local_time",
    "render",
    "render_summary",
    "variants",
]

#: Languages with templates; Vietnamese first.
LANGUAGES: tuple[str, ...] = ("vi", "en")

#: Lowest level whose instruction (and CAP responseType) is to evacuate; below it, prepare.
#: An ewarn choice: Decision 18/2021 levels 3+ ("rủi ro lớn") are where provinces order
#: evacuation of the riskiest areas.
EVACUATE_LEVEL = 3

#: Hazard names by language: (full, compact).
HAZARD_NAMES: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "vi": {"flash_landslide": ("lũ quét, sạt lở đất", "lũ quét, sạt lở"),
           "heavy_rain": ("mưa lớn", "mưa lớn")},
    "en": {"flash_landslide": ("flash flood and landslide", "flash flood/landslide"),
           "heavy_rain": ("heavy rain", "heavy rain")},
}

_TEMPLATES = Path(__file__).parent / "templates"
_TZ = ZoneInfo(LOCAL_TZ)
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# commune-type words of the 2025 list (Decision 19/2025/QĐ-TTg): vi word, English word
_COMMUNE_TYPES = (("xã", "commune"), ("phường", "ward"), ("đặc khu", "special zone"))
_PROVINCE_PREFIXES = (("thành phố ", "TP "), ("tỉnh ", ""))
#: Usual Vietnamese abbreviations in names of schools, offices and clinics (longest first).
_SHELTER_ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    ("phổ thông dân tộc bán trú", "PTDTBT"),
    ("phổ thông dân tộc nội trú", "PTDTNT"),
    ("trung học phổ thông", "THPT"),
    ("trung học cơ sở", "THCS"),
    ("tiểu học", "TH"),
    ("mầm non", "MN"),
    ("ủy ban nhân dân", "UBND"),
    ("uỷ ban nhân dân", "UBND"),
    ("nhà văn hóa", "NVH"),
    ("nhà văn hoá", "NVH"),
    ("trạm y tế", "TYT"),
    ("trung tâm", "TT"),
)


class MessageError(EwarnError):
    """A notice cannot be written as a message (the message names the field and the fix)."""


@dataclass(frozen=True)
class RenderedMessage:
    """One SMS text and how it goes over the air.

    Attributes
    ----------
    text : str
        The text to send.
    encoding : {"GSM-7", "UCS-2"}
    segments : int
        SMS parts it takes (:func:`ewarn.alerts.encoding.segments`).
    language : {"vi", "en"}
    unaccented : bool
        The compact không dấu form (always one GSM-7 part).
    """

    text: str
    encoding: Encoding
    segments: int
    language: str
    unaccented: bool


# --------------------------------------------------------------------------- formatting


def local_time(t: datetime) -> datetime:
    """``t`` in Asia/Ho_Chi_Minh (a naive ``t`` is taken as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(_TZ)


def _hm(t: datetime) -> str:
    return f"{t:%H:%M}"


def _hh(t: datetime) -> str:
    """Vietnamese short clock: 21h, 21h30."""
    return f"{t.hour}h" + (f"{t.minute:02d}" if t.minute else "")


def _dm(t: datetime) -> str:
    return f"{t:%d/%m}"


def _d_m(t: datetime) -> str:
    """Vietnamese short date: 9/9, 10/12."""
    return f"{t.day}/{t.month}"


def _dmon(t: datetime) -> str:
    return f"{t.day} {_MONTHS_EN[t.month - 1]}"


def _split_commune(name: str) -> tuple[str, str]:
    """(type word in lower case or "", bare name) of a commune name like "Phường Hoàn Kiếm"."""
    low = name.casefold()
    for word, _ in _COMMUNE_TYPES:
        if low.startswith(word + " "):
            return word, name[len(word) + 1:].strip()
    return "", name.strip()


def commune_label(name: str, language: str = "vi", *, bare: bool = False) -> str:
    """How a message names a commune: "xã Phúc Khánh", "phường Hoàn Kiếm", "Phúc Khánh commune".

    A name without a type word ("Phúc Khánh") is a xã. ``bare`` gives the name alone.
    """
    word, bare_name = _split_commune(name)
    if bare:
        return bare_name
    word = word or "xã"
    if language == "en":
        return f"{bare_name} {dict(_COMMUNE_TYPES)[word]}"
    return f"{word} {bare_name}"


def _short_province(name: str) -> str:
    low = name.casefold()
    for prefix, short in _PROVINCE_PREFIXES:
        if low.startswith(prefix):
            return short + name[len(prefix):]
    return name


def abbreviate_shelter(name: str) -> str:
    """A shelter name with the usual abbreviations: "Trường Tiểu học Phúc Khánh" → "Trường TH Phúc Khánh".

    Abbreviations: THPT, THCS, TH, MN (schools), PTDTBT / PTDTNT (ethnic
    boarding schools), UBND (People's Committee), NVH (cultural house), TYT
    (health station), TT (centre) — the forms Vietnamese official writing uses.
    """
    out = unicodedata.normalize("NFC", name)
    for long, short in _SHELTER_ABBREVIATIONS:
        out = re.sub(re.escape(long), short, out, flags=re.IGNORECASE)
    return out


def _rain_mm(x: float | None) -> int | None:
    """Rain rounded half up to whole mm; None when unknown or below 0.5 mm."""
    if x is None or not math.isfinite(x) or x < 0.5:
        return None
    return math.floor(x + 0.5)


def _tidy(text: str) -> str:
    """One line: whitespace runs to one space, no space before punctuation."""
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r" ([,.;:)])", r"\1", text)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The Jinja2 environment of the SMS templates (StrictUndefined, no autoescape: plain text)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # SMS is plain text, never HTML
        keep_trailing_newline=False,
    )
    env.filters.update(hm=_hm, hh=_hh, dm=_dm, d_m=_d_m, dmon=_dmon)
    return env


# --------------------------------------------------------------------------- notices


def _as_level(value: Any, lowest: int = 0) -> int | None:
    """``value`` as a level ``lowest``..5 (Python or numpy integer), or None if it is not one."""
    try:
        level = operator.index(value)
    except TypeError:
        return None
    return level if lowest <= level <= MAX_LEVEL else None


def _check(notice: Notice, language: str) -> None:
    def bad(fld: str, value: Any, fix: str) -> MessageError:
        return MessageError(f"notice {notice.identifier}: field '{fld}' = {value!r} {fix}")

    if language not in LANGUAGES:
        raise MessageError(f"language {language!r} has no templates; use one of {', '.join(LANGUAGES)} "
                           "(contacts.csv column 'language')")
    if notice.kind not in KINDS:
        raise bad("kind", notice.kind, f"is not a notice kind; use one of {', '.join(KINDS)}")
    if notice.hazard not in HAZARDS:
        raise bad("hazard", notice.hazard, f"is not a hazard; use one of {', '.join(HAZARDS)}")
    for fld in ("level", "previous_level"):
        v = getattr(notice, fld)
        if _as_level(v) is None:
            raise bad(fld, v, f"is not a level; use a whole number 0..{MAX_LEVEL}")
    if notice.kind != "all_clear" and notice.level < 1:
        raise bad("level", notice.level, f"cannot be 0 in a {notice.kind}; a level 0 notice is an all_clear")
    if not notice.commune_name.strip():
        raise bad("commune_name", notice.commune_name, "is empty; every commune needs its name")


def _notice_context(notice: Notice, language: str, sender: str) -> dict[str, Any]:
    issued = local_time(notice.issued)
    onset = local_time(notice.onset) if notice.onset is not None else None
    until = local_time(notice.until) if notice.until is not None else None
    level = LEVELS[int(notice.level)]
    previous = LEVELS[int(notice.previous_level)]
    full, short = HAZARD_NAMES[language][notice.hazard]
    return {
        "sender": sender,
        "kind": notice.kind,
        "hazard": full,
        "hazard_short": short,
        "level": int(notice.level),
        "previous_level": int(notice.previous_level),
        "level_name": (level.name_vi if language == "vi" else level.name_en).lower(),
        "previous_level_name": (previous.name_vi if language == "vi" else previous.name_en).lower(),
        "commune": commune_label(notice.commune_name, language),
        "province": notice.province,
        "issued": issued,
        "onset": onset,
        "until": until,
        "ongoing": onset is None or onset <= issued,
        "rain24": _rain_mm(notice.rain_24h_max),
        "rain6": _rain_mm(notice.rain_6h_max),
        "rain1": _rain_mm(notice.rain_1h_max),
        "peak": local_time(notice.peak) if notice.peak is not None else None,
        "source": notice.source,
        "cycle": local_time(notice.cycle),
        "risk": level.risk_vi if language == "vi" else level.risk_en,
        "disclaimer": LEVEL_DISCLAIMER[language],
        "shelter": notice.shelter.strip(),
        "evacuate": notice.level >= EVACUATE_LEVEL,
        "compact": False,
    }


# shortening steps of the compact form, in order (each adds to the previous)
_SHORTEN: tuple[dict[str, Any], ...] = (
    {},
    {"province": ""},
    {"shelter": "abbreviated"},
    {"shelter": ""},
    {"rain24": None},
    {"abbreviate": True},
)


def _fit_gsm7(text: str, limit: int = GSM7_SINGLE) -> str:
    """Cut a GSM-7 text to ``limit`` septets (never half an escape pair)."""
    while gsm7_length(text) > limit:
        text = text[:-1]
    return text


def _render_compact(template: jinja2.Template, ctx: dict[str, Any], cut: str | None) -> str:
    """The compact form shortened step by step until it fits one GSM-7 part.

    ``cut`` names the context string cut character by character as a last step.
    """
    over: dict[str, Any] = {"compact": True, "abbreviate": False}
    text = ""
    for step in _SHORTEN:
        over |= step
        if over.get("shelter") == "abbreviated":
            over["shelter"] = abbreviate_shelter(ctx["shelter"])
        text = to_unaccented(_tidy(template.render(ctx | over)))
        if gsm7_length(text) <= GSM7_SINGLE:
            return text
    if cut:
        value = str(ctx[cut])
        while value:
            value = value[:-1].rstrip()
            text = to_unaccented(_tidy(template.render(ctx | over | {cut: value})))
            if gsm7_length(text) <= GSM7_SINGLE:
                return text
    return _fit_gsm7(text)


def _message(text: str, language: str, flat: bool) -> RenderedMessage:
    return RenderedMessage(text=text, encoding=sms_encoding(text), segments=segments(text),
                           language=language, unaccented=flat)


def render(notice: Notice, *, language: str = "vi", unaccented: bool = False,
           sender: str = "ewarn") -> RenderedMessage:
    """SMS text of one notice for contacts of one language and form.

    Parameters
    ----------
    notice : Notice
    language : {"vi", "en"}
        The contact's language (``contacts.csv`` ``language``).
    unaccented : bool
        The contact's preference (``contacts.csv`` ``unaccented``): the compact
        không dấu form that fits one GSM-7 SMS of 160 characters.
    sender : str
        Signature in brackets at the start (settings ``[alerts] sender``).

    Returns
    -------
    RenderedMessage

    Raises
    ------
    MessageError
        Unknown language, kind or hazard, a level outside 0..5, or an empty commune name.
    """
    _check(notice, language)
    ctx = _notice_context(notice, language, sender.strip() or "ewarn")
    ctx["abbreviate"] = False
    template = environment().get_template(f"{notice.kind}.{language}.j2")
    if unaccented:
        ctx["commune_bare"] = commune_label(notice.commune_name, language, bare=True)
        ctx["province"] = _short_province(notice.province)
        return _message(_render_compact(template, ctx, cut="commune_bare"), language, True)
    return _message(_tidy(template.render(ctx)), language, False)


def variants(notice: Notice, *, sender: str = "ewarn",
             forms: Iterable[tuple[str, bool]] | None = None) -> dict[tuple[str, bool], RenderedMessage]:
    """Every form of one notice at once, by (language, unaccented).

    A notice goes to many contacts but has at most four texts: render each
    once and look the contact's text up by its preference.

    Parameters
    ----------
    notice : Notice
    sender : str
    forms : iterable of (language, unaccented), optional
        Default: all four.

    Returns
    -------
    dict of (str, bool) to RenderedMessage
    """
    if forms is None:
        forms = [(lang, flat) for lang in LANGUAGES for flat in (False, True)]
    keys = [(lang, bool(flat)) for lang, flat in forms]
    return {(lang, flat): render(notice, language=lang, unaccented=flat, sender=sender)
            for lang, flat in dict.fromkeys(keys)}


@dataclass(frozen=True)
class CapTexts:
    """The words of one CAP 1.2 ``<info>`` block (:mod:`ewarn.alerts.cap` builds the XML).

    Attributes
    ----------
    language : str
        ``vi`` or ``en``.
    event, headline, description, instruction, area_desc : str
        Texts of the CAP elements of the same names; ``description`` ends with the
        full :data:`~ewarn.hazard_models.levels.LEVEL_DISCLAIMER`.
    """

    language: str
    event: str
    headline: str
    description: str
    instruction: str
    area_desc: str


def cap_texts(notice: Notice, *, language: str = "vi") -> CapTexts:
    """Texts of the CAP ``<info>`` block of a notice (templates ``cap.vi.j2``, ``cap.en.j2``).

    Raises
    ------
    MessageError
        As :func:`render`.
    """
    _check(notice, language)
    ctx = _notice_context(notice, language, "ewarn")
    module = environment().get_template(f"cap.{language}.j2").make_module(ctx)
    parts = {name: _tidy(str(getattr(module, name)()))
             for name in ("event", "headline", "description", "instruction", "area_desc")}
    return CapTexts(language=language, **parts)


# --------------------------------------------------------------------------- province summary


def render_summary(summary: ProvinceSummary, *, language: str = "vi", unaccented: bool = False,
                   sender: str = "ewarn") -> RenderedMessage:
    """The per-cycle message for province operators: communes per level and the worst ones.

    Parameters
    ----------
    summary : ProvinceSummary
    language : {"vi", "en"}
    unaccented : bool
        Compact không dấu form in one GSM-7 SMS: the worst communes are
        dropped from the end of the list until it fits.
    sender : str

    Returns
    -------
    RenderedMessage

    Raises
    ------
    MessageError
        Unknown language or a level outside 1..5 in ``counts`` / ``worst``.
    """
    if language not in LANGUAGES:
        raise MessageError(f"language {language!r} has no templates; use one of {', '.join(LANGUAGES)}")
    for where, lvl in [("counts", k) for k in summary.counts] + [("worst", w[1]) for w in summary.worst]:
        if _as_level(lvl, 1) is None:
            raise MessageError(f"summary {summary.identifier}: level {lvl!r} in '{where}' is not a whole "
                               f"number 1..{MAX_LEVEL}; fix the summary")
    names = {k: (LEVELS[k].name_vi if language == "vi" else LEVELS[k].name_en).lower() for k in LEVELS}
    counts = [(int(k), names[int(k)], int(n))
              for k, n in sorted(summary.counts.items(), key=lambda kv: -int(kv[0])) if n > 0]
    worst = [(commune_label(c, language, bare=True), names[int(lvl)],
              None if t is None else local_time(t)) for c, lvl, t in summary.worst]
    ctx = {
        "sender": sender.strip() or "ewarn",
        "province": summary.province,
        "cycle": local_time(summary.cycle),
        "issued": local_time(summary.issued),
        "counts": counts,
        "total": sum(n for _, _, n in counts),
        "worst": worst,
        "compact": False,
        "abbreviate": False,
    }
    template = environment().get_template(f"summary.{language}.j2")
    if not unaccented:
        return _message(_tidy(template.render(ctx)), language, False)
    ctx["province"] = _short_province(summary.province)
    for n in range(len(worst), -1, -1):
        text = to_unaccented(_tidy(template.render(ctx | {"compact": True, "worst": worst[:n]})))
        if gsm7_length(text) <= GSM7_SINGLE:
            return _message(text, language, True)
    text = to_unaccented(_tidy(template.render(ctx | {"compact": True, "worst": [], "abbreviate": True})))
    return _message(_fit_gsm7(text), language, True)
