"""Scenario files: the schema, its error messages and the example scenarios."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ewarn.config import RoutingSettings
from ewarn.errors import EwarnError, ValidationError
from ewarn.forecasts.synthetic import demo_storm_params
from ewarn.scenarios.schema import (
    OUTPUT_FILES,
    Options,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "scenarios"
HEAD = '[scenario]\nname = "thử nghiệm"\n'


def write(folder: Path, text: str, name: str = "s.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value.problems


def one_problem(path: Path):
    found = problems_of(path)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("name", ["yagi-2024.toml", "yagi-2024-bridge-out.toml",
                                  "yagi-2024-new-shelter.toml", "relocation-2026.toml"])
def test_example_scenarios_load_and_say_what_question_they_answer(name):
    path = EXAMPLES / name
    text = path.read_text(encoding="utf-8")
    header = text.split("[scenario]")[0]
    assert header.lstrip().startswith("#") and "Question:" in header
    sc = load_scenario(path)
    assert sc.file == path.resolve() and sc.folder == EXAMPLES.resolve()
    assert sc.region.is_demo and sc.region.folder is None
    assert sc.rain.kind == "demo"
    assert sc.name.strip()


def test_example_scenarios_differ_from_the_baseline_only_where_they_say():
    base = load_scenario(EXAMPLES / "yagi-2024.toml")
    bridge = load_scenario(EXAMPLES / "yagi-2024-bridge-out.toml")
    shelter = load_scenario(EXAMPLES / "yagi-2024-new-shelter.toml")
    reloc = load_scenario(EXAMPLES / "relocation-2026.toml")
    assert base.changes.close_polygons == [] and base.changes.shelters == []
    assert len(bridge.changes.close_polygons) == 1 and bridge.changes.shelters == []
    assert bridge.rain == base.rain and bridge.options == base.options
    assert [s.action for s in shelter.changes.shelters] == ["open"]
    assert shelter.rain == base.rain and shelter.options == base.options
    assert reloc.options.relocation and "relocation.csv" in reloc.outputs.files
    assert reloc.rain.antecedent_mm == 150 and reloc.changes.settlements[0].households == 40


# --------------------------------------------------------------------------- defaults


def test_a_minimal_scenario_takes_the_demo_and_the_routing_defaults(tmp_path):
    sc = load_scenario(write(tmp_path, HEAD))
    routing = RoutingSettings()
    assert sc.region.is_demo and sc.rain.kind == "demo" and sc.rain.scale == 1.0
    assert sc.changes.mode == routing.mode
    assert sc.options == Options(evacuation_level=routing.evacuation_level,
                                 planning_window_hours=routing.planning_window_hours,
                                 safety_margin_minutes=routing.safety_margin_minutes,
                                 max_travel_minutes=routing.max_travel_minutes)
    assert set(sc.outputs.files) == set(OUTPUT_FILES) - {"relocation.csv"}
    assert sc.routing_settings() == routing


def test_routing_settings_carry_the_scenario_options_over_a_base(tmp_path):
    sc = load_scenario(write(tmp_path, HEAD + '[changes]\nmode = "walk"\n'
                                              "[options]\nevacuation_level = 3\nmax_travel_minutes = 45\n"))
    base = RoutingSettings(stream_buffer_m=300.0)
    out = sc.routing_settings(base)
    assert (out.mode, out.evacuation_level, out.max_travel_minutes) == ("walk", 3, 45.0)
    assert out.stream_buffer_m == 300.0  # the base's other settings are kept


def test_reference_time_without_offset_is_utc(tmp_path):
    sc = load_scenario(write(tmp_path, HEAD + '[rain]\nkind = "synthetic"\n'
                                              "reference_time = 2024-09-08T00:00:00\n"
                                              "[rain.storm]\ntrack = [[0, 104.5, 22.2]]\n"))
    assert sc.rain.reference_time == dt.datetime(2024, 9, 8, tzinfo=dt.UTC)
    sc = load_scenario(write(tmp_path, HEAD + '[rain]\nkind = "synthetic"\n'
                                              "reference_time = 2024-09-08T07:00:00+07:00\n"
                                              "[rain.storm]\ntrack = [[0, 104.5, 22.2]]\n"))
    assert sc.rain.reference_time == dt.datetime(2024, 9, 8, tzinfo=dt.UTC)


def test_storm_table_gives_the_forecasts_rooms_storm_parameters(tmp_path):
    p = demo_storm_params()
    track = ", ".join(f"[{h}, {lon}, {lat}]" for h, lon, lat in p.track)
    keys = "\n".join(f"{k} = {getattr(p, k)}" for k in (
        "radius_km", "peak_rate", "onset_hours", "peak_hours", "duration_hours", "background_rate",
        "shield_radius_km", "cells", "cell_spread_km", "cell_radius_km", "cell_rate", "orographic_factor",
        "track_spread_km", "intensity_spread"))
    sc = load_scenario(write(tmp_path, HEAD + f'[rain]\nkind = "synthetic"\n[rain.storm]\ntrack = [{track}]\n'
                                              + keys + "\n"))
    assert sc.rain.storm.params() == p


# --------------------------------------------------------------------------- error messages


def test_unknown_key_names_the_table_its_keys_and_a_guess(tmp_path):
    p = one_problem(write(tmp_path, HEAD + "[rain]\nsclae = 1.5\n"))
    assert p.field == "rain.sclae"
    assert p.message.startswith("unknown key 'sclae' (did you mean 'scale'?); the keys of [rain] are: ")
    assert "antecedent_mm" in p.message and "shift_km" in p.message
    assert p.file == str(tmp_path / "s.toml")


def test_unknown_table_is_named_with_the_top_level_keys(tmp_path):
    p = one_problem(write(tmp_path, HEAD + "[optoins]\nrelocation = true\n"))
    assert p.field == "optoins"
    assert "unknown key 'optoins' (did you mean 'options'?)" in p.message
    assert "the keys of the top level are: changes, options, outputs, rain, region, scenario" in p.message


def test_unknown_key_inside_an_array_of_tables_names_the_entry(tmp_path):
    p = one_problem(write(tmp_path, HEAD + '[[changes.shelters]]\naction = "close"\nshelter_id = "A"\n'
                                           '[[changes.shelters]]\naction = "close"\nshelter_id = "B"\n'
                                           "capasity = 3\n"))
    assert p.where == "entry 2 of [[changes.shelters]]"
    assert p.field == "changes.shelters.capasity"
    assert "(did you mean 'capacity'?)" in p.message


def test_wrong_type_says_what_is_expected_and_what_was_given(tmp_path):
    p = one_problem(write(tmp_path, HEAD + '[rain]\nscale = "big"\n'))
    assert (p.field, p.message) == ("rain.scale", "must be a number > 0 and ≤ 10, got 'big'")
    p = one_problem(write(tmp_path, HEAD + "[options]\nevacuation_level = 7\n"))
    assert (p.field, p.message) == ("options.evacuation_level", "must be a whole number from 1 to 5, got 7")
    p = one_problem(write(tmp_path, HEAD + '[changes]\nmode = "bicycle"\n'))
    assert p.message == "must be one of 'walk', 'motorbike', 'car', got 'bicycle'"
    p = one_problem(write(tmp_path, HEAD + '[outputs]\nfiles = ["plan.csv", "plan.pdf"]\n'))
    assert (p.field, p.where) == ("outputs.files", "item 2")
    assert p.message.startswith("must be one of 'risk.nc'") and p.message.endswith("got 'plan.pdf'")
    p = one_problem(write(tmp_path, HEAD + "[rain]\nshift_km = 10\n"))
    assert p.message == "must be [east, north] in km, e.g. [10.0, -5.0], got 10"


def test_missing_key_and_missing_table(tmp_path):
    p = one_problem(write(tmp_path, "[rain]\nscale = 1.2\n"))
    assert (p.field, p.message) == ("scenario", "missing table [scenario]; add it")
    p = one_problem(write(tmp_path, HEAD + '[[changes.settlements]]\nname = "x"\nhouseholds = 3\n'))
    assert p.field == "changes.settlements.polygon" and p.where == "entry 1 of [[changes.settlements]]"
    assert p.message == ("missing key 'polygon' in [changes.settlements]; give a list of at least 3 "
                         "[lon, lat] points")


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, '[scenario]\nname = ""\n[rain]\nscale = -1\nsclae = 2\n'
                           "[options]\nrelocation = 3.5\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = info.value
    assert isinstance(err, ValidationError) and isinstance(err, EwarnError)
    assert sorted(p.field for p in err.problems) == ["options.relocation", "rain.scale", "rain.sclae",
                                                     "scenario.name"]
    text = str(err)
    assert text.splitlines()[0] == f"{path}: the scenario is not valid (4 problem(s)); fix the keys below"
    assert f"{path}, field 'rain.scale': must be a number > 0 and ≤ 10, got -1" in text


def test_toml_syntax_error_names_line_and_column(tmp_path):
    p = one_problem(write(tmp_path, HEAD + "[rain]\nscale = 1.5 1\n"))
    assert p.where == "line 4, column 13"
    assert p.message.startswith("not valid TOML: ") and "fix the syntax" in p.message


def test_missing_scenario_file(tmp_path):
    p = one_problem(tmp_path / "nope.toml")
    assert p.message.startswith(f"file not found (looked for {tmp_path / 'nope.toml'})")


# --------------------------------------------------------------------------- paths


def test_missing_forecast_file_is_named_relative_to_the_scenario(tmp_path):
    p = one_problem(write(tmp_path, HEAD + '[rain]\nkind = "file"\nfile = "storm.nc"\n'))
    assert p.field == "rain.file"
    assert p.message == (f"file not found: 'storm.nc' (looked for {tmp_path / 'storm.nc'}), relative to the "
                         f"scenario's folder {tmp_path}; put the file there or fix the path")


def test_a_path_leaving_the_scenarios_folder_is_refused_even_when_the_file_exists(tmp_path):
    folder = tmp_path / "plans"
    folder.mkdir()
    (tmp_path / "storm.nc").write_bytes(b"x")
    p = one_problem(write(folder, HEAD + '[rain]\nkind = "file"\nfile = "../storm.nc"\n'))
    assert p.field == "rain.file"
    assert p.message == (f"path '../storm.nc' leaves the scenario's folder {folder}; put the file beside the "
                         "scenario (or in a sub-folder of it) and name it relative to the scenario")
    absolute = str(tmp_path / "storm.nc")
    p = one_problem(write(folder, HEAD + f'[rain]\nkind = "file"\nfile = "{absolute}"\n'))
    assert "leaves the scenario's folder" in p.message
    p = one_problem(write(folder, HEAD + '[region]\npath = "../elsewhere"\n'))
    assert p.field == "region.path" and "leaves the scenario's folder" in p.message


def test_a_symlink_out_of_the_folder_is_an_escape(tmp_path):
    folder = tmp_path / "plans"
    folder.mkdir()
    (tmp_path / "storm.nc").write_bytes(b"x")
    (folder / "link.nc").symlink_to(tmp_path / "storm.nc")
    p = one_problem(write(folder, HEAD + '[rain]\nkind = "file"\nfile = "link.nc"\n'))
    assert "leaves the scenario's folder" in p.message


def test_paths_in_sub_folders_resolve_to_absolute_paths(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "storm.nc").write_bytes(b"x")
    (tmp_path / "data" / "obs.nc").write_bytes(b"x")
    (tmp_path / "region").mkdir()
    (tmp_path / "region" / "region.toml").write_text('name = "r"\n', encoding="utf-8")
    sc = load_scenario(write(tmp_path, HEAD + '[region]\npath = "region"\n[rain]\nkind = "file"\n'
                                              'file = "data/storm.nc"\nantecedent_file = "./data/obs.nc"\n'))
    assert sc.rain.file == tmp_path / "data" / "storm.nc"
    assert sc.rain.antecedent_file == tmp_path / "data" / "obs.nc"
    assert sc.region.folder == tmp_path / "region" and not sc.region.is_demo


def test_a_region_folder_must_hold_region_toml(tmp_path):
    (tmp_path / "region").mkdir()
    p = one_problem(write(tmp_path, HEAD + '[region]\npath = "region"\n'))
    assert p.message.startswith("not a region folder (no region.toml): 'region'")


# --------------------------------------------------------------------------- coordinates and consistency


def test_polygon_points_are_checked_and_the_ring_closed(tmp_path):
    p = one_problem(write(tmp_path, HEAD + "[[changes.close_polygons]]\n"
                                           "coordinates = [[22.2, 104.5], [22.3, 104.5], [22.3, 104.6]]\n"))
    assert p.field == "changes.close_polygons.coordinates"
    assert p.message.startswith("point [22.2, 104.5] is not [lon, lat] in degrees")
    p = one_problem(write(tmp_path, HEAD + "[[changes.close_polygons]]\n"
                                           "coordinates = [[104.5, 22.2], [104.6, 22.2], [104.5, 22.2]]\n"))
    assert p.message == "a polygon needs at least 3 distinct [lon, lat] points, got 2"
    p = one_problem(write(tmp_path, HEAD + "[[changes.settlements]]\nname = 'x'\nhouseholds = 3\n"
                                           "polygon = [[104.5, 22.2], [104.6, 22.3], [104.6, 22.2], "
                                           "[104.5, 22.3]]\n"))
    assert p.message.startswith("the polygon is not valid (Self-intersection")
    p = one_problem(write(tmp_path, HEAD + "[[changes.close_polygons]]\n"
                                           "coordinates = [[104.5, 22.2], [104.6]]\n"))
    assert (p.where, p.message) == ("entry 1 of [[changes.close_polygons]], point 2",
                                    "must be [lon, lat] with two numbers, got [104.6]")
    sc = load_scenario(write(tmp_path, HEAD + "[[changes.close_polygons]]\ncoordinates = "
                                              "[[104.5, 22.2], [104.6, 22.2], [104.6, 22.3]]\n"))
    ring = sc.changes.close_polygons[0].coordinates
    assert len(ring) == 4 and ring[0] == ring[-1]
    assert sc.changes.close_polygons[0].polygon.is_valid


def test_shelter_changes_need_the_keys_of_their_action(tmp_path):
    p = one_problem(write(tmp_path, HEAD + '[[changes.shelters]]\naction = "open"\nshelter_id = "N1"\n'
                                           'name = "Trường"\nlat = 22.2\ncapacity = 100\n'))
    assert (p.where, p.message) == ("entry 1 of [[changes.shelters]]", "action = 'open' needs 'lon'")
    p = one_problem(write(tmp_path, HEAD + '[[changes.shelters]]\naction = "close"\nshelter_id = "A"\n'
                                           "capacity = 100\n"))
    assert p.message == "action = 'close' does not use 'capacity'; remove them"
    p = one_problem(write(tmp_path, HEAD + '[[changes.shelters]]\naction = "close"\nshelter_id = "A"\n'
                                           '[[changes.shelters]]\naction = "resize"\nshelter_id = "A"\n'
                                           "capacity = 5\n"))
    assert p.field == "changes" and "'A' are changed more than once" in p.message


def test_rain_keys_must_fit_the_kind(tmp_path):
    p = one_problem(write(tmp_path, HEAD + '[rain]\nkind = "synthetic"\n'))
    assert (p.field, p.message) == ("rain", "kind = 'synthetic' needs a [rain.storm] table with at least "
                                            "track = [[hours, lon, lat], ...]")
    p = one_problem(write(tmp_path, HEAD + '[rain]\nsteps = 48\n'))
    assert p.message == "steps only apply to kind = 'synthetic' (kind is 'demo'); remove them"
    p = one_problem(write(tmp_path, HEAD + '[rain]\nkind = "synthetic"\n[rain.storm]\n'
                                           "track = [[10, 104.5, 22.2], [5, 104.6, 22.3]]\n"))
    assert (p.field, p.message) == ("rain.storm.track", "waypoints must be in increasing time order "
                                                        "(the first number of each [hours, lon, lat])")
    p = one_problem(write(tmp_path, HEAD + '[rain]\nkind = "synthetic"\n[rain.storm]\n'
                                           "track = [[0, 104.5, 22.2]]\nonset_hours = 30\npeak_hours = 10\n"))
    assert p.field == "rain.storm" and p.message.startswith("peak_hours (10.0) must lie between onset_hours")


def test_parse_scenario_resolves_beside_the_given_file(tmp_path):
    (tmp_path / "storm.nc").write_bytes(b"x")
    sc = parse_scenario(HEAD + '[rain]\nkind = "file"\nfile = "storm.nc"\n', tmp_path / "virtual.toml")
    assert isinstance(sc, Scenario) and sc.rain.file == tmp_path / "storm.nc"
    assert sc.folder == tmp_path
