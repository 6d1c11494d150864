"""Departure schedule (simplified CCRP), clearance times, assisted evacuation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ewarn.hazard_models.tables import TableError
from ewarn.routing.schedule import (
    CAPACITY_TABLE,
    AssistedParameters,
    ScheduleError,
    assisted_pickups,
    clearance_times,
    edge_capacity,
    household_departures,
    road_capacity,
    schedule_groups,
)

# Tiny graph: A -e0-> C, B -e1-> C, C -e2-> S (shelter). e0, e1 wide and 60 s long;
# e2 narrow (2 people/min) and 120 s long. Buckets of 60 s.
EDGE_TIME = np.array([60.0, 60.0, 120.0])
CAPACITY = np.array([100.0, 100.0, 2.0])
OFFSETS = np.array([0, 2, 4])
ROUTES = np.array([0, 2, 1, 2])


def test_second_group_waits_for_the_narrow_edge():
    # Group 0 (10 people from A, deadline 600 s) is more urgent than group 1 (6 people from B,
    # deadline 1200 s). Both reach the narrow edge e2 one bucket after leaving.
    res = schedule_groups(OFFSETS, ROUTES, np.array([10.0, 6.0]), np.array([600.0, 1200.0]),
                          EDGE_TIME, CAPACITY)
    g = res.groups
    # group 0: 2 people per minute leave in buckets 0..4 -> e2 busy in buckets 1..5;
    # last leaves at 240 s, arrives 240 + 180 = 420 s.
    assert g.loc[0, "first_departure_s"] == 0.0
    assert g.loc[0, "last_departure_s"] == 240.0
    assert g.loc[0, "arrival_s"] == 420.0
    # group 1 could enter e2 at bucket 1 but it is full until bucket 5: leaves in buckets 5..7.
    assert g.loc[1, "first_departure_s"] == 300.0
    assert g.loc[1, "last_departure_s"] == 420.0
    assert g.loc[1, "arrival_s"] == 600.0
    assert g["travel_time_s"].tolist() == [180.0, 180.0]
    assert not g["late"].any()
    assert g["order"].tolist() == [0, 1]
    np.testing.assert_allclose(res.flow[0], [2, 2, 2, 2, 2])
    np.testing.assert_allclose(res.flow[1], [0, 0, 0, 0, 0, 2, 2, 2])


def test_the_most_urgent_group_is_served_first_whatever_the_input_order():
    res = schedule_groups(OFFSETS, ROUTES, np.array([10.0, 6.0]), np.array([1200.0, 600.0]),
                          EDGE_TIME, CAPACITY)
    g = res.groups
    assert g["order"].tolist() == [1, 0]
    # group 1 now leaves in buckets 0..2 (e2 busy 1..3); group 0 enters e2 from bucket 4: leaves 3..7.
    assert g.loc[1, "arrival_s"] == 120.0 + 180.0
    assert g.loc[0, "first_departure_s"] == 180.0
    assert g.loc[0, "arrival_s"] == 420.0 + 180.0


def test_a_group_that_cannot_make_its_deadline_is_scheduled_and_flagged_late():
    res = schedule_groups(OFFSETS, ROUTES, np.array([10.0, 6.0]), np.array([400.0, 1200.0]),
                          EDGE_TIME, CAPACITY)
    g = res.groups
    assert g.loc[0, "arrival_s"] == 420.0  # as early as capacity allows
    assert bool(g.loc[0, "late"]) and not bool(g.loc[1, "late"])


def test_release_time_and_access_time_and_empty_route():
    offsets = np.array([0, 2, 2])  # group 1 is at the shelter's node
    res = schedule_groups(offsets, np.array([0, 2]), np.array([4.0, 3.0]), np.array([np.inf, 50.0]),
                          EDGE_TIME, CAPACITY, access_time_s=np.array([30.0, 20.0]), release_s=120.0)
    g = res.groups
    assert g.loc[0, "first_departure_s"] == 120.0
    assert g.loc[0, "last_departure_s"] == 180.0  # 2 per bucket, buckets 2 and 3
    assert g.loc[0, "travel_time_s"] == 210.0
    assert g.loc[0, "arrival_s"] == 390.0 and not g.loc[0, "late"]  # no onset: never late
    assert g.loc[1, "first_departure_s"] == 120.0 and g.loc[1, "arrival_s"] == 140.0
    assert bool(g.loc[1, "late"])  # deadline 50 s is before the release


def test_the_horizon_grows_when_capacity_is_scarce():
    res = schedule_groups(np.array([0, 2]), np.array([0, 2]), np.array([5000.0]), np.array([60.0]),
                          EDGE_TIME, CAPACITY)
    # 5000 people at 2 per minute: 2500 buckets
    assert res.groups.loc[0, "last_departure_s"] == 2499 * 60.0
    assert res.flow[0].sum() == pytest.approx(5000.0)


def test_reservations_never_exceed_any_edge_capacity():
    rng = np.random.default_rng(7)
    m = 12
    edge_time = rng.uniform(20, 400, m)
    cap = rng.uniform(0.5, 6.0, m)
    routes = [rng.choice(m, size=rng.integers(1, 6), replace=False) for _ in range(40)]
    offsets = np.r_[0, np.cumsum([len(r) for r in routes])]
    edges = np.concatenate(routes)
    people = rng.integers(1, 60, len(routes)).astype(float)
    res = schedule_groups(offsets, edges, people, rng.uniform(600, 7200, len(routes)), edge_time, cap)
    used = np.zeros((m, 100_000))
    for i, r in enumerate(routes):
        entry = np.floor(np.r_[0, np.cumsum(edge_time[r])[:-1]] / 60.0).astype(int)
        f = res.flow[i]
        for e, o in zip(r, entry, strict=True):
            used[e, o:o + len(f)] += f
    assert np.all(used <= cap[:, None] + 1e-9)
    np.testing.assert_allclose([f.sum() for f in res.flow], people)


def test_households_leave_in_waves_without_being_split():
    res = schedule_groups(OFFSETS, ROUTES, np.array([10.0, 6.0]), np.array([600.0, 1200.0]),
                          EDGE_TIME, CAPACITY)
    # group 0: households of 3 and 7 people; group 1: three of 2; one household not scheduled
    group = np.array([1, 0, 1, 0, -1, 1])
    people = np.array([2, 3, 2, 7, 4, 2])
    hh = household_departures(res, group, people)
    # group 0 sends 2/min: 3 people are out after bucket 1, 10 after bucket 4
    assert hh.loc[1, "departure_s"] == 60.0 and hh.loc[3, "departure_s"] == 240.0
    # group 1 sends 2/min from bucket 5
    assert hh.loc[[0, 2, 5], "departure_s"].tolist() == [300.0, 360.0, 420.0]
    assert hh.loc[[0, 2, 5], "arrival_s"].tolist() == [480.0, 540.0, 600.0]
    assert np.isnan(hh.loc[4, "departure_s"]) and not hh.loc[4, "late"]


def test_clearance_time_is_the_last_arrival_of_each_commune():
    out = clearance_times(["02998", "02998", "03001", "03004"], [600.0, 1500.0, 200.0, np.nan])
    assert out["02998"] == 1500.0 and out["03001"] == 200.0
    assert np.isnan(out["03004"])


def test_assisted_pickups_per_commune_centre():
    params = AssistedParameters(seats_per_vehicle=12, boarding_seconds_per_person=60)
    out = assisted_pickups(
        ["A", "A", "A", "B", "C", "D"], [1, 2, 0, 0, 30, 1],
        deadline_s=pd.Series({"A": 3600.0, "C": 500.0, "D": 3600.0}),
        centre_to_shelter_s=pd.Series({"A": 600.0, "C": 100.0}),
        params=params,
    ).set_index("commune_code")
    assert "B" not in out.index  # nobody needs help there
    a = out.loc["A"]
    assert (a["households"], a["people"], a["vehicles"]) == (2, 3, 1)
    # latest pickup = deadline 3600 - drive 600 - boarding 3 x 60
    assert a["pickup_by_s"] == 2820.0 and a["arrival_s"] == 3600.0 and not a["late"]
    c = out.loc["C"]
    assert c["vehicles"] == 3  # 30 people, 12 seats
    assert c["pickup_by_s"] == 0.0 and c["arrival_s"] == 0 + 12 * 60 + 100 and c["late"]
    d = out.loc["D"]
    assert not d["reachable"] and d["late"]
    assert out.index[0] in ("C", "D")  # sorted by pickup time


def test_edge_capacity_by_class_and_mode():
    hw = np.array(["trunk", "tertiary_link", "no-such-class", "steps", None], dtype=object)
    moto = edge_capacity(hw, "motorbike")
    # TCVN 4054:2005 1000 PCU/h/lane, motorbike 0.3 PCU, 2 people: 1000 / 0.3 * 2 / 60
    assert moto[0] == pytest.approx(1000 / 0.3 * 2 / 60)
    t = road_capacity()
    assert moto[1] == pytest.approx(t.vehicle_pcu_per_hour["tertiary"] / 0.3 * 2 / 60)
    assert moto[2] == moto[4] == pytest.approx(t.vehicle_pcu_per_hour["default"] / 0.3 * 2 / 60)
    walk = edge_capacity(hw, "walk")
    assert walk[3] == t.walk_people_per_minute["steps"]
    assert edge_capacity(hw, "car")[0] == pytest.approx(1000 * 4 / 60)
    with pytest.raises(ScheduleError, match="unknown travel mode"):
        edge_capacity(hw, "boat")


def test_an_out_of_range_table_value_is_refused_with_its_row_and_field(tmp_path):
    text = CAPACITY_TABLE.read_text(encoding="utf-8")
    bad = tmp_path / "road_capacity.toml"
    bad.write_text(text.replace('vehicle_pcu_per_hour = 1000.0\nwalk_people_per_minute = 150.0\n'
                                'source = "1 lane per direction', 'vehicle_pcu_per_hour = -5\n'
                                'walk_people_per_minute = 150.0\nsource = "1 lane per direction', 1),
                   encoding="utf-8")
    with pytest.raises(TableError) as exc:
        road_capacity(bad)
    assert "classes.trunk" in str(exc.value) and "vehicle_pcu_per_hour" in str(exc.value)


def test_inconsistent_inputs_are_refused():
    with pytest.raises(ScheduleError, match="route_offsets"):
        schedule_groups(np.array([0, 2]), ROUTES, np.array([1.0, 1.0]), np.array([1.0, 1.0]),
                        EDGE_TIME, CAPACITY)
    with pytest.raises(ScheduleError, match="people"):
        schedule_groups(OFFSETS, ROUTES, np.array([1.0, -1.0]), np.array([1.0, 1.0]),
                        EDGE_TIME, CAPACITY)
    with pytest.raises(ScheduleError, match="infinite travel time"):
        schedule_groups(OFFSETS, ROUTES, np.array([1.0, 1.0]), np.array([1.0, 1.0]),
                        np.array([60.0, np.inf, 120.0]), CAPACITY)
