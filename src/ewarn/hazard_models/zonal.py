"""Zonal statistics of gridded fields per commune, through a cached sparse weight matrix.

A forecast grid (regular latitude/longitude cell centres) and the region's
communes (polygons, EPSG:4326) define a sparse matrix ``C`` of shape
``(n_communes, n_cells)`` whose entry ``C[i, j]`` is the EXACT fraction of
grid cell ``j`` covered by commune ``i`` [-], computed by exactextract
(Baston 2022, https://github.com/isciences/exactextract; the "coverage" and
"cell_id" operations). Cells are numbered row-major over
``(latitude, longitude)`` of the grid as ewarn stores it (latitude ascending):
``j = i_lat * n_lon + i_lon``.

Each statistic is then one sparse matrix product (or one sparse maximum)
over a field whose LAST two dims are ``(latitude, longitude)``, with any
leading dims (member, time, window): no Python loop over communes or cells.
The products stream a time-major field in memory order through the matrix
stored as runs of consecutive cells (:mod:`ewarn.hazard_models.cell_runs`).
Weights are ``C[i, j] * A_j`` with ``A_j`` the area of cell ``j`` on the
sphere [km²], because lon/lat cells shrink with cos(latitude).

:class:`CommuneGrid` is built once per (grid, communes) pair and cached on
disk (:meth:`CommuneGrid.for_grid`), keyed by a hash of the grid coordinates
and a hash of the commune codes and geometries (WKB).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import xarray as xr

from ewarn.errors import EwarnError, Problem, ValidationError
from ewarn.hazard_models.cell_runs import CellRuns

__all__ = [
    "EARTH_RADIUS_KM",
    "CommuneGrid",
    "CommuneGridError",
    "GridMismatchError",
    "cell_areas_km2",
    "grid_edges",
]

#: Mean radius of the Earth [km] (IUGG arithmetic mean radius R1 of GRS80;
#: Moritz 2000, Geodetic Reference System 1980, J. Geodesy 74, 128-133).
EARTH_RADIUS_KM = 6371.0088

#: Bump when the cache file layout or the weight definition changes.
_CACHE_VERSION = 1

Weighting = Literal["area", "coverage"]


class CommuneGridError(ValidationError):
    """Communes that cannot be placed on the grid (outside it, empty geometry), all listed."""


class GridMismatchError(EwarnError):
    """A field, grid or commune table that the weight matrix cannot use."""


# --------------------------------------------------------------------------- grid geometry


def _axis_edges(c: np.ndarray, name: str) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    if c.ndim != 1 or c.size < 1 or not np.all(np.isfinite(c)):
        raise GridMismatchError(f"grid {name}: expected a 1-D array of finite cell centres, got shape "
                                f"{c.shape}; pass the forecast's {name} coordinate")
    if c.size == 1:
        raise GridMismatchError(f"grid {name}: a single cell centre gives no cell size; the forecast grid "
                                "needs at least two cells per axis")
    d = np.diff(c)
    if np.any(d <= 0):
        raise GridMismatchError(f"grid {name} must be strictly ascending (as ewarn.forecasts stores it); "
                                f"sort the field with .sortby('{name}')")
    if not np.allclose(d, d[0], rtol=1e-6, atol=1e-9):
        i = int(np.argmax(~np.isclose(d, d[0], rtol=1e-6, atol=1e-9)))
        raise GridMismatchError(f"grid {name} is irregular (step {d[0]:g}° then {d[i]:g}° after "
                                f"{c[i + 1]:g}); regrid to a regular grid first")
    step = (c[-1] - c[0]) / (c.size - 1)
    return c[0] - step / 2 + step * np.arange(c.size + 1)


def grid_edges(lat: Sequence[float], lon: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges of a regular grid given its cell centres.

    Parameters
    ----------
    lat, lon : array_like
        Ascending, equally spaced cell centres [degrees_north], [degrees_east].

    Returns
    -------
    lat_edges, lon_edges : numpy.ndarray
        ``n + 1`` edges per axis [degrees]; latitude edges clipped to ±90.

    Raises
    ------
    GridMismatchError
        When an axis is not ascending, irregular or has fewer than two cells.
    """
    return np.clip(_axis_edges(lat, "latitude"), -90.0, 90.0), _axis_edges(lon, "longitude")


