"""Forecasts behind a URL: download first, completely, or open OPeNDAP.

An HTTP(S) file is downloaded into the workspace (``cache/downloads/``)
with a timeout and retries; the bytes go to a temporary file that is renamed
only when the download is complete (the size the server announced, and the
SHA-256 when the caller knows it), so a partial download never counts.
OPeNDAP URLs (``dap://``, ``/dodsC/``, ``/opendap/``) are opened directly by
the netCDF4 library, which reads only the subset that is used.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ewarn.forecasts.errors import ForecastError

_CHUNK = 1 << 20
_SCHEMES = ("http", "https", "ftp", "dap", "dap2", "dap4")


def is_url(text: str) -> bool:
    """Whether ``text`` is a URL ewarn can read (http, https, ftp, OPeNDAP)."""
    return urllib.parse.urlsplit(str(text)).scheme.lower() in _SCHEMES


def is_opendap(url: str) -> bool:
    """Whether ``url`` is an OPeNDAP endpoint (opened directly, not downloaded)."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower().startswith("dap") or bool(re.search(r"/(dodsC|opendap|dap)/", parts.path))


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, hex."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def cache_name(url: str) -> str:
    """File name of a URL in the download cache: a hash of the URL and its base name."""
    base = Path(urllib.parse.urlsplit(url).path).name or "download"
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base)[-100:]
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{base}"


def _fetch_once(url: str, tmp: Path, timeout: float) -> tuple[int, int | None]:
    """Stream ``url`` into ``tmp``; (bytes received, bytes announced)."""
    req = urllib.request.Request(url, headers={"User-Agent": "ewarn"})
    received = 0
    with urllib.request.urlopen(req, timeout=timeout) as resp, tmp.open("wb") as out:
        length = resp.headers.get("Content-Length")
        announced = int(length) if length and length.isdigit() else None
        while chunk := resp.read(_CHUNK):
            out.write(chunk)
            received += len(chunk)
    return received, announced


def download(url: str, dest_dir: Path, *, timeout: float = 60.0, retries: int = 3,
             sha256: str | None = None, expected_size: int | None = None,
             backoff_s: float = 1.0) -> Path:
    """Download ``url`` into ``dest_dir`` completely, or fail leaving nothing.

    Parameters
    ----------
    url : str
        HTTP(S) or FTP URL.
    dest_dir : Path
        Folder of the finished file (created).
    timeout : float
        Per-request timeout [s].
    retries : int
        Attempts before giving up.
    sha256 : str, optional
        Expected SHA-256 (hex); a cached file with this checksum is reused.
    expected_size : int, optional
        Expected size [bytes], checked like the server's Content-Length.
    backoff_s : float
        Wait before the second attempt [s], doubled at each further one.

    Returns
    -------
    Path
        The complete file.

    Raises
    ------
    ForecastError
        Every attempt failed (the message gives the last cause), or the
        server answered 4xx.
    """
    dest_dir = Path(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ForecastError(f"cannot create the download folder {dest_dir} ({exc.strerror}); check "
                            "the workspace is writable", file=url) from None
    final = dest_dir / cache_name(url)
    if sha256 and final.exists() and sha256_of(final) == sha256.lower():
        return final
    last = "no attempt made"
    for attempt in range(1, max(retries, 1) + 1):
        fd, name = tempfile.mkstemp(dir=dest_dir, prefix=final.name + ".", suffix=".part")
        os.close(fd)
        tmp = Path(name)
        try:
            received, announced = _fetch_once(url, tmp, timeout)
            want = expected_size if expected_size is not None else announced
            if want is not None and received != want:
                last = f"received {received} of {want} bytes (the connection was cut)"
            elif received == 0:
                last = "the server sent an empty file"
            elif sha256 and sha256_of(tmp) != sha256.lower():
                last = f"SHA-256 {sha256_of(tmp)} differs from the expected {sha256.lower()}"
            else:
                os.replace(tmp, final)
                return final
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code} {exc.reason}"
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                tmp.unlink(missing_ok=True)
                raise ForecastError(f"download refused: {last}; check the URL", file=url) from None
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            last = f"{type(exc).__name__}: {reason}"
        finally:
            tmp.unlink(missing_ok=True)
        if attempt < retries and backoff_s > 0:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    raise ForecastError(f"download failed after {retries} attempt(s): {last}; nothing was kept. Check "
                        "the network and the URL, then ingest again", file=url)
