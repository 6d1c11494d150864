"""SMS text of notices: Vietnamese first, local time, one GSM-7 SMS for the không dấu form."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from ewarn.alerts.encoding import gsm7_length, segments, unaccented
from ewarn.alerts.messages import (
    MessageError,
    RenderedMessage,
    abbreviate_shelter,
    cap_texts,
    commune_label,
    render,
    render_summary,
    variants,
)
from ewarn.alerts.notice import KINDS, Notice, ProvinceSummary
from ewarn.errors import EwarnError
from ewarn.hazard_models.levels import LEVEL_DISCLAIMER, LEVELS

CYCLE = datetime(2024, 9, 7, 12, tzinfo=UTC)


def notice(**kw) -> Notice:
    base = dict(
        kind="warning", hazard="flash_landslide", commune_code="02998", commune_name="Phúc Khánh",
        province="Lào Cai", level=3, previous_level=0, source="demo", cycle=CYCLE,
        onset=datetime(2024, 9, 9, 14, tzinfo=UTC), peak=datetime(2024, 9, 9, 20, tzinfo=UTC),
        until=datetime(2024, 9, 10, 3, tzinfo=UTC), rain_24h_max=513.6, rain_6h_max=210.0,
        rain_1h_max=61.0, issued=datetime(2024, 9, 7, 15, 10, tzinfo=UTC),
        shelter="Trường Tiểu học Phúc Khánh",
    )
    base.update(kw)
    return Notice(**base)


def kind_notice(kind: str, **kw) -> Notice:
    levels = {"warning": (3, 0), "update": (4, 3), "reminder": (3, 3), "all_clear": (0, 3)}[kind]
    return notice(kind=kind, level=levels[0], previous_level=levels[1], **kw)


def test_vietnamese_warning_reads_as_specified():
    msg = render(notice())
    assert msg.text == (
        "[ewarn] CẢNH BÁO lũ quét, sạt lở đất cấp 3 (QĐ 18/2021) xã Phúc Khánh, Lào Cai: "
        "từ 21:00 09/09 đến 10:00 10/09; mưa 24h đến 514 mm. Tránh xa suối, taluy dốc; "
        "sơ tán đến Trường Tiểu học Phúc Khánh. Cấp độ do ewarn tính, không chính thức.")
    assert msg.encoding == "UCS-2"
    assert msg.segments == segments(msg.text) == 4
    assert (msg.language, msg.unaccented) == ("vi", False)


def test_unaccented_warning_is_one_gsm7_sms_with_everything():
    msg = render(notice(), unaccented=True)
    assert msg.text == ("[ewarn] CANH BAO lu quet, sat lo cap 3 xa Phuc Khanh, Lao Cai 21h 9/9-10h 10/9, "
                        "mua 24h 514mm. Tranh xa suoi, taluy doc; so tan den Truong Tieu hoc Phuc Khanh")
    assert (msg.encoding, msg.segments, msg.unaccented) == ("GSM-7", 1, True)


def test_times_are_local_and_cross_midnight():
    # 16:30 UTC is 23:30 in Vietnam; 17:30 UTC is 00:30 of the NEXT local day
    n = notice(onset=datetime(2024, 9, 9, 16, 30, tzinfo=UTC), until=datetime(2024, 9, 9, 17, 30, tzinfo=UTC))
    assert "từ 23:30 09/09 đến 00:30 10/09" in render(n).text
    assert "23h30 9/9-0h30 10/9" in render(n, unaccented=True).text
    # same local day: the date is written once
    n = notice(onset=datetime(2024, 9, 9, 14, tzinfo=UTC), until=datetime(2024, 9, 9, 16, tzinfo=UTC))
    assert "từ 21:00 đến 23:00 09/09" in render(n).text
    assert "21h-23h 9/9" in render(n, unaccented=True).text
    # a naive datetime is UTC (assessment times are UTC naive)
    naive = notice(onset=datetime(2024, 9, 9, 14), until=datetime(2024, 9, 10, 3))
    assert render(naive).text == render(notice()).text


def test_window_already_started_or_open():
    issued = datetime(2024, 9, 9, 15, tzinfo=UTC)
    started = notice(issued=issued)  # onset 14:00 UTC is before the notice
    assert "từ nay đến 10:00 10/09" in render(started).text
    assert "from now until 10:00 10 Sep" in render(started, language="en").text
    open_end = notice(until=None)
    assert ": từ 21:00 09/09; mưa" in render(open_end).text
    assert render(notice(onset=None, until=None)).text.count("từ nay") == 1


@pytest.mark.parametrize(("rain", "shown"), [(513.5, "514 mm"), (513.49, "513 mm"), (0.5, "1 mm")])
def test_rain_rounded_half_up(rain, shown):
    assert f"mưa 24h đến {shown}" in render(notice(rain_24h_max=rain)).text


@pytest.mark.parametrize("rain", [float("nan"), 0.0, 0.2])
def test_no_rain_clause_without_rain(rain):
    text = render(notice(rain_24h_max=rain)).text
    assert "mưa 24h" not in text
    assert "10:00 10/09. Tránh xa suối" in text


def test_level_names_and_instruction_follow_the_level():
    for level in (1, 2, 3, 4, 5):
        text = render(notice(level=level)).text
        assert LEVELS[level].name_vi.lower() in text
        assert LEVELS[level].name_en.lower() in render(notice(level=level), language="en").text
        if level >= 3:
            assert "; sơ tán đến Trường Tiểu học Phúc Khánh" in text
        else:
            assert "sẵn sàng sơ tán đến Trường Tiểu học Phúc Khánh" in text
    assert "sơ tán đến nơi an toàn" in render(notice(shelter="")).text
    assert "evacuate to a safe place" in render(notice(shelter=""), language="en").text


def test_heavy_rain_hazard():
    n = notice(hazard="heavy_rain", level=4)
    assert "CẢNH BÁO mưa lớn cấp 4" in render(n).text
    assert "WARNING: heavy rain level 4" in render(n, language="en").text
    assert "CANH BAO mua lon cap 4" in render(n, unaccented=True).text


def test_english_warning():
    msg = render(notice(), language="en")
    assert msg.text == (
        "[ewarn] WARNING: flash flood and landslide level 3 (Decision 18/2021) in Phúc Khánh commune, "
        "Lào Cai: from 21:00 9 Sep to 10:00 10 Sep (Vietnam time); 24h rain up to 514 mm. Keep away "
        "from streams and steep slopes; evacuate to Trường Tiểu học Phúc Khánh. Level computed by "
        "ewarn, not official.")
    assert msg.language == "en"
    flat = render(notice(), language="en", unaccented=True)
    assert flat.encoding == "GSM-7" and flat.segments == 1
    assert flat.text.startswith("[ewarn] WARNING flash flood/landslide level 3 Phuc Khanh")


def test_update_reminder_all_clear_wording():
    up = render(kind_notice("update")).text
    assert "CẬP NHẬT CẢNH BÁO lũ quét, sạt lở đất: tăng lên cấp 4 (từ cấp 3, QĐ 18/2021)" in up
    down = render(notice(kind="update", level=2, previous_level=3)).text
    assert "giảm xuống cấp 2 (từ cấp 3" in down
    assert "raised to level 4 (from level 3" in render(kind_notice("update"), language="en").text
    assert "NHẮC LẠI: vẫn CẢNH BÁO lũ quét, sạt lở đất cấp 3" in render(kind_notice("reminder")).text
    clear = render(kind_notice("all_clear"))
    assert clear.text.startswith("[ewarn] HẾT CẢNH BÁO lũ quét, sạt lở đất cấp 3 xã Phúc Khánh, Lào Cai: "
                                 "từ 22:10 07/09")
    assert "chỉ trở về nhà khi chính quyền địa phương cho phép" in clear.text
    assert "sơ tán" not in clear.text
    en = render(kind_notice("all_clear"), language="en").text
    assert "ALL CLEAR" in en and "return home only when the local authority says so" in en
    flat = render(kind_notice("all_clear"), unaccented=True).text
    assert "HET CANH BAO" in flat and "Chi ve nha khi chinh quyen dia phuong cho phep" in flat


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("language", ["vi", "en"])
def test_every_kind_and_language_renders_both_forms(kind, language):
    n = kind_notice(kind)
    full = render(n, language=language)
    flat = render(n, language=language, unaccented=True)
    for msg in (full, flat):
        assert isinstance(msg, RenderedMessage)
        assert msg.text.startswith("[ewarn] ")
        assert "\n" not in msg.text and "  " not in msg.text and " ." not in msg.text
        assert msg.segments == segments(msg.text)
    assert full.encoding == "UCS-2"  # the accented names force UCS-2, English too
    assert (flat.encoding, flat.segments) == ("GSM-7", 1)
    assert gsm7_length(flat.text) <= 160
    assert "Phuc Khanh" in flat.text


def test_sender_signature():
    assert render(notice(), sender="PCTT Lào Cai").text.startswith("[PCTT Lào Cai] CẢNH BÁO")
    assert render(notice(), sender="PCTT Lào Cai", unaccented=True).text.startswith("[PCTT Lao Cai] ")


def test_commune_types():
    assert commune_label("Phúc Khánh") == "xã Phúc Khánh"
    assert commune_label("Phường Văn Miếu - Quốc Tử Giám") == "phường Văn Miếu - Quốc Tử Giám"
    assert commune_label("Đặc khu Phú Quốc", "en") == "Phú Quốc special zone"
    assert commune_label("Xã Bảo Yên", "en") == "Bảo Yên commune"
    assert commune_label("Phường Hoàn Kiếm", bare=True) == "Hoàn Kiếm"
    text = render(notice(commune_name="Phường Cam Đường")).text
    assert "cấp 3 (QĐ 18/2021) phường Cam Đường, Lào Cai" in text


def test_shelter_abbreviations():
    assert abbreviate_shelter("Trường Tiểu học Phúc Khánh") == "Trường TH Phúc Khánh"
    assert abbreviate_shelter("Trường Trung học cơ sở Bảo Hà") == "Trường THCS Bảo Hà"
    assert abbreviate_shelter("Ủy ban nhân dân xã Bảo Yên") == "UBND xã Bảo Yên"
    assert abbreviate_shelter("Trạm Y tế xã Châu Quế") == "TYT xã Châu Quế"
    assert abbreviate_shelter("Nhà văn hóa thôn Làng Lớn") == "NVH thôn Làng Lớn"


def test_compact_form_shortens_in_order():
    # 1. the province goes first
    text = render(notice(shelter="Trường Tiểu học Phúc Khánh số 2"), unaccented=True).text
    assert "Lao Cai" not in text and text.endswith("so tan den Truong Tieu hoc Phuc Khanh so 2")
    # 2. then the shelter name is abbreviated
    text = render(notice(shelter="Trường Tiểu học Phúc Khánh số 2 thôn Bản"), unaccented=True).text
    assert text.endswith("so tan den Truong TH Phuc Khanh so 2 thon Ban")
    assert "mua 24h 514mm" in text
    # 3. a shelter name too long even abbreviated is dropped; the instruction stays
    n = notice(shelter="Nhà văn hóa thôn Nậm Khánh Thượng và điểm trường mầm non Nậm Khánh")
    text = render(n, unaccented=True).text
    assert "Nam Khanh" not in text and "Tranh xa suoi, taluy doc; so tan den noi an toan" in text
    assert "mua 24h 514mm" in text and "xa Phuc Khanh" in text
    # 4. then the rain; 5. then the commune-type word; the commune name stays whole
    long_name = "Văn Miếu Quốc Tử Giám Hoàn Kiếm Đống Đa Ba Đình"  # 47 characters
    n = notice(commune_name=long_name, shelter="x" * 80, kind="update", level=4, previous_level=3)
    msg = render(n, unaccented=True)
    assert unaccented(long_name) in msg.text
    assert "mua 24h" not in msg.text and "xa Van Mieu" not in msg.text
    assert msg.segments == 1 and gsm7_length(msg.text) <= 160


def test_absurdly_long_names_are_cut_never_two_sms():
    n = notice(commune_name="Ngọc " * 60, province="Tỉnh " + "Lâm " * 40, shelter="Trường " * 30)
    for lang in ("vi", "en"):
        msg = render(n, language=lang, unaccented=True, sender="ewarn")
        assert msg.segments == 1 and msg.encoding == "GSM-7"
        assert gsm7_length(msg.text) <= 160
        assert "Ngoc Ngoc" in msg.text  # the name is cut, not dropped
        assert msg.text.endswith("so tan den noi an toan" if lang == "vi" else "evacuate to a safe place")
    assert render(n).segments > 5  # the accented form may take many parts


def test_longest_real_commune_names_fit_one_sms():
    vp = pytest.importorskip("vietnam_provinces")
    wards = list(vp.Ward.iter_all())
    provinces = {p.code: p.name for p in vp.Province.iter_all()}
    assert len(wards) > 3000
    longest = sorted(wards, key=lambda w: (-len(unaccented(w.name)), w.code))[:40]
    shelter = "Trường Phổ thông dân tộc bán trú Trung học cơ sở"  # a long real-style school name
    for w in longest:
        for kind in KINDS:
            n = kind_notice(kind, commune_name=w.name, province=provinces[w.province_code], shelter=shelter)
            for lang in ("vi", "en"):
                msg = render(n, language=lang, unaccented=True)
                assert msg.segments == 1 and msg.encoding == "GSM-7", (w.name, kind, lang, msg.text)
                # the commune is named in full
                assert unaccented(commune_label(w.name, bare=True)) in msg.text, msg.text
                if kind != "all_clear":
                    assert re.search(r"(so tan|evacuate)", msg.text), msg.text


def test_variants_once_per_form():
    out = variants(notice())
    assert set(out) == {("vi", False), ("vi", True), ("en", False), ("en", True)}
    assert out[("vi", True)] == render(notice(), unaccented=True)
    only = variants(notice(), forms=[("vi", 1), ("vi", True)])
    assert list(only) == [("vi", True)]


def test_numpy_levels_are_accepted():
    n = notice(level=np.int8(3), previous_level=np.int64(0))
    assert render(n).text == render(notice()).text


@pytest.mark.parametrize(("change", "match"), [
    ({"level": 7}, "field 'level' = 7"),
    ({"level": 2.5}, "field 'level'"),
    ({"level": 0}, "level 0 notice is an all_clear"),
    ({"hazard": "tsunami"}, "field 'hazard'"),
    ({"kind": "panic"}, "field 'kind'"),
    ({"commune_name": "  "}, "field 'commune_name'"),
])
def test_bad_notice_is_a_clear_error(change, match):
    with pytest.raises(MessageError, match=match) as err:
        render(dataclasses.replace(notice(), **change))
    assert isinstance(err.value, EwarnError)
    assert "ewarn-demo-20240907T12-02998" in str(err.value)


def test_unknown_language():
    with pytest.raises(MessageError, match="'fr' has no templates; use one of vi, en"):
        render(notice(), language="fr")
    with pytest.raises(MessageError, match="'fr'"):
        render_summary(summary(), language="fr")


def summary(**kw) -> ProvinceSummary:
    onset = datetime(2024, 9, 9, 14, tzinfo=UTC)
    base = dict(
        province="Lào Cai", source="demo", cycle=CYCLE, counts={1: 2, 3: 4, 2: 5},
        worst=[("Phúc Khánh", 3, onset), ("Bảo Yên", 3, onset + timedelta(hours=13)),
               ("Xã Nghĩa Đô", 2, None), ("Phường Cam Đường", 2, onset + timedelta(hours=20))],
        issued=datetime(2024, 9, 7, 15, 10, tzinfo=UTC))
    base.update(kw)
    return ProvinceSummary(**base)


def test_summary_accented_lists_levels_high_first_and_worst():
    msg = render_summary(summary())
    assert msg.text.startswith("[ewarn] TÓM TẮT Lào Cai, dự báo 19:00 07/09: cấp 3: 4 xã, cấp 2: 5 xã, "
                               "cấp 1: 2 xã. Nguy cơ cao nhất: Phúc Khánh cấp 3 từ 21:00 09/09; Bảo Yên "
                               "cấp 3 từ 10:00 10/09; Nghĩa Đô cấp 2; Cam Đường cấp 2 từ 17:00 10/09.")
    assert msg.text.endswith("Cấp độ do ewarn tính, không chính thức.")
    en = render_summary(summary(), language="en").text
    assert "level 3: 4 communes, level 2: 5 communes, level 1: 2 communes" in en


def test_summary_compact_drops_worst_from_the_end():
    many = [(f"Xã Thượng Hà Số {i}", 3, None) for i in range(20)]
    msg = render_summary(summary(worst=many), unaccented=True)
    assert (msg.encoding, msg.segments) == ("GSM-7", 1)
    assert "Thuong Ha So 0" in msg.text and "Thuong Ha So 19" not in msg.text
    assert "cap 3: 4 xa, cap 2: 5 xa, cap 1: 2 xa" in msg.text
    shown = msg.text.count("Thuong Ha So")
    assert 1 <= shown < 20
    # one more entry would not have fit: the list is as long as one SMS allows
    assert all(f"So {i}" in msg.text for i in range(shown))


def test_summary_without_communes_at_risk():
    msg = render_summary(summary(counts={}, worst=[]))
    assert "không có xã nào từ cấp 1 trở lên" in msg.text
    assert "Nguy cơ cao nhất" not in msg.text
    assert "khong xa nao tu cap 1" in render_summary(summary(counts={}, worst=[]), unaccented=True).text


def test_summary_bad_level():
    with pytest.raises(MessageError, match="level 9 in 'worst'"):
        render_summary(summary(worst=[("Phúc Khánh", 9, None)]))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("language", ["vi", "en"])
def test_cap_texts(kind, language):
    t = cap_texts(kind_notice(kind), language=language)
    assert t.language == language
    assert t.event == ("Lũ quét, sạt lở đất" if language == "vi" else "Flash flood and landslide")
    assert t.area_desc == ("xã Phúc Khánh, Lào Cai" if language == "vi" else "Phúc Khánh commune, Lào Cai")
    assert t.headline.endswith(t.area_desc)
    assert t.description.endswith(LEVEL_DISCLAIMER[language])
    for text in (t.headline, t.description, t.instruction):
        assert "\n" not in text and "  " not in text and " ." not in text
    if kind == "all_clear":
        assert "sơ tán" not in t.instruction and "evacuate" not in t.instruction
    else:
        assert "514 mm" in t.description
        assert ("21:00 09/09" if language == "vi" else "21:00 9 Sep") in t.description
        assert "Trường Tiểu học Phúc Khánh" in t.instruction