def cell_areas_km2(lat: Sequence[float], lon: Sequence[float]) -> np.ndarray:
    """Area of every cell of a regular lon/lat grid on the sphere.

    ``A = R² · Δλ · (sin φ_north − sin φ_south)`` with Δλ in radians: the area
    of a spherical quadrangle between two parallels and two meridians
    (Snyder 1987, Map Projections — A Working Manual, USGS PP 1395, eq. for the
    Lambert cylindrical equal-area projection, p. 76-77).

    Parameters
    ----------
    lat, lon : array_like
        Ascending, equally spaced cell centres [degrees].

    Returns
    -------
    numpy.ndarray
        ``(n_lat, n_lon)`` cell areas [km²], with :data:`EARTH_RADIUS_KM`.
    """
    ye, xe = grid_edges(lat, lon)
    band = np.diff(np.sin(np.deg2rad(ye)))  # (n_lat,)
    dlon = np.deg2rad(np.diff(xe))  # (n_lon,)
    return EARTH_RADIUS_KM**2 * band[:, None] * dlon[None, :]


# --------------------------------------------------------------------------- hashing


def _grid_hash(lat: np.ndarray, lon: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in (lat, lon):
        a = np.ascontiguousarray(np.round(np.asarray(a, np.float64), 9))
        h.update(str(a.size).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _communes_hash(codes: np.ndarray, geoms: np.ndarray) -> str:
    import shapely

    h = hashlib.sha256()
    wkb = shapely.to_wkb(geoms, hex=False, output_dimension=2, byte_order=1, include_srid=False)
    for code, g in zip(codes, wkb, strict=True):
        h.update(str(code).encode())
        h.update(b"\0")
        h.update(g if g is not None else b"")
        h.update(b"\1")
    return h.hexdigest()[:16]


def _atomic_write(path: Path, write: Any) -> None:
    """Write through ``write(fileobj)`` to a temp file in the same folder, then os.replace."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- the weight matrix


@dataclass(frozen=True, eq=False)
class CommuneGrid:
    """Exact-coverage weights of communes over a regular lon/lat grid.

    Attributes
    ----------
    codes : numpy.ndarray
        Commune codes (str), the order of the commune axis of every result.
    names : numpy.ndarray
        Commune names (str).
    lat, lon : numpy.ndarray
        Cell centres of the grid [degrees], ascending.
    coverage : scipy.sparse.csr_matrix
        ``(n_communes, n_lat * n_lon)`` float64 coverage fractions [-]
        (only cells with coverage > 0 are stored).
    cell_area_km2 : numpy.ndarray
        ``(n_lat * n_lon,)`` cell areas on the sphere [km²].
    key : str
        Cache key: ``<grid hash>-<communes hash>``.
    """

    codes: np.ndarray
    names: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    coverage: sp.csr_matrix
    cell_area_km2: np.ndarray
    key: str
    loaded_from_cache: bool = field(default=False, compare=False)

    # ----------------------------------------------------------------- building

    @classmethod
    def build(cls, lat: Sequence[float], lon: Sequence[float], communes: Any, *,
              source: str = "communes") -> CommuneGrid:
        """Compute the weight matrix (no cache).

        Parameters
        ----------
        lat, lon : array_like
            Ascending, equally spaced cell centres of the field's grid [degrees].
        communes : geopandas.GeoDataFrame
            Columns ``code`` and ``name`` and polygon geometry (reprojected to
            EPSG:4326 when in another CRS), as ``Region.communes``.
        source : str
            The communes' file, for error messages.

        Returns
        -------
        CommuneGrid

        Raises
        ------
        CommuneGridError
            Naming (code and name) every commune with an empty geometry or
            entirely outside the grid.
        GridMismatchError
            When the grid is not regular or the communes lack ``code``/``name``.
        """
        lat_a, lon_a, codes, names, geoms, gdf = _prepare(lat, lon, communes, source)
        key = f"{_grid_hash(lat_a, lon_a)}-{_communes_hash(codes, geoms)}"
        return cls._compute(lat_a, lon_a, codes, names, gdf, key, source)

    @classmethod
    def _compute(cls, lat: np.ndarray, lon: np.ndarray, codes: np.ndarray, names: np.ndarray,
                 gdf: Any, key: str, source: str) -> CommuneGrid:
        from exactextract import exact_extract
        from exactextract.raster import NumPyRasterSource

        ye, xe = grid_edges(lat, lon)
        ny, nx = lat.size, lon.size
        problems = []
        empty = np.asarray(gdf.geometry.is_empty | gdf.geometry.isna())
        for i in np.flatnonzero(empty):
            problems.append(Problem(source, "has an empty or missing geometry; give it its polygon",
                                    f"commune {codes[i]} ({names[i]})", "geometry"))
        # exactextract reads row 0 of the raster as the NORTHERN row (GDAL convention).
        raster = NumPyRasterSource(np.zeros((ny, nx), dtype=np.float32), float(xe[0]), float(ye[0]),
                                   float(xe[-1]), float(ye[-1]))
        ok = np.flatnonzero(~empty)
        feats = gdf.iloc[ok][["geometry"]].assign(_row=np.arange(ok.size))
        if ok.size:
            df = exact_extract(raster, feats, ["cell_id", "coverage"], output="pandas",
                               include_cols=["_row"])
            cell_lists = list(df["cell_id"])
            cov_lists = list(df["coverage"])
        else:
            cell_lists, cov_lists = [], []
        counts = np.fromiter((len(c) for c in cell_lists), dtype=np.int64, count=len(cell_lists))
        cell_top = (np.concatenate(cell_lists).astype(np.int64) if counts.sum()
                    else np.zeros(0, np.int64))
        cov = np.concatenate(cov_lists).astype(np.float64) if counts.sum() else np.zeros(0)
        rows_ok = np.repeat(ok, counts)
        r_top, col = np.divmod(cell_top, nx)
        cell = (ny - 1 - r_top) * nx + col  # latitude ascending, row-major
        keep = cov > 0
        mat = sp.csr_matrix((cov[keep], (rows_ok[keep], cell[keep])), shape=(len(codes), ny * nx),
                            dtype=np.float64)
        mat.sum_duplicates()
        mat.sort_indices()
        outside = (np.diff(mat.indptr) == 0) & ~empty
        for i in np.flatnonzero(outside):
            problems.append(Problem(
                source, f"lies entirely outside the forecast grid (longitude {xe[0]:g}..{xe[-1]:g}, "
                f"latitude {ye[0]:g}..{ye[-1]:g}); use a forecast that covers the region or remove the "
                "commune from the region", f"commune {codes[i]} ({names[i]})", "geometry"))
        if problems:
            raise CommuneGridError(
                f"{len(problems)} commune(s) of {source} cannot be placed on the forecast grid", problems)
        return cls(codes=codes, names=names, lat=lat, lon=lon, coverage=mat,
                   cell_area_km2=cell_areas_km2(lat, lon).ravel(), key=key)

    @classmethod
    def for_grid(cls, lat: Sequence[float], lon: Sequence[float], communes: Any,
                 cache_dir: Path | str | None, *, source: str = "communes") -> CommuneGrid:
        """The weight matrix of (grid, communes), from the disk cache or built and cached.

        Parameters
        ----------
        lat, lon : array_like
            Cell centres of the field's grid [degrees], ascending, regular.
        communes : geopandas.GeoDataFrame
            ``code``, ``name``, polygon geometry (as ``Region.communes``).
        cache_dir : path-like or None
            Folder of the cache (created when missing); None: no cache.
        source : str
            The communes' file, for error messages.

        Returns
        -------
        CommuneGrid
            ``loaded_from_cache`` tells whether it came from disk.

        Notes
        -----
        The cache holds ``communegrid-<key>.npz`` (sparse matrix, grid) and
        ``communegrid-<key>.json`` (codes, names), each written to a temp file
        in the same folder then renamed (:func:`os.replace`), the JSON last;
        an unreadable cache entry is rebuilt.
        """
        lat_a, lon_a, codes, names, geoms, gdf = _prepare(lat, lon, communes, source)
        key = f"{_grid_hash(lat_a, lon_a)}-{_communes_hash(codes, geoms)}"
        if cache_dir is None:
            return cls._compute(lat_a, lon_a, codes, names, gdf, key, source)
        folder = Path(cache_dir)
        npz_path = folder / f"communegrid-{key}.npz"
        json_path = folder / f"communegrid-{key}.json"
        cached = _load(npz_path, json_path, key, codes)
        if cached is not None:
            return cached
        grid = cls._compute(lat_a, lon_a, codes, names, gdf, key, source)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GridMismatchError(f"cache folder {folder} cannot be created ({exc.strerror}); check the "
                                    "workspace path and permissions") from None
        m = grid.coverage

        def write_npz(fh: Any) -> None:
            np.savez(fh, data=m.data, indices=m.indices, indptr=m.indptr, shape=np.asarray(m.shape),
                     lat=grid.lat, lon=grid.lon)

        meta = {"version": _CACHE_VERSION, "key": key, "codes": [str(c) for c in codes],
                "names": [str(n) for n in names]}
        _atomic_write(npz_path, write_npz)
        _atomic_write(json_path, lambda fh: fh.write(json.dumps(meta, ensure_ascii=False).encode()))
        return grid

    # ----------------------------------------------------------------- derived matrices

    @property
    def n_communes(self) -> int:
        return int(self.coverage.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape ``(n_lat, n_lon)``."""
        return (self.lat.size, self.lon.size)

    @cached_property
    def weights(self) -> sp.csr_matrix:
        """Area weights ``coverage × cell area`` [km²], ``(n_communes, n_cells)`` CSR."""
        return sp.csr_matrix(self.coverage.multiply(self.cell_area_km2[None, :]))

    @cached_property
    def area_km2(self) -> np.ndarray:
        """Area of each commune that lies on the grid [km²] (row sums of :attr:`weights`)."""
        return np.asarray(self.weights.sum(axis=1)).ravel()

    def _normalized(self, weighting: Weighting) -> sp.csr_matrix:
        if weighting == "area":
            return self._mean_area
        if weighting == "coverage":
            return self._mean_coverage
        raise GridMismatchError(f"weighting={weighting!r}: use 'area' (cell area on the sphere × coverage) "
                                "or 'coverage' (coverage fraction only, as exactextract's mean)")

    @cached_property
    def _mean_area(self) -> sp.csr_matrix:
        return _row_normalize(self.weights)

    @cached_property
    def _mean_coverage(self) -> sp.csr_matrix:
        return _row_normalize(self.coverage)

    @cached_property
    def _runs(self) -> dict[str, CellRuns]:
        """The matrices of the statistics as runs of cells, built on first use of each."""
        return {}

    def runs(self, which: Literal["area", "coverage", "total"]) -> CellRuns:
        """One of the weight matrices as :class:`~ewarn.hazard_models.cell_runs.CellRuns` (cached).

        Parameters
        ----------
        which : {"area", "coverage", "total"}
            Row-normalized area weights (:meth:`mean`), row-normalized coverage
            (``weighting="coverage"``) or the raw coverage fractions
            (:meth:`total`, :meth:`maximum`).

        Returns
        -------
        CellRuns
        """
        r = self._runs.get(which)
        if r is None:
            m = {"area": lambda: self._mean_area, "coverage": lambda: self._mean_coverage,
                 "total": lambda: self.coverage}[which]()
            r = self._runs[which] = CellRuns.from_sparse(m)
        return r

    # ----------------------------------------------------------------- statistics

    def mean(self, field: Any, weighting: Weighting = "area") -> Any:
        """Weighted mean of a field over each commune.

        ``mean_i = Σ_j w_ij f_j / Σ_j w_ij`` with ``w_ij = C_ij A_j`` (``"area"``)
        or ``w_ij = C_ij`` (``"coverage"``, exactextract's ``mean``).

        Parameters
        ----------
        field : numpy.ndarray or xarray.DataArray
            Last two dims ``(latitude, longitude)`` on this grid; any leading
            dims. NumPy, xarray or dask-backed xarray.
        weighting : {"area", "coverage"}
            Area-weighted (default) or coverage-weighted.

        Returns
        -------
        numpy.ndarray or xarray.DataArray
            Leading dims + ``commune`` (NaN where a covered cell is NaN).
        """
        self._normalized(weighting)  # checks the name
        runs = self.runs(weighting)
        return self._apply(field, lambda x: _matmul(runs, x), "mean")

    def total(self, per_cell: Any) -> Any:
        """Sum over each commune of a per-cell quantity, shared by coverage: ``Σ_j C_ij q_j``.

        Parameters
        ----------
        per_cell : numpy.ndarray or xarray.DataArray
            An extensive quantity per cell (people, households, m³) with last
            two dims ``(latitude, longitude)``.

        Returns
        -------
        numpy.ndarray or xarray.DataArray
            Leading dims + ``commune``, same unit as ``per_cell``.
        """
        runs = self.runs("total")
        return self._apply(per_cell, lambda x: _matmul(runs, x), "total")

    def maximum(self, field: Any) -> Any:
        """Maximum of a field over the cells each commune covers (coverage > 0).

        Parameters
        ----------
        field : numpy.ndarray or xarray.DataArray
            Last two dims ``(latitude, longitude)``; any leading dims.

        Returns
        -------
        numpy.ndarray or xarray.DataArray
            Leading dims + ``commune``; NaN when a covered cell is NaN.
        """
        runs = self.runs("total")
        return self._apply(field, lambda x: _sparse_max(runs, x), "maximum")

    def fraction_above(self, field: Any, threshold: Any) -> Any:
        """Share of each commune's area where ``field > threshold`` [-].

        Parameters
        ----------
        field : numpy.ndarray or xarray.DataArray
            Last two dims ``(latitude, longitude)``.
        threshold : float or array_like
            Broadcastable against ``field`` (a scalar, or a per-cell grid).

        Returns
        -------
        numpy.ndarray or xarray.DataArray
            Area fraction in [0, 1] per commune; NaN cells count as not above.
        """
        above = field > threshold
        if isinstance(above, xr.DataArray):
            above = above.astype(np.float64)
        else:
            above = np.asarray(above, dtype=np.float64)
        return self.mean(above, "area")

    def exposure_weighted(self, field: Any, weights_per_cell: Any) -> Any:
        """Mean of a field over each commune weighted by exposure (households, people) per cell.

        ``Σ_j C_ij e_j f_j / Σ_j C_ij e_j``: what the average household of the
        commune sees (a cell shared between communes lends each the share of
        its exposure the commune covers).

        Parameters
        ----------
        field : numpy.ndarray or xarray.DataArray
            Last two dims ``(latitude, longitude)``.
        weights_per_cell : array_like
            ``(n_lat, n_lon)`` exposure per cell, e.g. :meth:`households_per_cell`.

        Returns
        -------
        numpy.ndarray or xarray.DataArray
            Leading dims + ``commune``; NaN for a commune with no exposure.
        """
        e = np.asarray(weights_per_cell, dtype=np.float64)
        if e.shape != self.shape:
            raise GridMismatchError(f"exposure weights have shape {e.shape}; expected {self.shape} "
                                    "(latitude, longitude) of the forecast grid: bin them with "
                                    "households_per_cell")
        if np.any(e < 0) or not np.all(np.isfinite(e)):
            raise GridMismatchError("exposure weights must be finite and >= 0 (households or people per "
                                    "cell)")
        w = sp.csr_matrix(self.coverage.multiply(e.ravel()[None, :]))
        w.eliminate_zeros()
        runs = CellRuns.from_sparse(_row_normalize(w))
        return self._apply(field, lambda x: _matmul(runs, x), "exposure_weighted")

    def households_per_cell(self, lon: Any, lat: Any, weights: Any = None) -> np.ndarray:
        """Bin points (households) onto the grid.

        Parameters
        ----------
        lon, lat : array_like
            Point coordinates [degrees].
        weights : array_like, optional
            Per point (e.g. ``people``); default 1 per point (households).

        Returns
        -------
        numpy.ndarray
            ``(n_lat, n_lon)`` float64 sum of weights per cell; points off the
            grid are dropped.
        """
        ye, xe = grid_edges(self.lat, self.lon)
        x = np.asarray(lon, dtype=np.float64).ravel()
        y = np.asarray(lat, dtype=np.float64).ravel()
        w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
        if not (x.shape == y.shape == w.shape):
            raise GridMismatchError(f"households: lon ({x.size}), lat ({y.size}) and weights ({w.size}) "
                                    "must have the same length")
        counts, _, _ = np.histogram2d(y, x, bins=(ye, xe), weights=w)
        return counts

    # ----------------------------------------------------------------- plumbing

    def _apply(self, field: Any, fn: Any, what: str) -> Any:
        if isinstance(field, xr.DataArray):
            return self._apply_xr(field, fn, what)
        x = np.asarray(field)
        if x.ndim < 2 or x.shape[-2:] != self.shape:
            raise GridMismatchError(f"{what}: the field's last two dims have shape {x.shape[-2:]}; expected "
                                    f"{self.shape} (latitude, longitude) of the grid this CommuneGrid was "
                                    "built for")
        return fn(x)

    def _apply_xr(self, da: xr.DataArray, fn: Any, what: str) -> xr.DataArray:
        for dim, ref in (("latitude", self.lat), ("longitude", self.lon)):
            if dim not in da.dims:
                raise GridMismatchError(f"{what}: the field has no '{dim}' dim (dims: "
                                        f"{', '.join(map(str, da.dims))}); name the grid dims 'latitude' "
                                        "and 'longitude' as ewarn.forecasts does")
            c = da.indexes.get(dim)
            vals = np.asarray(c if c is not None else np.arange(da.sizes[dim]), dtype=np.float64)
            if vals.shape != ref.shape or not np.allclose(vals, ref, rtol=0, atol=1e-6):
                raise GridMismatchError(
                    f"{what}: the field's {dim} ({vals.size} values, {vals.min():g}..{vals.max():g}) is not "
                    f"the grid this CommuneGrid was built for ({ref.size} values, {ref.min():g}.."
                    f"{ref.max():g}); build one with CommuneGrid.for_grid for this grid")
        out = xr.apply_ufunc(
            fn, da, input_core_dims=[["latitude", "longitude"]], output_core_dims=[["commune"]],
            dask="parallelized", output_dtypes=[np.result_type(da.dtype, np.float64)],
            dask_gufunc_kwargs={"output_sizes": {"commune": self.n_communes}, "allow_rechunk": True},
            keep_attrs=False,
        )
        return out.assign_coords(commune=self.codes.astype(str),
                                 commune_name=("commune", self.names.astype(str)))


def _row_normalize(m: sp.csr_matrix) -> sp.csr_matrix:
    s = np.asarray(m.sum(axis=1)).ravel()
    inv = np.divide(1.0, s, out=np.full_like(s, np.nan), where=s > 0)
    return sp.csr_matrix(sp.diags(inv) @ m)


def _matmul(runs: CellRuns, x: np.ndarray) -> np.ndarray:
    """``W @ x`` over the last two (flattened) dims of ``x`` in float64; leading dims kept."""
    return _per_commune(runs.matmul, runs, x)


def _sparse_max(runs: CellRuns, x: np.ndarray) -> np.ndarray:
    """Row-wise maximum of ``x`` over the stored cells of each row (in ``x``'s float precision)."""
    return _per_commune(runs.maximum, runs, x)


def _per_commune(fn: Any, runs: CellRuns, x: np.ndarray) -> np.ndarray:
    """``fn`` over the flattened grid of ``x`` (leading dims kept); NaN for rows without cells
    (no exposure)."""
    x = np.asarray(x)
    out = fn(x.reshape(-1, x.shape[-2] * x.shape[-1]))
    empty = runs.empty_rows
    if empty.any():
        out[:, empty] = np.nan
    return out.reshape(*x.shape[:-2], runs.shape[0])


def _prepare(lat: Any, lon: Any, communes: Any, source: str
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any]:
    lat_a = np.asarray(lat, dtype=np.float64)
    lon_a = np.asarray(lon, dtype=np.float64)
    grid_edges(lat_a, lon_a)  # validates
    missing = [c for c in ("code", "name") if c not in getattr(communes, "columns", ())]
    if missing or not hasattr(communes, "geometry"):
        raise GridMismatchError(f"{source}: communes need columns 'code' and 'name' and a geometry "
                                f"(missing: {', '.join(missing) or 'geometry'}); load them with "
                                "ewarn.region or rename the columns")
    gdf = communes
    if gdf.crs is not None and not gdf.crs.equals("EPSG:4326"):
        gdf = gdf.to_crs(4326)
    codes = np.asarray(gdf["code"].astype(str).to_numpy(), dtype=object)
    names = np.asarray(gdf["name"].astype(str).to_numpy(), dtype=object)
    if len(set(codes)) != len(codes):
        dup = sorted({c for c in codes if (codes == c).sum() > 1})
        raise GridMismatchError(f"{source}: commune codes repeat ({', '.join(dup[:10])}); each commune "
                                "needs one unique code")
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    return lat_a, lon_a, codes, names, geoms, gdf.reset_index(drop=True)


def _load(npz_path: Path, json_path: Path, key: str, codes: np.ndarray) -> CommuneGrid | None:
    if not (npz_path.is_file() and json_path.is_file()):
        return None
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        if meta.get("version") != _CACHE_VERSION or meta.get("key") != key:
            return None
        with np.load(npz_path) as z:
            shape = tuple(int(s) for s in z["shape"])
            mat = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=shape)
            lat, lon = z["lat"], z["lon"]
        if list(meta["codes"]) != [str(c) for c in codes] or shape[0] != len(codes):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable entry: rebuild (and overwrite atomically)
    return CommuneGrid(codes=np.asarray(meta["codes"], dtype=object),
                       names=np.asarray(meta["names"], dtype=object), lat=lat, lon=lon, coverage=mat,
                       cell_area_km2=cell_areas_km2(lat, lon).ravel(), key=key, loaded_from_cache=True)
