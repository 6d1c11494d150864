"""Benchmark: the whole hazard assessment on a synthetic nationwide case, beside its baselines.

The case (``benchmarks/_nationwide.py``, seeded, built in a few seconds):
hourly rain of four moving storms, float32, 72 steps on a 0.01° grid over
102–110 E, 8–24 N (72 × 1600 × 800 = 369 MB), and 3,320 Voronoi communes
tiling the box, written once with :func:`ewarn.region.write_region` into a
temporary folder (no terrain, no households) and loaded with ``Region.load``.

Measured, each beside a baseline timed IN THE SAME RUN:

* the weight matrix (:meth:`CommuneGrid.for_grid`): first call (exactextract
  coverage, written to the cache) and cached load;
* :func:`ewarn.hazard_models.assess.assess` with cached weights, best of N,
  with ``cell_indices=False`` (the level path) and ``True`` (per-cell flash-
  flood guidance);
* (a) one ``numpy.sum`` over the forecast array — target: assess ≤ 5 × (a);
  beside it, assess's one zonal product (the level path's main cost) as it
  is done, the weights as runs of cells streaming the time-major field
  (:mod:`ewarn.hazard_models.cell_runs`; all threads and one), and as it
  was done before: the cells-major transposes of the field, 8 steps at a
  time, then scipy's CSR product (each alone about 5.5 × (a)); and the
  commune FFG ratio in one pass (the per-cell path's main cost);
* (b) the naive pipeline: xarray ``rolling(time=w).sum()`` for the windows
  1, 3, 6, 12, 24, 48, 72 h, MEASURED ON THE FIRST 12 STEPS AND SCALED × 72/12,
  plus rasterstats ``zonal_stats`` mean of the communes, MEASURED ON ONE
  FIELD (the 24 h window at the last step) AND SCALED × 7 windows × 72 steps =
  × 504 — target: assess ≥ 50 × faster than (b);
* (c) exactextract ``mean`` of the communes over the same one field, scaled the
  same way (× 504), beside the zonal part of assess — :meth:`CommuneGrid.mean`
  over the (72, cells) hourly field, measured as is: assess is zonal-first, so
  that one sparse product is all its zonal work — target: zonal ≤ 1/50 of
  (c); (c') the same exactextract time scaled × 72 only (field for field);
* a 51-member ensemble at 0.1° (160 × 80 cells × 72 steps) — target ≤ 3 s;
* the same ensemble chunked over members through a
  ``dask.distributed.LocalCluster(n_workers=2, threads_per_worker=1,
  processes=True)`` client: identical levels (``numpy.array_equal``), floats
  within 1e-6 (``numpy.allclose``), and its time.

Exit status 0 even when a target is missed (this is a measurement), 1 when the
dask and numpy results disagree. Peak memory is the process's resident
high-water mark (``ru_maxrss``).

Run: ``.venv/bin/python benchmarks/bench_hazard.py`` (about 80 s; peak
resident memory about 3 GB, set by ``assess`` with ``cell_indices=True`` —
see the "peak GB" column); ``--quick`` for a smoke run on a coarser grid
(0.04°, 24 steps, about 30 s).

Measured 2026-11-22 on the shared 2-core machine (a VM whose speed varied
by 2× within minutes that day), each beside (a) of the same run (0.017 s),
three runs: assess with cached weights, ``cell_indices=False``, 0.064 /
0.075 / 0.077 s = 3.8 / 4.1 / 4.6 × (a) — PASS of ≤ 5 × (a) (2026-11-21,
scipy CSR: 0.201 s = 12 × (a)); of it, the zonal product 0.029-0.043 s
(1.8-2.3 × (a), 2 threads) where the transposes and the CSR product took
0.093-0.132 s each. ``cell_indices=True`` (the default: per-cell FFG
ratio): 0.212-0.215 s = 12.5-13 × (a) — MISS (0.668 s = 36 × (a) and a
3.1 GB peak before the one-pass FFG ratio; 1.3 GB now). The 51-member
ensemble at 0.1°: 2.06 s — PASS of ≤ 3 s; but it is noisy: 3.30 s in the
run before (MISS; before the levels change) and 2.3-4.1 s in repeated
timings that hour, where the code of 2026-11-21 took 4.7-5.2 s in the same
minutes (1.76 s on 2026-11-21); dask ``LocalCluster`` identical.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _nationwide import BOX, forecast_dataset, grid, nationwide_region, storm_rain
from _timing import timed

from ewarn.hazard_models.cell_runs import default_threads
from ewarn.hazard_models.flash_flood import ffg
from ewarn.hazard_models.rainfall import DEFAULT_WINDOWS_H
from ewarn.hazard_models.zonal import CommuneGrid

ROLL_STEPS = 12  # steps of the xarray rolling baseline, scaled to the forecast length
ENS_MEMBERS, ENS_STEP = 51, 0.1
ENS_TARGET_S = 3.0


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def load(ds: xr.Dataset) -> xr.Dataset:
    """Materialize a (possibly dask-backed) result."""
    return ds.load() if hasattr(ds, "load") else ds


def compare(a: xr.Dataset, b: xr.Dataset) -> list[str]:
    """Differences between two assessments: integer/bool/time exactly (NaT equal), floats within 1e-6."""
    bad = []
    for name in sorted(set(a.variables) | set(b.variables)):
        if name not in a.variables or name not in b.variables:
            bad.append(f"{name}: only in one result")
            continue
        x, y = np.asarray(a[name].values), np.asarray(b[name].values)
        if x.shape != y.shape:
            bad.append(f"{name}: shape {x.shape} vs {y.shape}")
        elif np.issubdtype(x.dtype, np.floating):
            if not np.allclose(x, y, rtol=1e-6, atol=1e-6, equal_nan=True):
                bad.append(f"{name}: max |diff| {np.nanmax(np.abs(x - y)):.3g}")
        elif not np.array_equal(x, y, equal_nan=x.dtype.kind in "mM"):  # NaT == NaT for times
            bad.append(f"{name}: {int(np.sum(x != y))} values differ")
    return bad


class Table:
    """Rows of (measurement, seconds, baseline, ratio, target, PASS/MISS)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, str, float | None, str, str, float]] = []

    def add(self, name: str, sec: float, base: str = "", ratio: float | None = None, target: str = "",
            ok: bool | None = None) -> None:
        status = "" if ok is None or not np.isfinite(sec) else ("PASS" if ok else "MISS")
        self.rows.append((name, sec, base, ratio, target, status, peak_gb()))

    def print(self) -> None:
        print(f"\n{'measurement':54s} {'seconds':>9s} {'baseline':>9s} {'ratio':>9s}  {'target':13s} "
              f"{'status':6s} {'peak GB':>7s}")
        for name, sec, base, ratio, target, status, peak in self.rows:
            rtxt = f"{ratio:9.4f}" if ratio is not None and np.isfinite(ratio) else " " * 9
            stxt = f"{sec:9.3f}" if np.isfinite(sec) else f"{'n/a':>9s}"
            print(f"{name:54s} {stxt} {base:>9s} {rtxt}  {target:13s} {status:6s} {peak:7.2f}")


