"""Flash-flood indices (ewarn.hazard_models.flash_flood): the SCS/FFG algebra, threat classes, and the
ERIC-style upstream runoff index on a small V-valley DEM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyflwdir
import pytest
import xarray as xr
from affine import Affine

from ewarn.errors import EwarnError
from ewarn.hazard_models import flash_flood as ff
from ewarn.hazard_models.tables import TableError

# --------------------------------------------------------------------------- SCS / FFG


def test_ffg_closed_form_satisfies_the_scs_equation():
    rng = np.random.default_rng(1)
    r = rng.uniform(0.1, 80, 500)
    s = rng.uniform(0, 600, 500)
    p = ff.flash_flood_guidance(r, s)
    assert np.all(p > 0.2 * s)  # above the initial abstraction
    np.testing.assert_allclose((p - 0.2 * s) ** 2 / (p + 0.8 * s), r, rtol=1e-12)
    np.testing.assert_allclose(ff.scs_runoff(p, s), r, rtol=1e-12)
    # CN = 100 (S = 0): every mm of rain runs off
    assert ff.scs_retention(100.0) == 0.0
    np.testing.assert_allclose(ff.flash_flood_guidance(r, 0.0), r)
    # hand-computed: CN 75 -> S = 25400/75 - 254 = 84.667 mm; R = 10 mm
    s75 = 25400 / 75 - 254
    assert ff.scs_retention(75.0) == pytest.approx(84.6667, abs=1e-4)
    assert ff.flash_flood_guidance(10.0, s75) == pytest.approx(0.2 * s75 + (10 + np.sqrt(100 + 40 * s75)) / 2)
    # below the initial abstraction there is no runoff
    assert ff.scs_runoff(0.1 * s75, s75) == 0.0


def test_curve_number_follows_antecedent_moisture():
    assert ff.curve_number_dry(75.0) == pytest.approx(4.2 * 75 / (10 - 0.058 * 75))  # 55.75
    assert ff.curve_number_wet(75.0) == pytest.approx(23 * 75 / (10 + 0.13 * 75))  # 87.34
    p = ff.flash_flood_parameters()
    dry, normal, wet = p.amc_mm
    a = np.array([0.0, dry, (dry + normal) / 2, normal, wet, 300.0])
    cn = ff.curve_number(a, 75.0)
    np.testing.assert_allclose(cn[[0, 1, 3, 4, 5]], [ff.curve_number_dry(75.0)] * 2 + [75.0]
                               + [ff.curve_number_wet(75.0)] * 2)
    assert cn[2] == pytest.approx((ff.curve_number_dry(75.0) + 75.0) / 2)
    assert np.all(np.diff(cn) >= 0)
    with pytest.raises(ff.FlashFloodInputError, match="curve number"):
        ff.curve_number(10.0, 120.0)


def test_drier_antecedent_gives_higher_ffg():
    ante = xr.DataArray([0.0, 40.0, 50.0, 80.0], dims="x")
    g = ff.ffg(ante)
    assert g.dims == ("duration", "x")
    assert list(g.duration.values) == [1.0, 3.0, 6.0]
    assert np.all(g.diff("x") < 0)  # wetter -> lower guidance
    # below the AMC I limit (35.6 mm in 5 days) the soil counts as dry: no further change
    np.testing.assert_allclose(ff.ffg(20.0).values, g.isel(x=0).values)
    assert np.all(g.diff("duration") > 0)  # longer duration -> more rain needed
    # wettest soil: CN_III of 75
    s3 = 25400 / ff.curve_number_wet(75.0) - 254
    assert float(g.sel(duration=1.0)[-1]) == pytest.approx(ff.flash_flood_guidance(10.0, s3))
    # a curve-number grid: lower CN (more storage) -> higher guidance
    g2 = ff.ffg(44.45, cn_ii=xr.DataArray([60.0, 75.0, 90.0], dims="x"))
    assert np.all(g2.diff("x") < 0)


def test_threat_classes():
    ratio = np.array([0.0, 0.74, 0.75, 1.0, 1.25, 1.99, 2.0, 7.0, np.nan])
    np.testing.assert_array_equal(ff.threat_class(ratio), [0, 0, 1, 1, 2, 2, 3, 3, -1])
    p = ff.flash_flood_parameters()
    assert p.class_names == ("minor", "moderate", "major")
    assert p.class_lower == (0.75, 1.25, 2.0)


def _forecast(rain_mm_per_step, step_h=1, lat=(21.9, 21.95, 22.0, 22.05, 22.1, 22.15),
              lon=(104.05, 104.1, 104.15, 104.2), members=None):
    x = np.asarray(rain_mm_per_step, dtype=float)
    t = pd.date_range("2024-09-09T00:00", periods=x.shape[-1], freq=f"{step_h}h") + pd.Timedelta(hours=step_h)
    data = np.broadcast_to(x[..., None, None], (*x.shape, len(lat), len(lon))).copy()
    dims = ("time", "latitude", "longitude")
    if members is not None:
        dims = ("member", *dims)
    coords = {"time": t, "latitude": list(lat), "longitude": list(lon)}
    if members is not None:
        coords["member"] = np.arange(members)
    return xr.DataArray(data, dims=dims, coords=coords, name="precipitation", attrs={"units": "mm"})


def test_ffg_threat_on_a_forecast():
    rain = np.zeros(8)
    rain[3] = 60.0  # one intense hour
    rain[5:8] = 25.0  # then 75 mm in 3 h
    fc = _forecast(rain)
    ante = xr.full_like(fc.isel(time=0, drop=True), 44.45)  # AMC II: CN 75
    out = ff.ffg_threat(fc, ante)
    s = 25400 / 75 - 254
    f1, f3, f6 = (ff.flash_flood_guidance(r, s) for r in (10.0, 15.0, 20.0))
    assert float(out.ffg.sel(duration=1.0)[0, 0]) == pytest.approx(f1)
    r = out.ratio.isel(latitude=0, longitude=0)
    assert float(r.sel(duration=1.0).isel(time=3)) == pytest.approx(60 / f1)
    assert float(r.sel(duration=3.0).isel(time=7)) == pytest.approx(75 / f3)
    assert float(r.sel(duration=6.0).isel(time=7)) == pytest.approx(135 / f6)
    tr = out.threat_ratio.isel(latitude=0, longitude=0)
    np.testing.assert_allclose(tr.values, r.max("duration").values)
    assert tr.isel(time=0) == 0
    cls = out.threat_class.isel(latitude=0, longitude=0).values
    np.testing.assert_array_equal(cls, ff.threat_class(tr.values))
    assert cls[0] == 0 and cls.max() >= 1
    assert float(out.threat_mm.isel(latitude=0, longitude=0, time=7)) == pytest.approx(
        max(25 - f1, 75 - f3, 135 - f6))
    # drier soil lowers the threat for the same rain
    dry = ff.ffg_threat(fc, ante * 0)
    assert np.all(dry.threat_ratio <= out.threat_ratio)
    assert float(dry.threat_ratio.max()) < float(out.threat_ratio.max())
    # a 3-hourly forecast cannot give the 1 h duration
    fc3 = _forecast(np.array([0, 30.0, 60.0]), step_h=3)
    out3 = ff.ffg_threat(fc3, 44.45)
    assert list(out3.duration.values) == [3.0, 6.0]
    with pytest.raises(EwarnError, match="whole multiple of the 12 h step"):
        ff.ffg_threat(_forecast(np.array([0, 30.0]), step_h=12), 44.45)


def test_table_problems_name_the_field(tmp_path):
    text = ff.FLASH_FLOOD_TABLE.read_text(encoding="utf-8")
    bad = tmp_path / "ff.toml"
    bad.write_text(text.replace("runoff_mm = [10.0, 15.0, 20.0]", "runoff_mm = [10.0, 15.0]")
                   .replace('confidence = "confirmed"', 'confidence = "sure"', 1), encoding="utf-8")
    with pytest.raises(TableError) as exc:
        ff.flash_flood_parameters(bad)
    msg = str(exc.value)
    assert "runoff_mm" in msg and "[threshold_runoff]" in msg
    assert "confidence" in msg and "[threat_classes]" in msg
    assert str(bad) in msg


# --------------------------------------------------------------------------- ERIC


@pytest.fixture(scope="module")
def valley():
    """A 12 x 9 V-valley of 0.005° cells at 22° N draining south to one outlet (row 11, column 4)."""
    ny, nx, jc = 12, 9, 4
    i, j = np.mgrid[0:ny, 0:nx]
    dem = np.abs(j - jc) * 10.0 + (ny - i) * 1.0
    flw = pyflwdir.from_dem(dem, transform=Affine(0.005, 0, 104.1, 0, -0.005, 22.1), latlon=True)
    assert list(flw.idxs_pit) == [11 * nx + jc]
    return flw


def test_uniform_rain_gives_coefficient_times_rain_upstream(valley):
    fc = _forecast(np.full(24, 2.0))
    out = ff.eric_index(fc, valley, antecedent_mm=0.0)
    c = ff.runoff_coefficient(0.0)
    assert c == pytest.approx(0.2)
    up = out.upstream_runoff.isel(time=-1)
    for d in (6, 12, 24):
        np.testing.assert_allclose(up.sel(duration=float(d)).values, c * 2.0 * d, rtol=1e-12)
    # latitude ascending (forecast contract), same cells as the flow raster
    assert np.all(np.diff(out.latitude.values) > 0)
    assert out.sizes["latitude"] == 12 and out.sizes["longitude"] == 9
    ch = out.channel.values
    assert ch.any() and not ch.all()
    assert np.all(np.isnan(out.eric_index.isel(time=-1).values[~ch]))
    assert np.all(np.isfinite(out.eric_index.isel(time=-1).values[ch]))
    np.testing.assert_allclose(out.upstream_area.values.max(), 108 * valley.area.mean() / 1e6, rtol=1e-3)


def test_upstream_runoff_is_the_area_weighted_mean_over_the_basin(valley):
    rng = np.random.default_rng(3)
    y, x = ff.flow_grid_coords(valley)
    q = xr.DataArray(rng.uniform(0, 20, (2, *valley.shape)), dims=("time", "latitude", "longitude"),
                     coords={"latitude": y, "longitude": x})
    up = ff.upstream_runoff(q, valley).values
    area = valley.area
    # every cell drains to the outlet (row 11, column 4): its depth is the basin mean
    for t in range(2):
        expect = (q.values[t] * area).sum() / area.sum()
        assert up[t, 11, 4] == pytest.approx(expect, rel=1e-12)
        # a ridge cell has only itself upstream
        assert up[t, 0, 0] == pytest.approx(q.values[t, 0, 0])


def test_eric_index_increases_with_rain_and_uses_the_climatology(valley):
    fc = _forecast(np.full(24, 2.0))
    base = ff.eric_index(fc, valley, antecedent_mm=0.0)
    more = ff.eric_index(fc * 2, valley, antecedent_mm=0.0)
    wet = ff.eric_index(fc, valley, antecedent_mm=80.0)
    ch = base.channel.values
    b, m, w = (o.eric_index.isel(time=-1).values[ch] for o in (base, more, wet))
    np.testing.assert_allclose(m, 2 * b)
    assert np.all(w > b)  # wetter soil sheds more runoff
    # the index grows as rain accumulates through the forecast
    assert np.all(base.eric_index.diff("time").values[:, ch] >= 0)
    # the table reference falls with upstream area: per-cell reference follows the area classes
    ref24 = base.reference.sel(duration=24.0).values
    upa = base.upstream_area.values
    assert np.all(ref24[upa <= 10] == 60.0) and np.all(ref24[(upa > 10) & (upa <= 100)] == 55.0)
    # climatology: 10 mm everywhere and every duration -> index = c * rain_24 / 10 at the end
    clim = xr.DataArray(np.full((3, *valley.shape), 10.0), dims=("duration", "y", "x"),
                        coords={"duration": [6.0, 12.0, 24.0]})
    out = ff.eric_index(fc, valley, antecedent_mm=0.0, climatology=clim)
    np.testing.assert_allclose(out.eric_index.isel(time=-1).values[ch], 0.2 * 48 / 10)
    with pytest.raises(ff.FlashFloodInputError, match="duration"):
        ff.eric_index(fc, valley, 0.0, climatology=clim.sel(duration=[6.0, 12.0]))


def test_probability_from_members(valley):
    pytest.importorskip("dask")
    scale = np.array([0.5, 1.0, 2.0, 4.0])
    rain = scale[:, None] * np.full((4, 24), 2.0)
    fc = _forecast(rain, members=4)
    clim = xr.DataArray(np.full((3, *valley.shape), 10.0), dims=("duration", "y", "x"),
                        coords={"duration": [6.0, 12.0, 24.0]})
    out = ff.eric_index(fc, valley, antecedent_mm=0.0, climatology=clim)
    ch = out.channel.values
    # member indices at the end: 0.2 * 48 * scale / 10 = 0.48, 0.96, 1.92, 3.84 -> 2 of 4 exceed 1
    prob = out.probability.isel(time=-1).values
    np.testing.assert_allclose(prob[ch], 0.5)
    assert np.all(np.isnan(prob[~ch]))
    assert np.all(out.probability.diff("time").values[:, ch] >= 0)
    # dask-backed members give the same numbers, lazily
    lazy = ff.eric_index(fc.chunk({"member": 1}), valley, antecedent_mm=0.0, climatology=clim)
    assert lazy.eric_index.chunks is not None
    np.testing.assert_allclose(lazy.probability.values, out.probability.values)
    np.testing.assert_allclose(lazy.eric_index.values, out.eric_index.values)


def test_flow_grid_outside_the_forecast_is_an_error(valley):
    fc = _forecast(np.full(6, 2.0), lat=(20.0, 20.05), lon=(104.05, 104.1))
    with pytest.raises(ff.FlashFloodInputError, match="beyond the forecast grid"):
        ff.eric_index(fc, valley, 0.0)


def test_threat_ratio_alone_equals_the_full_threat_dataset():
    rng = np.random.default_rng(3)
    rain = rng.gamma(0.6, 6.0, size=(2, 12, 5, 4)).astype(np.float32)
    rain[0, 3, 1, 1] = np.nan
    precip = xr.DataArray(
        rain, dims=("member", "time", "latitude", "longitude"),
        coords={"time": pd.date_range("2024-09-09T01", periods=12, freq="h"),
                "latitude": np.arange(5) * 0.1 + 22.0, "longitude": np.arange(4) * 0.1 + 104.0},
        attrs={"step_hours": 1.0})
    ante = xr.DataArray(rng.uniform(0, 80, size=(5, 4)), dims=("latitude", "longitude"))
    full = ff.ffg_threat(precip, ante)["threat_ratio"]
    lean = ff.threat_ratio(precip, ante)
    assert lean.dtype == np.float32 and lean.dims == full.dims
    np.testing.assert_allclose(lean.values, full.values.astype(np.float32), rtol=1e-6, equal_nan=True)
    assert np.isnan(lean.values[0, 3, 1, 1])
