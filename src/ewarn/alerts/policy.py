"""Warning policy: which communes get a warning, an update, a reminder or an all-clear.

From one assessment (DESIGN.md "Risk assessment") and the previous alert
state of every commune and hazard, :func:`decide` says what to tell each
commune's officials, as :class:`~ewarn.alerts.notice.Notice` objects, and
returns the new state. It is a pure function, vectorized over communes
(notices are built only for the communes that get one).

Hazards: ``flash_landslide`` (Decision 18/2021/QĐ-TTg Art. 46, from
``level_flash_landslide``) and ``heavy_rain`` (Art. 44, from
``level_heavy_rain``). For each, the level of the WINDOW is the highest level
at forecast times ``>= now`` (times already past no longer warn); the onset
is the first such time at or above ``min_level``, ``until`` the last one.

Rules, per commune and hazard, with ``prev`` the level of the state
(0 when none) and ``level`` the window level:

========================================  ============================================
``level >= min_level > prev``             ``warning`` (new)
both ``>= min_level``, ``level > prev``   ``update`` (escalation)
both ``>= min_level``, ``level < prev``   ``update`` (de-escalation: a lower level still
                                          warns, and the officials must know the new one)
``level == prev >= min_level``            nothing, unless ``reminder_hours`` have passed
                                          since the last notice: ``reminder``
``prev >= min_level > level``             ``all_clear`` (level 0) referencing the last
                                          notice, when ``all_clear`` is on
otherwise                                 nothing
========================================  ============================================

There are no quiet hours: a warning goes out whatever the time of day (the
design choice of the issue; a flash flood at 3 a.m. is the case that matters).

Province operators get one :class:`~ewarn.alerts.notice.ProvinceSummary` per
province per cycle when any of its communes is at or above ``min_level``
(:func:`province_summaries`); the outbox key makes it once per cycle.

The state lives in the ``alert_state`` table (one row per commune and hazard,
independent of the forecast source): :func:`load_state`, :func:`save_state`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from sqlalchemy import Column, Connection, DateTime, Integer, String, Table, Text, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ewarn.alerts.notice import HAZARDS, Notice, ProvinceSummary
from ewarn.errors import EwarnError
from ewarn.store import Store, metadata, utcnow

__all__ = [
    "STATE_COLUMNS",
    "PolicyInputError",
    "alert_state",
    "assessment_cycle",
    "decide",
    "empty_state",
    "hazard_windows",
    "load_state",
    "province_summaries",
    "save_state",
]

#: Rain windows a notice carries [h].
_RAIN_WINDOWS = (24, 6, 1)
#: Communes listed by name in a province summary.
WORST_COMMUNES = 5


class PolicyInputError(EwarnError):
    """The assessment or the state lacks what the policy needs (names the variable and the fix)."""


alert_state = Table(
    "alert_state",
    metadata,
    Column("commune_code", String(16), primary_key=True),
    Column("hazard", String(32), primary_key=True),
    Column("level", Integer, nullable=False),  # window level at the last decision
    Column("notice_id", Text, nullable=False, default=""),  # the last notice sent
    Column("kind", String(16), nullable=False, default=""),  # its kind
    Column("last_sent_at", DateTime(timezone=True)),  # when it was decided
    Column("source", String(64), nullable=False, default=""),  # last assessment's source
    Column("cycle", DateTime(timezone=True)),  # and cycle
    Column("updated_at", DateTime(timezone=True)),
)

#: Columns of a state frame (``alert_state`` without ``updated_at``).
STATE_COLUMNS = ["commune_code", "hazard", "level", "notice_id", "kind", "last_sent_at", "source", "cycle"]


def empty_state() -> pd.DataFrame:
    """A state frame with no rows (every commune at level 0, nothing sent)."""
    return pd.DataFrame({
        "commune_code": pd.Series([], dtype=str), "hazard": pd.Series([], dtype=str),
        "level": pd.Series([], dtype="int64"), "notice_id": pd.Series([], dtype=str),
        "kind": pd.Series([], dtype=str), "last_sent_at": pd.Series([], dtype="datetime64[ns, UTC]"),
        "source": pd.Series([], dtype=str), "cycle": pd.Series([], dtype="datetime64[ns, UTC]")})


def _normalize_state(state: pd.DataFrame | None) -> pd.DataFrame:
    if state is None or len(state) == 0:
        return empty_state()
    missing = [c for c in ("commune_code", "hazard", "level") if c not in state.columns]
    if missing:
        raise PolicyInputError(f"alert state: column(s) {', '.join(missing)} missing; pass the frame of "
                               "load_state() (or empty_state())")
    st = state.copy()
    for c in STATE_COLUMNS:
        if c not in st.columns:
            st[c] = pd.NaT if c in ("last_sent_at", "cycle") else ("" if c != "level" else 0)
    st["commune_code"] = st["commune_code"].astype(str)
    st["hazard"] = st["hazard"].astype(str)
    st["level"] = pd.to_numeric(st["level"]).fillna(0).astype("int64")
    for c in ("notice_id", "kind", "source"):
        st[c] = st[c].fillna("").astype(str)
    for c in ("last_sent_at", "cycle"):
        st[c] = pd.to_datetime(st[c], utc=True)
    return st[STATE_COLUMNS].reset_index(drop=True)


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def assessment_cycle(assessment: xr.Dataset) -> tuple[str, pd.Timestamp]:
    """``(source, cycle)`` of an assessment (attrs ``source``, ``forecast_reference_time``, UTC)."""
    ref = assessment.attrs.get("forecast_reference_time")
    if not ref:
        raise PolicyInputError("assessment: attribute 'forecast_reference_time' missing; use the dataset "
                               "ewarn.hazard_models.assess_forecast made (or set the cycle, UTC)")
    try:
        cycle = _utc(ref)
    except (ValueError, TypeError):
        raise PolicyInputError(f"assessment: attribute 'forecast_reference_time' {ref!r} is not a time; "
                               "use ISO 8601 UTC, e.g. 2024-09-07T12:00:00Z") from None
    return str(assessment.attrs.get("source", "")), cycle


def _tc(assessment: xr.Dataset, name: str) -> np.ndarray:
    return np.asarray(assessment[name].transpose("time", "commune").values)


def hazard_windows(assessment: xr.Dataset, now: dt.datetime, min_level: int) -> pd.DataFrame:
    """The warning window of every commune and hazard from ``now`` on.

    Parameters
    ----------
    assessment : xarray.Dataset
        Over ``time`` (interval end, UTC naive) and ``commune`` (code; coords
        ``commune_name``, ``province``): ``level_flash_landslide``,
        ``level_heavy_rain`` (or only their ``_max``), ``rain_24h``,
        ``rain_6h``, ``rain_1h`` [mm] (or their ``_max``), ``peak_time``.
    now : datetime
        Decision time (UTC); earlier forecast times are ignored.
    min_level : int
        Lowest level that warns (Decision 18 level, 1..5).

    Returns
    -------
    pandas.DataFrame
        One row per hazard and commune (hazard-major, in :data:`HAZARDS`
        order): ``commune_code``, ``commune_name``, ``province``, ``hazard``,
        ``level`` (max over times >= now, 0 if none), ``onset`` / ``until``
        (first / last time >= now with level >= ``min_level``; NaT if none),
        ``peak`` (time of the highest future 1 h rain), ``rain_24h_max``,
        ``rain_6h_max``, ``rain_1h_max`` [mm] over times >= now.

    Raises
    ------
    PolicyInputError
        A level variable is missing.
    """
    if "commune" not in assessment.dims:
        raise PolicyInputError("assessment: no 'commune' dimension; use the dataset "
                               "ewarn.hazard_models.assess_forecast made")
    codes = np.asarray(assessment["commune"].values).astype(str)
    n = codes.size
    names = (np.asarray(assessment["commune_name"].values).astype(str) if "commune_name" in assessment.coords
             or "commune_name" in assessment else codes)
    provinces = (np.asarray(assessment["province"].values).astype(str) if "province" in assessment.coords
                 or "province" in assessment else np.full(n, "", dtype=object))
    has_time = "time" in assessment.dims
    times = (np.asarray(assessment["time"].values, dtype="datetime64[ns]") if has_time
             else np.array([], dtype="datetime64[ns]"))
    now64 = np.datetime64(_utc(now).tz_localize(None).to_datetime64(), "ns")
    future = times >= now64
    nat = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")

    rain: dict[int, np.ndarray] = {}
    for w in _RAIN_WINDOWS:
        if has_time and f"rain_{w}h" in assessment:
            r = np.where(future[:, None], np.nan_to_num(_tc(assessment, f"rain_{w}h").astype(float)), 0.0)
            rain[w] = r.max(axis=0) if times.size else np.zeros(n)
        elif f"rain_{w}h_max" in assessment:
            rain[w] = np.asarray(assessment[f"rain_{w}h_max"].values, dtype=float)
        else:
            rain[w] = np.full(n, np.nan)
    if has_time and "rain_1h" in assessment and future.any():
        r1 = np.where(future[:, None], np.nan_to_num(_tc(assessment, "rain_1h").astype(float)), -1.0)
        peak = np.where(r1.max(axis=0) > 0, times[r1.argmax(axis=0)], nat)
    elif "peak_time" in assessment:
        peak = np.asarray(assessment["peak_time"].values, dtype="datetime64[ns]")
    else:
        peak = nat

    frames = []
    for hazard in HAZARDS:  # two hazards; each step is vectorized over communes
        var = f"level_{hazard}"
        if has_time and var in assessment:
            lv = np.where(future[:, None], np.nan_to_num(_tc(assessment, var).astype(float)), 0).astype(int)
            level = lv.max(axis=0) if times.size else np.zeros(n, dtype=int)
            hit = lv >= min_level
            any_hit = hit.any(axis=0)
            onset = np.where(any_hit, times[hit.argmax(axis=0)], nat) if times.size else nat
            until = (np.where(any_hit, times[times.size - 1 - hit[::-1].argmax(axis=0)], nat)
                     if times.size else nat)
        elif f"{var}_max" in assessment:  # no time series: the whole forecast is the window
            level = np.nan_to_num(np.asarray(assessment[f"{var}_max"].values, dtype=float)).astype(int)
            onset = (np.where(level >= min_level, np.asarray(assessment["onset_time"].values,
                                                             dtype="datetime64[ns]"), nat)
                     if "onset_time" in assessment else nat)
            until = nat
        else:
            raise PolicyInputError(f"assessment: variable '{var}' (or '{var}_max') missing; re-run "
                                   "'ewarn assess' with this version of ewarn")
        frames.append(pd.DataFrame({
            "commune_code": codes, "commune_name": names, "province": provinces, "hazard": hazard,
            "level": level.astype("int64"),
            "onset": pd.to_datetime(onset).tz_localize("UTC"),
            "until": pd.to_datetime(until).tz_localize("UTC"),
            "peak": pd.to_datetime(peak).tz_localize("UTC"),
            **{f"rain_{w}h_max": rain[w] for w in _RAIN_WINDOWS}}))
    return pd.concat(frames, ignore_index=True)


def _py(ts: Any) -> dt.datetime | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(ts).to_pydatetime()


def decide(assessment: xr.Dataset, state: pd.DataFrame | None, *, min_level: int, reminder_hours: float,
           all_clear: bool, now: dt.datetime,
           shelters: Mapping[str, str] | None = None) -> tuple[list[Notice], pd.DataFrame]:
    """What to tell each commune's officials now, and the state after telling them.

    Pure: reads nothing, writes nothing (see the module docstring for the rules).

    Parameters
    ----------
    assessment : xarray.Dataset
        A per-commune risk assessment (see :func:`hazard_windows`), attrs
        ``source`` and ``forecast_reference_time``.
    state : pandas.DataFrame or None
        Previous state (:data:`STATE_COLUMNS`, as :func:`load_state` returns);
        None or empty: no commune warned yet.
    min_level : int
        Lowest level that warns [Decision 18 level].
    reminder_hours : float
        An unchanged warning is repeated after this long [h].
    all_clear : bool
        Send an all-clear when a warned commune falls below ``min_level``.
    now : datetime
        Decision time (UTC; a naive value is taken as UTC).
    shelters : mapping of str to str, optional
        Shelter name per commune code for the notices.

    Returns
    -------
    notices : list of Notice
        Most severe first (level, then onset, then commune code).
    new_state : pandas.DataFrame
        State after these notices: one row per commune and hazard of the
        assessment, plus the previous rows of communes not in it.
    """
    now_ts = _utc(now)
    source, cycle = assessment_cycle(assessment)
    cur = hazard_windows(assessment, now_ts.to_pydatetime(), min_level)
    st = _normalize_state(state)
    prev = st.rename(columns={"level": "prev_level", "notice_id": "prev_notice", "kind": "prev_kind",
                              "last_sent_at": "prev_sent"})
    m = cur.merge(prev[["commune_code", "hazard", "prev_level", "prev_notice", "prev_kind", "prev_sent"]],
                  on=["commune_code", "hazard"], how="left", validate="one_to_one")
    p = m["prev_level"].fillna(0).to_numpy(dtype="int64")
    lv = m["level"].to_numpy(dtype="int64")
    active, was = lv >= min_level, p >= min_level
    sent = pd.to_datetime(m["prev_sent"], utc=True)
    due = ((now_ts - sent) >= pd.Timedelta(hours=float(reminder_hours))).to_numpy() | sent.isna().to_numpy()
    kind = np.select(
        [active & ~was, active & was & (lv != p), active & was & (lv == p) & due,
         ~active & was & bool(all_clear)],
        ["warning", "update", "reminder", "all_clear"], default="")
    m["kind"] = kind
    m["notice_level"] = np.where(kind == "all_clear", 0, lv)
    m["previous_level"] = np.where(kind == "warning", 0, p)
    m["prev_notice"] = m["prev_notice"].fillna("").astype(str)

    picked = m[kind != ""].sort_values(["notice_level", "onset", "commune_code", "hazard"],
                                       ascending=[False, True, True, True], na_position="last")
    shelters = shelters or {}
    cyc, issued = cycle.to_pydatetime(), now_ts.to_pydatetime()
    notices = [Notice(
        kind=r.kind, hazard=r.hazard, commune_code=r.commune_code, commune_name=r.commune_name,
        province=r.province, level=int(r.notice_level), previous_level=int(r.previous_level),
        source=source, cycle=cyc, onset=_py(r.onset), peak=_py(r.peak), until=_py(r.until),
        rain_24h_max=float(r.rain_24h_max), rain_6h_max=float(r.rain_6h_max),
        rain_1h_max=float(r.rain_1h_max), issued=issued, shelter=str(shelters.get(r.commune_code, "")),
        references=(r.prev_notice,) if r.kind != "warning" and r.prev_notice else (),
    ) for r in picked.itertuples(index=False)]

    ids = pd.Series([x.identifier for x in notices], index=picked.index, dtype=object)
    told = kind != ""
    new = pd.DataFrame({
        "commune_code": m["commune_code"], "hazard": m["hazard"],
        "level": lv,
        "notice_id": ids.reindex(m.index).where(told, m["prev_notice"]).fillna("").astype(str),
        "kind": np.where(told, kind, m["prev_kind"].fillna("").astype(str)),
        "last_sent_at": sent.where(~told, now_ts),
        "source": source, "cycle": cycle})
    others = st.merge(cur[["commune_code", "hazard"]], on=["commune_code", "hazard"], how="left",
                      indicator=True)
    others = others[others["_merge"] == "left_only"].drop(columns="_merge")
    new_state = pd.concat([new, others], ignore_index=True) if len(others) else new
    return notices, _normalize_state(new_state)


def province_summaries(assessment: xr.Dataset, *, min_level: int, now: dt.datetime,
                       worst: int = WORST_COMMUNES) -> list[ProvinceSummary]:
    """One summary per province with a commune at or above ``min_level`` in the window from ``now``.

    A commune's level is the higher of its two hazards' window levels, its
    onset the earlier onset. ``counts`` covers every level >= 1; ``worst``
    lists up to ``worst`` communes at or above ``min_level``, highest level
    then earliest onset first.
    """
    now_ts = _utc(now)
    source, cycle = assessment_cycle(assessment)
    win = hazard_windows(assessment, now_ts.to_pydatetime(), min_level)
    per = (win.groupby(["province", "commune_code", "commune_name"], sort=False)
           .agg(level=("level", "max"), onset=("onset", "min")).reset_index())
    hot = per.loc[per["level"] >= min_level, "province"].unique()
    out: list[ProvinceSummary] = []
    for province in sorted(hot):  # one per province that needs one
        g = per[(per["province"] == province) & (per["level"] >= 1)]
        counts = {int(k): int(v) for k, v in g["level"].value_counts().sort_index().items()}
        top = g[g["level"] >= min_level].sort_values(["level", "onset", "commune_code"],
                                                     ascending=[False, True, True], na_position="last")
        out.append(ProvinceSummary(
            province=str(province), source=source, cycle=cycle.to_pydatetime(), counts=counts,
            worst=[(str(r.commune_name), int(r.level), _py(r.onset))
                   for r in top.head(worst).itertuples(index=False)],
            issued=now_ts.to_pydatetime()))
    return out


# --------------------------------------------------------------------------- database


def load_state(store: Store, *, conn: Connection | None = None) -> pd.DataFrame:
    """The alert state of every commune and hazard (:data:`STATE_COLUMNS`, times UTC)."""
    cols = [alert_state.c[c] for c in STATE_COLUMNS]
    if conn is None:
        with store.engine.connect() as c:
            rows = c.execute(select(*cols)).mappings().all()
    else:
        rows = conn.execute(select(*cols)).mappings().all()
    if not rows:
        return empty_state()
    return _normalize_state(pd.DataFrame(rows, columns=STATE_COLUMNS))


def save_state(store: Store, state: pd.DataFrame, *, conn: Connection | None = None,
               now: dt.datetime | None = None) -> int:
    """Upsert the state rows (one per commune and hazard); inside ``conn``'s transaction if given.

    Returns
    -------
    int
        Rows written.
    """
    st = _normalize_state(state)
    if st.empty:
        return 0
    when = _utc(now).to_pydatetime() if now is not None else utcnow()

    def times(s: pd.Series) -> list[dt.datetime | None]:
        return [None if v is pd.NaT else v.to_pydatetime() for v in s]

    params = [dict(zip(["commune_code", "hazard", "level", "notice_id", "kind", "last_sent_at", "source",
                        "cycle", "updated_at"], vals, strict=True))
              for vals in zip(st["commune_code"].tolist(), st["hazard"].tolist(), st["level"].tolist(),
                              st["notice_id"].tolist(), st["kind"].tolist(), times(st["last_sent_at"]),
                              st["source"].tolist(), times(st["cycle"]), [when] * len(st), strict=True)]

    def run(c: Connection) -> None:
        ins = sqlite_insert(alert_state) if c.dialect.name == "sqlite" else pg_insert(alert_state)
        stmt = ins.on_conflict_do_update(
            index_elements=["commune_code", "hazard"],
            set_={k: ins.excluded[k] for k in ("level", "notice_id", "kind", "last_sent_at", "source",
                                              "cycle", "updated_at")})
        c.execute(stmt, params)

    if conn is not None:
        run(conn)
    else:
        with store.engine.begin() as c:
            run(c)
    return len(params)