def level_summary(res: xr.Dataset) -> str:
    """Communes per highest level over the forecast (first member when there are members)."""
    if "level" not in res:
        return "no 'level' variable"
    lv = res["level"]
    for dim in lv.dims:
        if dim not in ("commune",):
            lv = lv.max(dim) if dim == "time" else lv.isel({dim: 0})
    values, counts = np.unique(np.asarray(lv.values), return_counts=True)
    return ", ".join(f"level {int(v)}: {int(c)}" for v, c in zip(values, counts, strict=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 0.04° grid, 24 steps")
    ap.add_argument("--repeat", type=int, default=3, help="best of N for the cached assessment")
    ap.add_argument("--no-dask", action="store_true", help="skip the dask.distributed run")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    # the chunked ensemble lives in memory, so its graph carries the data (60 MB): expected here
    warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
    try:
        from ewarn.hazard_models.assess import AssessOptions, assess
    except ImportError as exc:  # until the assessment exists: the baselines alone
        print(f"NOTE: ewarn.hazard_models.assess is not importable ({exc}); measuring the baselines only")
        AssessOptions = assess = None

    step, hours = (0.04, 24) if args.quick else (0.01, 72)
    windows = tuple(int(w) for w in DEFAULT_WINDOWS_H if w <= hours)
    n_fields = len(windows) * hours
    tmp = tempfile.TemporaryDirectory(prefix="bench_hazard_")
    root = Path(tmp.name)

    t0 = time.perf_counter()
    lat, lon = grid(step)
    rain = storm_rain(lat, lon, hours, seed=0)
    fc = forecast_dataset(rain, lat, lon)
    region = nationwide_region(root)
    t_case = time.perf_counter() - t0
    print(f"case: float32 rain {rain.shape} (time, lat, lon) = {rain.nbytes / 1e9:.2f} GB, {step}° over "
          f"{BOX[0]:g}–{BOX[2]:g} E, {BOX[1]:g}–{BOX[3]:g} N, {hours} hourly steps, four moving storms; "
          f"{len(region.communes)} Voronoi communes (no terrain, no households); windows {windows} h; "
          f"built in {t_case:.1f} s")
    tab = Table()

    # ---------------------------------------------------------------- (a) numpy.sum
    t_sum, _ = timed(lambda: rain.sum(), repeat=5)
    tab.add("(a) numpy.sum over the forecast array", t_sum)

    # ---------------------------------------------------------------- weights
    wdir = root / "weights"
    t_wbuild, _ = timed(lambda: CommuneGrid.for_grid(lat, lon, region.communes, wdir))
    t_wload, cg = timed(lambda: CommuneGrid.for_grid(lat, lon, region.communes, wdir), repeat=3)
    assert cg.loaded_from_cache
    tab.add("weights: first call (exactextract coverage + cache)", t_wbuild, "(a)", t_wbuild / t_sum)
    tab.add("weights: cached load", t_wload, "(a)", t_wload / t_sum)

    # ---------------------------------------------------------------- the whole assessment
    cache = root / "cache"
    t_first = t_lvl = t_cell = float("nan")
    if assess is not None:
        lvl, cell = AssessOptions(cell_indices=False), AssessOptions(cell_indices=True)
        t_first, _ = timed(lambda: load(assess(fc, region, cache_dir=cache, options=lvl)))
        tab.add("ewarn assess, first call (builds the weights)", t_first, "(a)", t_first / t_sum)
        t_lvl, res = timed(lambda: load(assess(fc, region, cache_dir=cache, options=lvl)), repeat=args.repeat)
        print(f"assessment, cell_indices=False: {level_summary(res)} (highest level per commune)")
        del res
    tab.add("ewarn assess, cached weights, cell_indices=False", t_lvl, "(a)", t_lvl / t_sum, "<= 5 (a)",
            t_lvl <= 5 * t_sum)
    # where the level path's time goes: its one zonal product (the weights as runs of cells, the
    # time-major field read in memory order), beside scipy's CSR kernel on the same matrix, which
    # needs the field cells-major (transposed 8 steps at a time, the layout assess used before)
    flat = rain.reshape(rain.shape[0], -1)
    runs = cg.runs("area")
    t_runs1, _ = timed(lambda: runs.matmul(flat, threads=1), repeat=3)
    t_runs, _ = timed(lambda: runs.matmul(flat), repeat=3)
    w32 = sp.csr_matrix(cg._mean_area, dtype=np.float32)
    t_tr, cells_major = timed(lambda: [np.ascontiguousarray(flat[i:i + 8].T)
                                       for i in range(0, flat.shape[0], 8)], repeat=3)
    t_mv, _ = timed(lambda: [w32 @ b for b in cells_major], repeat=3)
    cells_major = None
    tab.add(f"  of which: zonal product, cell runs, {default_threads()} thread(s)", t_runs, "(a)",
            t_runs / t_sum)
    tab.add("  the same product, cell runs, 1 thread", t_runs1, "(a)", t_runs1 / t_sum)
    tab.add("  (before) cells-major transposes, 8 steps at a time", t_tr, "(a)", t_tr / t_sum)
    tab.add("  (before) + scipy CSR product W @ field", t_mv, "(a)", t_mv / t_sum)
    # the per-cell indices' part without terrain: the commune FFG ratio in one pass (windows 1, 3, 6 h,
    # guidance of dry ground), as assess computes it
    guidance = np.asarray(ffg(0.0, durations_h=(1.0, 3.0, 6.0)).values, dtype=np.float32)
    runs_cov = cg.runs("total")
    t_ffg, _ = timed(lambda: runs_cov.window_ratio_max(flat[None], np.array([1, 3, 6]), guidance), repeat=3)
    tab.add("  of which: commune FFG ratio, one pass (cell runs)", t_ffg, "(a)", t_ffg / t_sum)
    if assess is not None:
        t_cell, res = timed(lambda: load(assess(fc, region, cache_dir=cache, options=cell)),
                            repeat=args.repeat)
        print(f"assessment, cell_indices=True: variables {', '.join(map(str, res.data_vars))}; "
              f"sizes {dict(res.sizes)}")
        del res
    tab.add("ewarn assess, cached weights, cell_indices=True", t_cell, "(a)", t_cell / t_sum, "<= 5 (a)",
            t_cell <= 5 * t_sum)

    # ---------------------------------------------------------------- one field for (b2) and (c)
    field = rain[-24:].sum(axis=0, dtype=np.float64).astype(np.float32)  # 24 h window at the last step
    north_up = np.ascontiguousarray(field[::-1])  # GDAL convention: row 0 is the northern row
    w, s = float(lon[0] - step / 2), float(lat[0] - step / 2)
    e, n = float(lon[-1] + step / 2), float(lat[-1] + step / 2)
    geoms = region.communes[["code", "geometry"]]
    ours = cg.mean(field, weighting="coverage")

    # ---------------------------------------------------------------- (b) xarray rolling + rasterstats
    sub = fc["precipitation"].isel(time=slice(0, min(ROLL_STEPS, hours)))
    nsub = sub.sizes["time"]

    def rolling_all() -> None:
        for wdw in windows:
            _ = sub.rolling(time=wdw).sum().values

    t_roll_sub, _ = timed(rolling_all)
    t_roll = t_roll_sub * hours / nsub

    from affine import Affine
    from rasterstats import zonal_stats

    transform = Affine(step, 0, w, 0, -step, n)
    t_rs1, rs = timed(lambda: zonal_stats(list(geoms.geometry), north_up, affine=transform, stats=["mean"],
                                          nodata=-9999.0))
    rs_mean = np.array([np.nan if r["mean"] is None else r["mean"] for r in rs], dtype=np.float64)
    rs_diff = float(np.nanmedian(np.abs(rs_mean - ours) / np.maximum(np.abs(ours), 1.0)))
    t_rs = t_rs1 * n_fields
    t_b = t_roll + t_rs
    tab.add(f"(b1) xarray rolling(time=w).sum(), {len(windows)} windows *", t_roll)
    tab.add(f"(b2) rasterstats zonal_stats mean, {n_fields} fields **", t_rs)
    tab.add("(b) = (b1) + (b2)", t_b)
    for name, t in (("cell_indices=False", t_lvl), ("cell_indices=True", t_cell)):
        tab.add(f"ewarn assess, cached weights, {name}", t, "(b)", t / t_b, "<= 1/50 (b)", t * 50 <= t_b)

    # ---------------------------------------------------------------- (c) exactextract vs the zonal part
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource

    t_ee1, ee = timed(lambda: exact_extract(NumPyRasterSource(north_up, w, s, e, n), geoms, ["mean"],
                                            output="pandas", include_cols=["code"]), repeat=2)
    assert list(ee["code"]) == list(cg.codes)
    ee_diff = float(np.nanmax(np.abs(ee["mean"].to_numpy() - ours) / np.maximum(np.abs(ours), 1.0)))
    t_ee = t_ee1 * n_fields
    t_zonal, _ = timed(lambda: cg.mean(rain), repeat=3)
    t_ee72 = t_ee1 * hours
    tab.add(f"(c) exactextract mean, {n_fields} fields **", t_ee)
    tab.add(f"ewarn zonal part: CommuneGrid.mean, {hours} hourly fields ***", t_zonal, "(c)", t_zonal / t_ee,
            "<= 1/50 (c)", t_zonal * 50 <= t_ee)
    tab.add(f"(c') exactextract mean, {hours} fields (like for like) **", t_ee72)
    tab.add(f"ewarn zonal part: CommuneGrid.mean, {hours} hourly fields", t_zonal, "(c')", t_zonal / t_ee72,
            "(reference)")
    gc.collect()

    # ---------------------------------------------------------------- ensemble (numpy, then dask)
    agree: list[str] = []
    ens_name = f"{ENS_MEMBERS} members, {ENS_STEP}°"
    t_dask = t_cluster = float("nan")
    if assess is not None:
        elat, elon = grid(ENS_STEP)
        ens = forecast_dataset(storm_rain(elat, elon, hours, members=ENS_MEMBERS, seed=1), elat, elon)
        t_esum, _ = timed(lambda: ens["precipitation"].values.sum(), repeat=5)
        t_efirst, _ = timed(lambda: load(assess(ens, region, cache_dir=cache, options=lvl)))
        t_ens, res_np = timed(lambda: load(assess(ens, region, cache_dir=cache, options=lvl)),
                              repeat=args.repeat)
        print(f"ensemble: variables {', '.join(map(str, res_np.data_vars))}; sizes {dict(res_np.sizes)}")
        tab.add(f"ensemble {ens_name}: numpy.sum", t_esum)
        tab.add(f"ensemble {ens_name}: assess, first call", t_efirst, "sum", t_efirst / t_esum)
        tab.add(f"ensemble {ens_name}: assess, cached weights", t_ens, "sum", t_ens / t_esum,
                f"<= {ENS_TARGET_S:g} s", t_ens <= ENS_TARGET_S)
        if not args.no_dask:
            from dask.distributed import Client, LocalCluster

            t0 = time.perf_counter()
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster):
                t_cluster = time.perf_counter() - t0
                chunked = ens.chunk({"member": 17})
                load(assess(chunked, region, cache_dir=cache, options=lvl))  # warm the workers
                t_dask, res_dask = timed(lambda: load(assess(chunked, region, cache_dir=cache, options=lvl)),
                                         repeat=args.repeat)
            agree = compare(res_np, res_dask)
            tab.add(f"ensemble {ens_name}: dask LocalCluster, 2 processes", t_dask, "numpy",
                    t_dask / t_ens, "identical", not agree)
            tab.add("  (cluster start-up, not included above)", t_cluster)

    # ---------------------------------------------------------------- report
    tab.print()
    print(f"\n*   (b1) MEASURED on the first {nsub} steps ({t_roll_sub:.2f} s for the {len(windows)} "
          f"windows) and SCALED × {hours}/{nsub}.")
    print(f"**  (b2) and (c) MEASURED on ONE field (the 24 h window at the last step: rasterstats "
          f"{t_rs1:.2f} s, exactextract {t_ee1:.3f} s) and SCALED × {len(windows)} windows × {hours} steps "
          f"= × {n_fields} ((c') × {hours} steps only).")
    print(f"*** MEASURED, not scaled: the ({hours}, {lat.size}, {lon.size}) hourly field in one call. "
          "assess is zonal-first (window sums commute with the weighted mean), so its zonal part is this "
          f"one product, where the naive pipeline (b2)/(c) averages every window field; (c') compares the "
          "two zonal engines field for field.")
    if assess is not None:
        print(f"speed-ups: assess (cell_indices=False) {t_b / t_lvl:.0f}× faster than (b); zonal step "
              f"{t_ee / t_zonal:.0f}× faster than (c) ({t_ee72 / t_zonal:.0f}× field for field).")
    print(f"same field, three methods: ewarn coverage-weighted mean vs exactextract mean: max rel. diff "
          f"{ee_diff:.1e}; vs rasterstats (cells whose centre is inside): median rel. diff {rs_diff:.1e}")
    if assess is not None and not args.no_dask:
        print("dask vs numpy ensemble: " + ("identical (integers equal, floats within 1e-6)" if not agree
                                            else "DIFFERENT:\n  " + "\n  ".join(agree)))
    print(f"peak resident memory: {peak_gb():.2f} GB (the 'peak GB' column: high-water mark when the row was "
          "measured)")
    tmp.cleanup()
    return 1 if agree else 0


if __name__ == "__main__":
    sys.exit(main())
