"""End-to-end tests of the ``ewarn`` command, run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def ewarn(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EWARN_")}
    full_env.update({"COLUMNS": "200", "NO_COLOR": "1"})
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ewarn.cli", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd, timeout=600,
    )


def test_version_and_help():
    r = ewarn("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("ewarn ")
    r = ewarn("--help")
    assert r.returncode == 0
    for cmd in ("init", "region", "demo", "ingest", "forecasts"):
        assert cmd in r.stdout


def test_init_creates_workspace(tmp_path):
    r = ewarn("init", str(tmp_path / "ws"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ws" / "ewarn.toml").exists()
    assert (tmp_path / "ws" / "ewarn.db").exists()


def test_bad_settings_file_is_reported_without_traceback(tmp_path):
    ewarn("init", str(tmp_path / "ws"))
    (tmp_path / "ws" / "ewarn.toml").write_text("[routing]\nmode = 'boat'\n")
    r = ewarn("forecasts", "list", "--workspace", str(tmp_path / "ws"))
    assert r.returncode == 2
    assert "routing.mode" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_workspace_says_how_to_create_it(tmp_path):
    r = ewarn("region", "show", "--workspace", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert "ewarn init" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.fixture
def lao_cai(shared_data):
    return shared_data / "communes" / "lao_cai_2025.geojson"


def test_import_real_lao_cai_then_show_and_validate(tmp_path, lao_cai):
    ws = tmp_path / "ws"
    assert ewarn("init", str(ws)).returncode == 0
    r = ewarn("region", "import", "--workspace", str(ws), "--communes", str(lao_cai),
              "--code-field", "ma_xa", "--name-field", "ten_xa", "--population-field", "dan_so",
              "--province-field", "ten_tinh", "--name", "Lào Cai")
    assert r.returncode == 0, r.stderr
    assert "99 communes" in r.stdout
    r = ewarn("region", "show", "--workspace", str(ws))
    assert r.returncode == 0, r.stderr
    assert "Phúc Khánh" in r.stdout and "02998" in r.stdout
    r = ewarn("region", "validate", "--workspace", str(ws))
    assert r.returncode == 0, r.stderr


def test_wrong_field_mapping_is_refused_and_nothing_written(tmp_path, lao_cai):
    ws = tmp_path / "ws"
    ewarn("init", str(ws))
    r = ewarn("region", "import", "--workspace", str(ws), "--communes", str(lao_cai),
              "--code-field", "commune_code", "--name-field", "ten_xa", "--population-field", "dan_so")
    assert r.returncode in (1, 2)
    assert "commune_code" in r.stderr
    assert "ma_xa" in r.stderr  # the fields the file does have are listed
    assert "lao_cai_2025.geojson" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (ws / "region").exists()


def test_region_validate_lists_every_error(tmp_path, lao_cai):
    ws = tmp_path / "ws"
    ewarn("init", str(ws))
    hh = tmp_path / "households.csv"
    hh.write_text(
        "household_id,commune_code,lon,lat,people,vulnerable\n"
        "H1,02998,104.56,22.17,4,0\n"
        "H1,02998,104.56,22.17,3,0\n"      # duplicate id
        "H3,99999,104.56,22.17,3,0\n"      # unknown commune
        "H4,02998,104.56,22.17,0,0\n"      # people <= 0
    )
    r = ewarn("region", "import", "--workspace", str(ws), "--communes", str(lao_cai),
              "--code-field", "ma_xa", "--name-field", "ten_xa", "--population-field", "dan_so",
              "--households", str(hh))
    assert r.returncode in (1, 2)
    err = r.stderr
    assert "households.csv" in err
    assert "H1" in err or "row 3" in err
    assert "99999" in err
    assert "people" in err
    assert not (ws / "region").exists()


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    ws = tmp_path / "demo"
    r = ewarn("demo", "--workspace", str(ws))
    assert r.returncode == 0, r.stderr + r.stdout
    assert "Phúc Khánh" in (ws / "region" / "communes.geojson").read_text(encoding="utf-8")
    archived = list((ws / "forecasts" / "demo").glob("*.nc"))
    assert len(archived) == 1
    assert str(ws) in r.stdout
    # SMS through the file gateway: Phúc Khánh's officials are warned, in both forms
    sent = (ws / "outbox" / "sent.jsonl").read_text(encoding="utf-8").splitlines()
    assert "SMS:" in r.stdout and "CAP 1.2" in r.stdout
    assert any("Phúc Khánh" in line for line in sent) and any("Phuc Khanh" in line for line in sent)
    assert (ws / "cap" / "feed.atom").exists()
    # the evacuation plan of the cycle
    report = ws / "reports" / "yagi-2024" / "report.html"
    assert report.exists() and str(report) in r.stdout.replace("\n", "")
    plan_dir = ws / "plans" / "demo" / "20240907T12"
    assert "must move" in r.stdout and (plan_dir / "plan.csv").exists()
    assert (plan_dir / "routes.geojson").exists()
    assert (ws / "assessments" / "demo" / "20240907T12-cells.nc").exists()
    # a second run is idempotent: same archive, the cycle reported unchanged, no SMS sent twice
    r2 = ewarn("demo", "--workspace", str(ws))
    assert r2.returncode == 0, r2.stderr
    assert list((ws / "forecasts" / "demo").glob("*.nc")) == archived
    assert (ws / "outbox" / "sent.jsonl").read_text(encoding="utf-8").splitlines() == sent
    r_status = ewarn("alerts", "status", "--workspace", str(ws))
    assert r_status.returncode == 0, r_status.stderr
    assert f"sent {len(sent)}" in r_status.stdout and "queued 0" in r_status.stdout
    assert "+8498" not in r_status.stdout.replace("+8498***", "")  # numbers masked
    r_prev = ewarn("alerts", "preview", "--now", "2024-09-07T15", "--workspace", str(ws))
    assert r_prev.returncode == 0, r_prev.stderr
    # already told: no commune warning again, only the cycle's province summaries, shown as queued
    assert "2 message(s)" in r_prev.stdout and "warning" not in r_prev.stdout
    assert r_prev.stdout.count("yes") == 2
    r_send = ewarn("alerts", "send", "--now", "2024-09-07T15", "--workspace", str(ws))
    assert r_send.returncode == 0, r_send.stderr
    assert "0 message(s) queued" in r_send.stdout
    r_plan = ewarn("plan", "--mode", "walk", "--now", "2024-09-07T15", "--workspace", str(ws))
    assert r_plan.returncode == 0, r_plan.stderr
    assert "evacuation (walk" in r_plan.stdout
    r_rel = ewarn("relocation", "--workspace", str(ws))
    assert r_rel.returncode == 0, r_rel.stderr
    assert '"unassigned": 0' in r_rel.stdout and (ws / "plans" / "relocation").is_dir()
    r3 = ewarn("forecasts", "list", "--workspace", str(ws))
    assert r3.returncode == 0
    assert "2024-09-07T12" in r3.stdout
    # the assessment: Phúc Khánh at level >= 2, shown in local time, stored once per cycle
    assert (ws / "assessments" / "demo" / "20240907T12.nc").exists()
    r4 = ewarn("risk", "show", "--workspace", str(ws))
    assert r4.returncode == 0, r4.stderr
    assert "Phúc Khánh" in r4.stdout and "UTC+7" in r4.stdout
    line = next(ln for ln in r4.stdout.splitlines() if "02998" in ln)
    assert "Cấp 2" in line or "Cấp 3" in line or "Cấp 4" in line or "Cấp 5" in line
    r5 = ewarn("assess", "demo", "2024-09-07T12", "--workspace", str(ws))
    assert r5.returncode == 0, r5.stderr
    r6 = ewarn("risk", "show", "--source", "demo", "--cycle", "2024-09-07T12", "--min-level", "3",
               "--workspace", str(ws))
    assert r6.returncode == 0 and "02998" in r6.stdout
    r7 = ewarn("risk", "show", "--source", "demo", "--cycle", "2024-09-08T00", "--workspace", str(ws))
    assert r7.returncode == 2 and "ewarn assess demo" in r7.stderr
    contacts = (ws / "region" / "contacts.csv").read_text(encoding="utf-8")
    assert "demo" in contacts.splitlines()[0]
    # no credential is ever written to a file by the demo
    settings_lines = [ln.split("#")[0] for ln in (ws / "ewarn.toml").read_text().splitlines()]
    assert not any(k in ln.upper() for ln in settings_lines for k in ("TOKEN", "SID", "PASSWORD"))


def test_ingest_real_gfs_stale_then_replayed(tmp_path, shared_data):
    ws = tmp_path / "ws"
    ewarn("init", str(ws))
    gfs = shared_data / "grib" / "gfs_2p5deg_20111008T00_f072_precip.grib2"
    r = ewarn("ingest", "gfs", str(gfs), "--workspace", str(ws))
    assert r.returncode == 2
    assert "stale" in r.stderr and gfs.name in r.stderr.replace("\n", "")
    assert not list((ws / "forecasts").rglob("*.nc"))  # nothing archived
    r = ewarn("ingest", "gfs", str(gfs), "--as-of", "2011-10-08T06", "--workspace", str(ws))
    assert r.returncode == 0, r.stderr
    assert (ws / "forecasts" / "gfs" / "20111008T00.nc").exists()
    r = ewarn("ingest", "gfs", str(gfs), "--as-of", "2011-10-08T06", "--workspace", str(ws))
    assert r.returncode == 0
    assert "unchanged" in r.stdout
    r = ewarn("forecasts", "list", "--workspace", str(ws))
    assert "2011-10-08T00" in r.stdout


def test_ingest_grib_with_two_grids_names_them(tmp_path, shared_data):
    ws = tmp_path / "ws"
    ewarn("init", str(ws))
    r = ewarn("ingest", "ecmwf-ifs", str(shared_data / "grib" / "ecmwf_tp_two_grids.grib"),
              "--as-of", "2020-01-01", "--workspace", str(ws))
    assert r.returncode == 2
    err = r.stderr.replace("\n", " ")
    assert "2664" in err and "4140" in err
    assert "Traceback" not in r.stderr


def test_error_text_with_square_brackets_is_printed_verbatim(tmp_path):
    ws = tmp_path / "ws"
    ewarn("init", str(ws))
    (ws / "ewarn.toml").write_text("[alerts]\nmin_level = [1]\n")
    r = ewarn("forecasts", "list", "--workspace", str(ws))
    assert r.returncode == 2
    assert "(got [1])" in r.stderr  # rich markup must not eat bracketed text


@pytest.mark.slow
def test_contacts_import_refuses_a_bad_file_whole(tmp_path):
    ws = tmp_path / "ws"
    assert ewarn("init", str(ws)).returncode == 0
    from ewarn.demo import build_demo_region

    build_demo_region(ws / "region")
    before = (ws / "region" / "contacts.csv").read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("commune_code,name,role,phone,language,unaccented\n"
                   "02998,Lò Văn A,Chủ tịch UBND xã,+84912345678,vi,false\n"
                   "02998,Lò Văn B,Trưởng Công an xã,0912 34,vi,true\n"
                   "99999,Lò Văn C,Chủ tịch UBND xã,+84912345670,vi,false\n", encoding="utf-8")
    r = ewarn("contacts", "import", str(bad), "--workspace", str(ws))
    assert r.returncode == 1
    assert "nothing was changed" in r.stderr and "row 3" in r.stderr and "phone" in r.stderr
    assert "99999" in r.stderr
    assert (ws / "region" / "contacts.csv").read_bytes() == before
    good = tmp_path / "good.csv"
    good.write_text("commune_code,name,role,phone,language,unaccented\n"
                    "02998,Lò Văn A,Chủ tịch UBND xã,0912345678,vi,false\n"
                    "02947,Jane Duty,Ban Chỉ huy PCTT tỉnh,+84912345679,en,false\n", encoding="utf-8")
    r = ewarn("contacts", "import", str(good), "--workspace", str(ws))
    assert r.returncode == 0, r.stderr
    r = ewarn("contacts", "list", "--workspace", str(ws))
    assert r.returncode == 0, r.stderr
    assert "Lò Văn A" in r.stdout and "(operator)" in r.stdout
    assert "0912345678" not in r.stdout and "+84912345678" not in r.stdout  # stored E.164, shown masked


def test_scenario_errors_are_plain(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "x"\n[region]\npath = "demo"\n[rain]\nkind = "demo"\nsclae = 2\n',
                   encoding="utf-8")
    r = ewarn("scenario", "run", str(bad))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "sclae" in r.stderr and "did you mean 'scale'" in r.stderr and "Traceback" not in r.stderr
    r = ewarn("scenario", "sweep", str(bad), "--rain-scale", "2:1")
    assert r.returncode != 0 and "Traceback" not in r.stderr
