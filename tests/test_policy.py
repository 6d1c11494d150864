"""Warning policy over a sequence of assessments.

New, unchanged, escalated, reminder, de-escalated, all-clear; summaries; state in the database.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ewarn.alerts.notice import ProvinceSummary
from ewarn.alerts.policy import (
    PolicyInputError,
    decide,
    empty_state,
    hazard_windows,
    load_state,
    province_summaries,
    save_state,
)
from ewarn.store import Store

CODES = ["02947", "02998", "04342"]
NAMES = ["Bảo Yên", "Phúc Khánh", "Khánh Hòa"]
PROVINCES = ["Lào Cai", "Lào Cai", "Yên Bái"]
HOURS = 12


def assessment(cycle: dt.datetime, flash: dict[str, list[int] | int], heavy: dict[str, list[int] | int]
               | None = None, *, source: str = "test") -> xr.Dataset:
    """A small assessment: ``HOURS`` hourly steps after ``cycle``; levels per commune (a list per hour
    or one level for every hour); rain grows with the level."""
    times = pd.date_range(cycle + dt.timedelta(hours=1), periods=HOURS, freq="h").tz_localize(None)

    def grid(levels: dict[str, list[int] | int] | None) -> np.ndarray:
        out = np.zeros((HOURS, len(CODES)), dtype=np.int8)
        for code, lv in (levels or {}).items():
            out[:, CODES.index(code)] = lv
        return out

    fl, hr = grid(flash), grid(heavy)
    top = np.maximum(fl, hr).astype(float)
    r1 = top * 10.0 + np.arange(HOURS)[:, None] * 0.1  # the latest hour is the wettest
    ds = xr.Dataset(
        {"level_flash_landslide": (("time", "commune"), fl),
         "level_heavy_rain": (("time", "commune"), hr),
         "level": (("time", "commune"), np.maximum(fl, hr)),
         "rain_1h": (("time", "commune"), r1.astype(np.float32)),
         "rain_6h": (("time", "commune"), (r1 * 4).astype(np.float32)),
         "rain_24h": (("time", "commune"), (r1 * 12).astype(np.float32))},
        coords={"time": times.values, "commune": CODES, "commune_name": ("commune", NAMES),
                "province": ("commune", PROVINCES)})
    ds.attrs.update(forecast_reference_time=pd.Timestamp(cycle).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
                    source=source)
    return ds


C0 = dt.datetime(2024, 9, 7, 0, tzinfo=dt.UTC)
KW = {"min_level": 2, "reminder_hours": 6.0, "all_clear": True}


def step(ds: xr.Dataset, state: pd.DataFrame | None, now: dt.datetime, **kw):
    notices, new = decide(ds, state, now=now, **{**KW, **kw})
    return {(n.commune_code, n.hazard): n for n in notices}, new


def test_sequence_new_unchanged_escalated_reminder_deescalated_all_clear():
    # cycle 0: Bảo Yên reaches 2 from hour 4 to 9; Phúc Khánh only level 1 (below min_level)
    lv = [0, 0, 0, 2, 2, 2, 2, 2, 2, 0, 0, 0]
    ds0 = assessment(C0, {"02947": lv, "02998": 1})
    got, st = step(ds0, None, C0)
    assert set(got) == {("02947", "flash_landslide")}
    w = got["02947", "flash_landslide"]
    assert (w.kind, w.level, w.previous_level, w.references) == ("warning", 2, 0, ())
    assert w.onset == C0 + dt.timedelta(hours=4) and w.until == C0 + dt.timedelta(hours=9)
    assert w.commune_name == "Bảo Yên" and w.province == "Lào Cai" and w.cycle == C0
    assert w.peak == C0 + dt.timedelta(hours=9) and w.rain_1h_max == pytest.approx(20.8, abs=1e-3)
    assert w.issued == C0 and w.onset.tzinfo is not None
    row = st.set_index(["commune_code", "hazard"]).loc[("02947", "flash_landslide")]
    assert row["level"] == 2 and row["notice_id"] == w.identifier and row["last_sent_at"] == C0

    # cycle 1 (+1 h), same level: nothing, the state keeps the first notice and its time
    c1 = C0 + dt.timedelta(hours=1)
    got, st1 = step(assessment(c1, {"02947": 2, "02998": 1}), st, c1)
    assert got == {}
    assert st1.set_index(["commune_code", "hazard"]).loc[("02947", "flash_landslide"), "last_sent_at"] == C0

    # cycle 2: escalates to 3 → update referencing the warning
    c2 = C0 + dt.timedelta(hours=2)
    got, st2 = step(assessment(c2, {"02947": 3}), st1, c2)
    u = got["02947", "flash_landslide"]
    assert (u.kind, u.level, u.previous_level, u.references) == ("update", 3, 2, (w.identifier,))

    # cycle 3 (+5 h after the update): unchanged, not yet time for a reminder
    c3 = c2 + dt.timedelta(hours=5)
    got, st3 = step(assessment(c3, {"02947": 3}), st2, c3)
    assert got == {}
    # cycle 4 (+6 h after the update): reminder
    c4 = c2 + dt.timedelta(hours=6)
    got, st4 = step(assessment(c4, {"02947": 3}), st3, c4)
    r = got["02947", "flash_landslide"]
    assert (r.kind, r.level, r.previous_level, r.references) == ("reminder", 3, 3, (u.identifier,))

    # cycle 5: down to 2, still >= min_level → update (de-escalation)
    c5 = c4 + dt.timedelta(hours=1)
    got, st5 = step(assessment(c5, {"02947": 2}), st4, c5)
    d = got["02947", "flash_landslide"]
    assert (d.kind, d.level, d.previous_level) == ("update", 2, 3)

    # cycle 6: below min_level → all-clear (level 0) referencing the last notice
    c6 = c5 + dt.timedelta(hours=1)
    got, st6 = step(assessment(c6, {"02947": 1}), st5, c6)
    a = got["02947", "flash_landslide"]
    assert (a.kind, a.level, a.previous_level, a.references) == ("all_clear", 0, 2, (d.identifier,))
    assert a.onset is None and a.until is None

    # cycle 7: still quiet → nothing more; cycle 8: rises again → a NEW warning
    c7 = c6 + dt.timedelta(hours=1)
    got, st7 = step(assessment(c7, {"02947": 1}), st6, c7)
    assert got == {}
    c8 = c7 + dt.timedelta(hours=1)
    got, _ = step(assessment(c8, {"02947": 4}), st7, c8)
    assert got["02947", "flash_landslide"].kind == "warning"
    assert got["02947", "flash_landslide"].previous_level == 0


def test_rerunning_a_cycle_decides_nothing_new():
    ds = assessment(C0, {"02947": 3}, {"04342": 2})
    first, st = decide(ds, empty_state(), now=C0, **KW)
    assert len(first) == 2
    again, st2 = decide(ds, st, now=C0 + dt.timedelta(minutes=10), **KW)
    assert again == []
    pd.testing.assert_frame_equal(st[["commune_code", "hazard", "level", "notice_id", "last_sent_at"]],
                                  st2[["commune_code", "hazard", "level", "notice_id", "last_sent_at"]])


def test_hazards_are_decided_separately():
    ds = assessment(C0, {"02947": 2}, {"02947": 3, "04342": 2})
    got, st = step(ds, None, C0)
    assert {(k, n.kind, n.level) for k, n in got.items()} == {
        (("02947", "flash_landslide"), "warning", 2), (("02947", "heavy_rain"), "warning", 3),
        (("04342", "heavy_rain"), "warning", 2)}
    got, _ = step(assessment(C0, {"02947": 2}, {"02947": 4, "04342": 2}), st, C0)
    assert {k: n.kind for k, n in got.items()} == {("02947", "heavy_rain"): "update"}


def test_only_forecast_times_from_now_count():
    lv = [4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]  # the storm is in the first two hours only
    ds = assessment(C0, {"02947": lv})
    assert len(step(ds, None, C0)[0]) == 1
    assert step(ds, None, C0 + dt.timedelta(hours=3))[0] == {}  # already past: no warning now
    win = hazard_windows(ds, C0 + dt.timedelta(hours=3), 2)
    assert win["level"].max() == 0 and win["onset"].isna().all()
    assert step(ds, None, C0 + dt.timedelta(days=2))[0] == {}  # no future time at all


def test_no_all_clear_when_disabled_and_the_next_rise_warns_again():
    _, st = step(assessment(C0, {"02947": 3}), None, C0)
    got, st = step(assessment(C0, {"02947": 0}), st, C0 + dt.timedelta(hours=1), all_clear=False)
    assert got == {}
    got, _ = step(assessment(C0, {"02947": 2}), st, C0 + dt.timedelta(hours=2), all_clear=False)
    assert got["02947", "flash_landslide"].kind == "warning"


def test_state_of_communes_missing_from_the_assessment_is_kept():
    _, st = step(assessment(C0, {"02947": 3}), None, C0)
    sub = assessment(C0, {}).isel(commune=[1, 2])
    got, st2 = step(sub, st, C0 + dt.timedelta(hours=1))
    assert got == {}
    assert st2.set_index(["commune_code", "hazard"]).loc[("02947", "flash_landslide"), "level"] == 3


def test_notices_most_severe_first_with_shelters():
    ds = assessment(C0, {"02947": 2, "02998": 4, "04342": 3})
    notices, _ = decide(ds, None, now=C0, shelters={"02998": "Trường THCS Phúc Khánh"}, **KW)
    assert [n.commune_code for n in notices] == ["02998", "04342", "02947"]
    assert notices[0].shelter == "Trường THCS Phúc Khánh" and notices[1].shelter == ""


def test_province_summaries_once_per_province_with_a_commune_at_risk():
    ds = assessment(C0, {"02947": 3, "02998": 1}, {"04342": 1})
    out = province_summaries(ds, min_level=2, now=C0)
    assert len(out) == 1 and isinstance(out[0], ProvinceSummary)
    s = out[0]
    assert s.province == "Lào Cai" and s.counts == {1: 1, 3: 1} and s.cycle == C0
    assert s.worst == [("Bảo Yên", 3, C0 + dt.timedelta(hours=1))]
    # a commune's level is the higher hazard; its onset the earlier one
    ds2 = assessment(C0, {"02947": [0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2], "02998": 2},
                     {"02947": 4, "04342": 2})
    by = {s.province: s for s in province_summaries(ds2, min_level=2, now=C0)}
    assert set(by) == {"Lào Cai", "Yên Bái"}
    assert by["Lào Cai"].counts == {2: 1, 4: 1}
    assert [w[0] for w in by["Lào Cai"].worst] == ["Bảo Yên", "Phúc Khánh"]
    assert province_summaries(assessment(C0, {"02947": 1}), min_level=2, now=C0) == []


def test_level_max_only_assessment_uses_the_whole_forecast():
    ds = assessment(C0, {"02947": 3}).drop_vars(["level_flash_landslide", "level_heavy_rain"])
    ds["level_flash_landslide_max"] = ("commune", np.array([3, 0, 0]))
    ds["level_heavy_rain_max"] = ("commune", np.array([0, 0, 0]))
    got, _ = step(ds, None, C0)
    assert got["02947", "flash_landslide"].level == 3


def test_missing_inputs_are_named():
    ds = assessment(C0, {"02947": 3})
    with pytest.raises(PolicyInputError, match="level_heavy_rain"):
        decide(ds.drop_vars("level_heavy_rain"), None, now=C0, **KW)
    no_cycle = ds.copy()
    no_cycle.attrs.pop("forecast_reference_time")
    with pytest.raises(PolicyInputError, match="forecast_reference_time"):
        decide(no_cycle, None, now=C0, **KW)
    with pytest.raises(PolicyInputError, match="level"):
        decide(ds, pd.DataFrame({"commune_code": ["02947"]}), now=C0, **KW)


def test_state_round_trips_through_the_database(tmp_path):
    store = Store.open(f"sqlite:///{(tmp_path / 'ewarn.db').as_posix()}")
    assert load_state(store).empty
    _, st = step(assessment(C0, {"02947": 3}, {"04342": 2}), None, C0)
    assert save_state(store, st, now=C0) == 6
    back = load_state(store)
    cols = ["commune_code", "hazard", "level", "notice_id", "kind", "source"]
    key = ["commune_code", "hazard"]
    pd.testing.assert_frame_equal(back.sort_values(key)[cols].reset_index(drop=True),
                                  st.sort_values(key)[cols].reset_index(drop=True))
    assert (back.set_index(key).sort_index()["last_sent_at"].dropna() == C0).all()
    # upsert: saving a later state replaces, never duplicates
    _, st2 = step(assessment(C0, {"02947": 4}), back, C0 + dt.timedelta(hours=1))
    save_state(store, st2)
    again = load_state(store).set_index(key)
    assert len(again) == 6 and again.loc[("02947", "flash_landslide"), "level"] == 4
