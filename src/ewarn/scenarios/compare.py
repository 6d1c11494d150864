"""Compare scenario runs side by side, and sweep a scenario's rain to find where the plan breaks.

:func:`compare` reads the summary (``summary.json``, :func:`ewarn.scenarios.runner.scenario_summary`)
of each run — a :class:`~ewarn.scenarios.runner.ScenarioResult`, a scenario
file (run it) or an output folder of an earlier run — and lays the metrics
out as rows, one column per scenario, plus one ``Δ <scenario>`` column per
scenario after the first (its value minus the first's; for the latest
clearance, minutes). When the household plans are at hand (results, or
``plan.csv`` in the output folders) it adds paired rows: of the households
placed in both runs, how many travel longer (or shorter) than in the first,
and how many are placed in one run only — the effect of a cut road is
hidden in the plain means, because the households it cuts off are often the
farthest ones and drop out of the mean.

:func:`sweep` runs one scenario at several rain scales (the scenario's own
``scale`` multiplied by each factor), reusing the region, its changes, the
road network and the terrain cache across scales (only the rain changes),
and :func:`first_break` names the first scale at which a household that
must move cannot be placed.

The metrics' Vietnamese and English labels are in :data:`METRICS`;
:func:`labelled` swaps the keys for labels, :func:`compare_text` and
:func:`sweep_text` format the tables for a terminal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ewarn.errors import EwarnError
from ewarn.scenarios.runner import (
    UNREACHABLE_REASONS,
    ScenarioResult,
    default_cache_dir,
    execute,
    prepare,
    run_scenario,
)
from ewarn.scenarios.schema import load_scenario

__all__ = [
    "METRICS",
    "CompareError",
    "compare",
    "compare_text",
    "first_break",
    "labelled",
    "metrics",
    "parse_scales",
    "sweep",
    "sweep_text",
]

#: Metric key → (Vietnamese label, English label), in the order of the comparison table.
METRICS: dict[str, tuple[str, str]] = {
    "communes_at_risk": ("Số xã ở cấp sơ tán trở lên", "Communes at the evacuation level or above"),
    "people_at_risk": ("Số người ở các xã đó", "People in those communes"),
    "households_to_move": ("Số hộ phải di chuyển", "Households to move"),
    "people_to_move": ("Số người phải di chuyển", "People to move"),
    "assigned": ("Số hộ đã có nơi sơ tán", "Households assigned a shelter"),
    "assigned_people": ("Số người đã có nơi sơ tán", "People assigned a shelter"),
    "unassigned": ("Số hộ chưa có nơi sơ tán", "Households without a shelter"),
    "unassigned_people": ("Số người chưa có nơi sơ tán", "People without a shelter"),
    "unreachable": ("Số hộ không có đường tới nơi sơ tán", "Households with no road to a shelter"),
    "late": ("Số hộ đến sau thời hạn an toàn", "Households arriving after the deadline"),
    "travel_mean_min": ("Thời gian di chuyển trung bình (phút)", "Mean travel time (min)"),
    "travel_p95_min": ("Thời gian di chuyển, phân vị 95 (phút)", "Travel time, 95th percentile (min)"),
    "travel_max_min": ("Thời gian di chuyển lớn nhất (phút)", "Longest travel time (min)"),
    "latest_clearance": ("Thời điểm sơ tán xong muộn nhất (UTC; Δ phút)",
                         "Latest clearance (UTC; Δ in minutes)"),
    "shelters_used": ("Số điểm sơ tán được dùng", "Shelters used"),
    "shelters_full": ("Số điểm sơ tán đã kín chỗ", "Shelters full"),
    "shelters_over_capacity": ("Số điểm sơ tán quá tải", "Shelters over capacity"),
    "shelter_capacity": ("Tổng sức chứa các điểm sơ tán (người)", "Shelter capacity (people)"),
    "closed_edges": ("Số đoạn đường bị đóng", "Road segments closed"),
    "messages": ("Số tin nhắn (xem trước)", "Messages (previews)"),
    "relocation_households": ("Số hộ cần tái định cư", "Households to relocate"),
    "relocation_unassigned": ("Số hộ tái định cư chưa có nơi ở", "Households to relocate without a site"),
    "paired_longer_trip": ("Số hộ đi xa hơn so với kịch bản đầu", "Households with a longer trip than in "
                                                                   "the first scenario"),
    "paired_shorter_trip": ("Số hộ đi gần hơn so với kịch bản đầu", "Households with a shorter trip than in "
                                                                    "the first scenario"),
    "paired_extra_minutes": ("Thời gian đi thêm trung bình của các hộ đó (phút)",
                             "Mean extra travel time of those households (min)"),
    "newly_unassigned": ("Số hộ mất nơi sơ tán so với kịch bản đầu",
                         "Households placed in the first scenario, not in this one"),
    "newly_assigned": ("Số hộ có thêm nơi sơ tán so với kịch bản đầu",
                       "Households placed in this scenario, not in the first"),
}
_REASON_PREFIX = "unassigned_"
#: A trip this much longer or shorter than in the first scenario counts as changed [s].
PAIRED_TOLERANCE_S = 60.0


class CompareError(EwarnError):
    """Runs cannot be compared or swept (a missing summary, bad scales); the message says what to give."""


# --------------------------------------------------------------------------- metrics of one run


def metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """The comparison metrics of one run's summary (summary.json).

    Parameters
    ----------
    summary : dict
        :func:`ewarn.scenarios.runner.scenario_summary`.

    Returns
    -------
    dict
        Metric key → value (int, float, ISO text or None); keys of
        :data:`METRICS` plus ``unassigned_<reason>`` per unassigned reason.
    """
    plan = summary.get("plan") or {}
    levels = summary.get("levels") or {}
    ev = int((summary.get("options") or {}).get("evacuation_level", 2))
    by_comm = levels.get("communes_by_level") or {}
    by_people = levels.get("people_by_level") or {}
    travel = plan.get("travel_time_minutes") or {}
    shelters = plan.get("shelters") or []
    reasons = plan.get("unassigned_by_reason") or {}
    rel = summary.get("relocation")
    out: dict[str, Any] = {
        "communes_at_risk": sum(int(v) for k, v in by_comm.items() if int(k) >= ev),
        "people_at_risk": sum(int(v) for k, v in by_people.items() if int(k) >= ev),
        "households_to_move": plan.get("households_to_move"),
        "people_to_move": plan.get("people_to_move"),
        "assigned": plan.get("assigned"),
        "assigned_people": plan.get("assigned_people"),
        "unassigned": plan.get("unassigned"),
        "unassigned_people": plan.get("unassigned_people"),
        "unreachable": plan.get("unreachable") if "unreachable" in plan else
        (sum(int(reasons.get(r, {}).get("households", 0)) for r in UNREACHABLE_REASONS) if plan else None),
        "late": plan.get("late"),
        "travel_mean_min": travel.get("mean"),
        "travel_p95_min": travel.get("p95"),
        "travel_max_min": travel.get("max"),
        "latest_clearance": plan.get("latest_clearance"),
        "shelters_used": plan.get("shelters_used"),
        "shelters_full": sum(1 for s in shelters if s["capacity"] > 0 and s["load"] >= s["capacity"])
        if plan else None,
        "shelters_over_capacity": plan.get("shelters_over_capacity"),
        "shelter_capacity": (sum(int(s["capacity"]) for s in shelters if s.get("usable", True))
                             if plan else None),
        "closed_edges": plan.get("closed_edges"),
        "messages": (summary.get("messages") or {}).get("count"),
        "relocation_households": rel.get("households") if rel else None,
        "relocation_unassigned": rel.get("unassigned") if rel else None,
    }
    for code, item in sorted(reasons.items()):
        out[_REASON_PREFIX + code] = int(item.get("households", 0))
    return out


# --------------------------------------------------------------------------- loading runs


def _read_summary(path: Path) -> tuple[dict[str, Any], Path]:
    file = path / "summary.json" if path.is_dir() else path
    try:
        return json.loads(file.read_text(encoding="utf-8")), file.parent
    except FileNotFoundError:
        raise CompareError(f"{file}: no summary.json; give a scenario file (.toml) or the output folder of "
                           "a run (ewarn scenario run FILE --out DIR)") from None
    except (OSError, ValueError) as exc:
        raise CompareError(f"{file}: cannot read the run's summary ({exc}); run the scenario again") from None


def _households_of(item: ScenarioResult | Path) -> pd.DataFrame | None:
    """household_id, shelter_id (or NA), travel_time_s of the households that must move; None if unknown."""
    if isinstance(item, ScenarioResult):
        if item.plan is None:
            return None
        hh = item.plan.households
        hh = hh[hh["must_move"]]
        return pd.DataFrame({"household_id": hh["household_id"].astype(str).to_numpy(),
                             "shelter_id": hh["shelter_id"].astype(object).where(hh["shelter_id"].notna(),
                                                                                 None).to_numpy(),
                             "travel_time_s": hh["travel_time_s"].to_numpy(np.float64)})
    file = item / "plan.csv"
    if not file.is_file():
        return None
    df = pd.read_csv(file, usecols=["household_id", "shelter_id", "travel_time_s"],
                     dtype={"household_id": str, "shelter_id": str})
    df["shelter_id"] = df["shelter_id"].astype(object).where(df["shelter_id"].notna(), None)
    return df


def _load(items: Iterable[ScenarioResult | Path | str], cache_dir: Path | None
          ) -> list[tuple[str, dict[str, Any], ScenarioResult | Path]]:
    runs = []
    for item in items:
        if isinstance(item, ScenarioResult):
            runs.append((item.scenario.file.stem, item.summary, item))
            continue
        path = Path(item).expanduser()
        if path.suffix.lower() == ".toml":
            res = run_scenario(path, cache_dir=cache_dir)
            runs.append((res.scenario.file.stem, res.summary, res))
        else:
            summary, folder = _read_summary(path)
            stem = Path(str(summary.get("scenario", {}).get("file", "") or folder.name)).stem or folder.name
            runs.append((stem, summary, folder))
    names: list[str] = []
    for name, _, _ in runs:  # unique column names
        base, k = name, 2
        while name in names:
            name, k = f"{base} ({k})", k + 1
        names.append(name)
    return [(n, s, src) for n, (_, s, src) in zip(names, runs, strict=True)]


# --------------------------------------------------------------------------- compare


def _minutes_between(a: Any, b: Any) -> float | None:
    if not a or not b:
        return None
    return round((pd.Timestamp(b) - pd.Timestamp(a)).total_seconds() / 60.0, 1)


def _delta(key: str, first: Any, value: Any) -> Any:
    if key == "latest_clearance":
        return _minutes_between(first, value)
    if key.startswith(("paired_", "newly_")):
        return None
    if isinstance(first, bool) or isinstance(value, bool):
        return None
    if first is None and value is None:
        return None
    if isinstance(first, int | float | type(None)) and isinstance(value, int | float | type(None)):
        d = (value or 0) - (first or 0)
        return round(d, 3) if isinstance(d, float) else d
    return None


def _paired(first: pd.DataFrame | None, other: pd.DataFrame | None) -> dict[str, Any]:
    if first is None or other is None:
        return {}
    m = first.merge(other, on="household_id", how="outer", suffixes=("_a", "_b"))
    a_ok = m["shelter_id_a"].notna()
    b_ok = m["shelter_id_b"].notna()
    both = m[a_ok & b_ok]
    d = both["travel_time_s_b"].to_numpy(np.float64) - both["travel_time_s_a"].to_numpy(np.float64)
    longer = d > PAIRED_TOLERANCE_S
    return {"paired_longer_trip": int(longer.sum()),
            "paired_shorter_trip": int((d < -PAIRED_TOLERANCE_S).sum()),
            "paired_extra_minutes": round(float(d[longer].mean()) / 60.0, 1) if longer.any() else 0.0,
            "newly_unassigned": int((a_ok & ~b_ok).sum()),
            "newly_assigned": int((~a_ok & b_ok).sum())}


def compare(results_or_paths: Sequence[ScenarioResult | Path | str], *, cache_dir: Path | None = None
            ) -> pd.DataFrame:
    """The summary metrics of several runs side by side, with differences from the first.

    Parameters
    ----------
    results_or_paths : sequence
        Each a :class:`~ewarn.scenarios.runner.ScenarioResult`, a scenario
        file (``.toml``: run with :func:`~ewarn.scenarios.runner.run_scenario`,
        outputs in its default folder) or an output folder (or its
        ``summary.json``) of an earlier run. The first is the reference.
    cache_dir : Path, optional
        The runner's cache (for scenario files).

    Returns
    -------
    pandas.DataFrame
        Index: metric keys (:data:`METRICS`, then ``unassigned_<reason>``
        for every reason any run has); one column per run (named by the
        scenario file's stem), then one ``Δ <name>`` column per run after
        the first (value − first; the latest clearance in minutes; paired
        rows have no Δ: they already compare with the first). Values are
        int, float, ISO text or None (object dtype).

    Raises
    ------
    CompareError
        Fewer than two runs, or an output folder without summary.json.
    """
    items = list(results_or_paths)
    if len(items) < 2:
        raise CompareError(f"compare needs at least two runs, got {len(items)}; give two or more scenario "
                           "files or output folders")
    runs = _load(items, cache_dir)
    values = {name: metrics(summary) for name, summary, _ in runs}
    first_hh = _households_of(runs[0][2])
    for name, _, src in runs[1:]:
        values[name].update(_paired(first_hh, _households_of(src)))
    reasons = sorted({k for v in values.values() for k in v if k.startswith(_REASON_PREFIX)
                      and k not in METRICS})
    keys = [k for k in METRICS if any(k in v and v[k] is not None for v in values.values())] + reasons
    for v in values.values():  # a reason absent from a run: 0 households
        for r in reasons:
            v.setdefault(r, 0 if v.get("unassigned") is not None else None)
    names = [name for name, _, _ in runs]
    table: dict[str, list[Any]] = {name: [values[name].get(k) for k in keys] for name in names}
    first = names[0]
    for name in names[1:]:
        table[f"Δ {name}"] = [_delta(k, values[first].get(k), values[name].get(k)) for k in keys]
    df = pd.DataFrame({c: pd.Series(v, index=keys, dtype=object) for c, v in table.items()})
    df.index.name = "metric"
    return df


def _label(key: str, language: str) -> str:
    if key in METRICS:
        vi, en = METRICS[key]
        return vi if language == "vi" else en
    if key.startswith(_REASON_PREFIX):
        from ewarn.routing.plan import UNASSIGNED_REASONS

        code = key[len(_REASON_PREFIX):]
        vi = UNASSIGNED_REASONS.get(code, code)
        return f"Chưa có nơi sơ tán: {vi} ({code})" if language == "vi" else f"Without a shelter: {code}"
    return key


def labelled(df: pd.DataFrame, language: str = "vi") -> pd.DataFrame:
    """``df`` with a leading ``metric`` column of labels (Vietnamese or English) instead of keys.

    The form :func:`ewarn.scenarios.report.render_comparison` takes.
    """
    if language not in ("vi", "en"):
        raise CompareError(f"language {language!r}: use 'vi' or 'en'")
    out = df.reset_index(drop=True)
    out.insert(0, "metric", [_label(str(k), language) for k in df.index])
    return out


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "—"
    if isinstance(v, float):
        text = f"{v:,.2f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _text_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    rows = [[_cell(v) for v in r] for r in df.itertuples(index=False)]
    width = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(width[i]) if i == 0 else c.rjust(width[i]) for i, c in enumerate(cols))]
    lines.append("  ".join("-" * w for w in width))
    for r in rows:
        lines.append("  ".join(v.ljust(width[i]) if i == 0 else v.rjust(width[i]) for i, v in enumerate(r)))
    return "\n".join(lines)


def compare_text(df: pd.DataFrame, language: str = "vi") -> str:
    """:func:`compare`'s table as fixed-width text for a terminal (labels in ``language``)."""
    return _text_table(labelled(df, language))


# --------------------------------------------------------------------------- sweep


_RANGE = re.compile(r"^\s*([0-9.]+)\s*:\s*([0-9.]+)\s*(?::\s*([0-9.]+)\s*)?$")


def parse_scales(text: str) -> list[float]:
    """Rain scales from ``START:STOP:STEP`` (STOP included; STEP default 0.25) or ``a,b,c``.

    Raises
    ------
    CompareError
        Not numbers, a scale <= 0, a step <= 0, or more than 200 scales.
    """
    m = _RANGE.match(text)
    try:
        if m:
            start, stop = float(m.group(1)), float(m.group(2))
            step = float(m.group(3)) if m.group(3) else 0.25
            if step <= 0 or stop < start:
                raise ValueError
            n = int(np.floor((stop - start) / step + 1e-9)) + 1
            scales = [round(start + i * step, 6) for i in range(n)]
        else:
            scales = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CompareError(f"rain scales {text!r}: give START:STOP:STEP (e.g. 0.5:2.0:0.25) or a list "
                           "(e.g. 0.5,1,1.5) of numbers > 0") from None
    if not scales or min(scales) <= 0 or len(scales) > 200:
        raise CompareError(f"rain scales {text!r}: give 1 to 200 numbers, each > 0 (e.g. 0.5:2.0:0.25)")
    return sorted(set(scales))


def _break_text(row: dict[str, Any]) -> str:
    parts = []
    if row["unassigned"]:
        reasons = ", ".join(f"{k[len(_REASON_PREFIX):]} {v}" for k, v in sorted(row.items())
                            if k.startswith(_REASON_PREFIX) and k not in METRICS and v)
        parts.append(f"{row['unassigned']} household(s) cannot be placed ({reasons})")
    if row["shelters_over_capacity"]:
        parts.append(f"{row['shelters_over_capacity']} shelter(s) over capacity")
    return "; ".join(parts)


def sweep(path: Path | str, scales: Sequence[float] | str, *, cache_dir: Path | None = None,
          progress: Callable[[float], None] | None = None) -> pd.DataFrame:
    """Run a scenario at several rain scales; levels and people to move per scale, where the plan breaks.

    Each run multiplies the scenario's ``[rain] scale`` by the factor and goes
    through the same chain as :func:`~ewarn.scenarios.runner.run_scenario`
    (nothing is written, nothing sent); the region, its changes, the road
    network and the terrain cache are shared by all scales.

    Parameters
    ----------
    path : Path or str
        The scenario file.
    scales : sequence of float or str
        Factors (> 0), or text for :func:`parse_scales`.
    cache_dir : Path, optional
        The runner's cache.
    progress : callable, optional
        Called with each scale as its run starts.

    Returns
    -------
    pandas.DataFrame
        One row per scale, ascending: ``scale``, ``rain_scale`` (the
        scenario's scale × factor), ``communes_level_0`` ... ``_5``,
        ``communes_at_risk``, ``people_at_risk``, ``households_to_move``,
        ``people_to_move``, ``assigned``, ``unassigned``, ``unreachable``,
        ``unassigned_<reason>`` per reason, ``late``, ``shelters_full``,
        ``shelters_over_capacity`` (0: the assignment keeps capacities),
        ``travel_p95_min``, ``breaks`` (what fails at this scale, "" if
        nothing) and ``first_break`` (True on the first scale where a
        household cannot be placed).
    """
    factors = parse_scales(scales) if isinstance(scales, str) else sorted({float(s) for s in scales})
    if not factors or min(factors) <= 0:
        raise CompareError(f"rain scales {scales!r}: give numbers > 0")
    scenario = load_scenario(path)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    prep = prepare(scenario, root)
    rows = []
    for f in factors:  # one full run per scale
        if progress:
            progress(f)
        rain = scenario.rain.model_copy(update={"scale": scenario.rain.scale * f})
        res = execute(scenario.model_copy(update={"rain": rain}), prep, Path("."), report=False)
        s = res.summary
        m = metrics(s)
        row: dict[str, Any] = {"scale": f, "rain_scale": round(scenario.rain.scale * f, 6)}
        row.update({f"communes_level_{k}": v for k, v in s["levels"]["communes_by_level"].items()})
        row.update({k: m[k] for k in ("communes_at_risk", "people_at_risk", "households_to_move",
                                      "people_to_move", "assigned", "unassigned", "unreachable", "late",
                                      "shelters_full", "shelters_over_capacity", "travel_p95_min")})
        row.update({k: v for k, v in m.items() if k.startswith(_REASON_PREFIX) and k not in METRICS})
        rows.append(row)
    df = pd.DataFrame(rows)
    reason_cols = sorted(c for c in df.columns if c.startswith(_REASON_PREFIX) and c not in METRICS)
    df[reason_cols] = df[reason_cols].fillna(0).astype(np.int64)
    lead = [c for c in df.columns if c not in reason_cols and c not in ("late", "shelters_full",
                                                                         "shelters_over_capacity",
                                                                         "travel_p95_min")]
    df = df[lead + reason_cols + ["late", "shelters_full", "shelters_over_capacity", "travel_p95_min"]]
    df["breaks"] = [_break_text(r) for r in df.to_dict("records")]
    broken = (df["unassigned"].fillna(0) > 0).to_numpy()
    df["first_break"] = False
    if broken.any():
        df.loc[df.index[int(np.argmax(broken))], "first_break"] = True
    return df


def first_break(df: pd.DataFrame) -> tuple[float, str] | None:
    """The first (smallest) scale of a :func:`sweep` at which a household cannot be placed.

    Returns
    -------
    (float, str) or None
        The scale and what breaks there (households not placed, by reason;
        shelters over capacity); None when every scale places everyone.
    """
    hit = df[df["unassigned"].fillna(0) > 0].sort_values("scale")
    if hit.empty:
        return None
    row = hit.iloc[0]
    return float(row["scale"]), str(row["breaks"])


def sweep_text(df: pd.DataFrame) -> str:
    """:func:`sweep`'s table as fixed-width text, with the first break stated below it."""
    cols = [c for c in df.columns if c not in ("breaks", "first_break")]
    text = _text_table(df[cols].astype(object))
    fb = first_break(df)
    tail = (f"first break at rain scale ×{fb[0]:g}: {fb[1]}" if fb
            else "no break: every household that must move is placed at every scale")
    return text + "\n\n" + tail
