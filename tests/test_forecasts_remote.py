"""URLs (a local http.server on 127.0.0.1, never the internet) and the drop folder."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import os
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from ewarn.forecasts import ForecastError, ingest, watch_folder
from ewarn.forecasts.remote import download, is_opendap
from test_forecasts_fixtures import BOUNDS, archive_state, cf_dataset, make_workspace, write_nc

NOW = dt.datetime(2024, 9, 7, 15, tzinfo=dt.UTC)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``files``; ``/cut/NAME`` sends half of NAME then closes; ``/flaky/NAME`` cuts once."""

    files: ClassVar[dict[str, bytes]] = {}
    hits: ClassVar[dict[str, int]] = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        mode, name = (parts[0], parts[1]) if len(parts) == 2 else ("ok", parts[0])
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        data = self.files.get(name)
        if data is None:
            self.send_error(404, "not found")
            return
        cut = mode == "cut" or (mode == "flaky" and self.hits[self.path] == 1)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if cut else data)
        self.wfile.flush()
        if cut:
            self.close_connection = True


@pytest.fixture
def server(tmp_path):
    src = write_nc(cf_dataset(), tmp_path / "served.nc")
    _Handler.files = {"f.nc": src.read_bytes()}
    _Handler.hits = {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", src
    httpd.shutdown()
    httpd.server_close()


def test_ingest_from_http_downloads_into_the_workspace(server, tmp_path):
    base, src = server
    ws = make_workspace(tmp_path / "ws")
    a = ingest(ws, "cf-netcdf", f"{base}/f.nc", bounds=BOUNDS, now=NOW)
    assert a.status == "archived"
    cached = list(ws.path("cache", "downloads").iterdir())
    assert len(cached) == 1 and cached[0].read_bytes() == src.read_bytes()
    assert cached[0].name.endswith("-f.nc")


def test_connection_cut_mid_file_never_counts(server, tmp_path):
    base, _ = server
    ws = make_workspace(tmp_path / "ws")
    before = archive_state(ws)
    ws.settings.forecasts.download_retries = 2
    with pytest.raises(ForecastError) as err:
        ingest(ws, "cf-netcdf", f"{base}/cut/f.nc", bounds=BOUNDS, now=NOW)
    msg = str(err.value)
    assert f"{base}/cut/f.nc" in msg and "after 2 attempt(s)" in msg and "bytes" in msg
    assert _Handler.hits["/cut/f.nc"] == 2
    assert list(ws.path("cache", "downloads").iterdir()) == []  # no partial file kept
    assert archive_state(ws) == before


def test_a_cut_then_a_complete_download_succeeds(server, tmp_path):
    base, src = server
    out = download(f"{base}/flaky/f.nc", tmp_path / "dl", retries=3, backoff_s=0)
    assert out.read_bytes() == src.read_bytes() and _Handler.hits["/flaky/f.nc"] == 2
    assert [p.name for p in (tmp_path / "dl").iterdir()] == [out.name]


def test_checksum_mismatch_and_404(server, tmp_path):
    base, src = server
    with pytest.raises(ForecastError, match="SHA-256"):
        download(f"{base}/f.nc", tmp_path / "dl", sha256="0" * 64, retries=1)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    path = download(f"{base}/f.nc", tmp_path / "dl", sha256=good, retries=1)
    hits = _Handler.hits["/f.nc"]
    assert download(f"{base}/f.nc", tmp_path / "dl", sha256=good) == path  # cached: not fetched again
    assert _Handler.hits["/f.nc"] == hits
    with pytest.raises(ForecastError, match="HTTP 404"):
        download(f"{base}/missing.nc", tmp_path / "dl", retries=3, backoff_s=0)
    assert _Handler.hits["/missing.nc"] == 1  # a 404 is not retried


def test_opendap_urls_are_recognised():
    assert is_opendap("https://example.org/thredds/thredds/dodsC/gfs/best")
    assert is_opendap("dap4://server/data")
    assert not is_opendap("https://example.org/files/gfs.nc")


# ------------------------------------------------------------------ drop folder


def test_drop_folder_returns_complete_new_files_only(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    good = write_nc(cf_dataset(), drop / "a.nc")
    data = good.read_bytes()
    (drop / "b.nc").write_bytes(data[: len(data) // 3])  # still being copied
    (drop / "c.nc.part").write_bytes(data)  # a downloader's temporary name
    seen: set[str] = set()
    assert watch_folder(drop, "*.nc", seen) == [good]
    assert watch_folder(drop, "*.nc", seen) == []  # not returned twice
    (drop / "b.nc.done").write_text("")  # the writer says it is complete
    assert watch_folder(drop, "*.nc", seen) == [drop / "b.nc"]


def test_drop_folder_size_must_be_stable_across_two_polls(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    f = write_nc(cf_dataset(), drop / "a.nc")
    sizes: dict[str, int] = {}
    assert watch_folder(drop, "*.nc", sizes=sizes) == []  # first poll: size unknown before
    with f.open("ab") as fh:  # grows between polls
        fh.write(b"\0" * 10)
    assert watch_folder(drop, "*.nc", sizes=sizes) == []
    assert watch_folder(drop, "*.nc", sizes=sizes) == [f]


def test_ingest_a_drop_folder_takes_the_newest_complete_file(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    drop = tmp_path / "drop"
    older = write_nc(cf_dataset(ref=np.datetime64("2024-09-07T06:00", "ns")), drop / "old.nc")
    newer = write_nc(cf_dataset(), drop / "new.nc")
    os.utime(older, (1_000_000, 1_000_000))
    partial = drop / "partial.nc"
    partial.write_bytes(newer.read_bytes()[:500])
    a = ingest(ws, "cf-netcdf", drop, bounds=BOUNDS, now=NOW)
    assert a.cycle == dt.datetime(2024, 9, 7, 12, tzinfo=dt.UTC)


def test_empty_drop_folder_is_a_clear_error(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    (tmp_path / "drop").mkdir()
    with pytest.raises(ForecastError, match="no complete file matching"):
        ingest(ws, "cf-netcdf", Path(tmp_path / "drop"), bounds=BOUNDS, now=NOW)
