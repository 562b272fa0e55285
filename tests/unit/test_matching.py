"""find_host's pure core: criteria, ranking, and the "why nothing matched" counts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabstir_sidecar.core.errors import ConfigError, NoMatchingHostError
from fabstir_sidecar.discovery.matching import (
    CRITERIA,
    HostCriteria,
    match_hosts,
    rank_key,
    summarize,
)
from fabstir_sidecar.protocols.status import HostStatus
from fabstir_sidecar.wire.messages import Host


def cand(
    peer: str,
    *,
    latency: float = 10.0,
    models: tuple[str, ...] = ("m1",),
    reputation: int = 50,
    uptime: int = 100,
    location: str | None = "US",
    active: int = 0,
    max_jobs: int = 4,
) -> HostStatus:
    host = Host(
        peer_id=peer,
        addrs=(f"/ip4/127.0.0.1/tcp/1/p2p/{peer}",),
        models=models,
        reputation=reputation,
        uptime_s=uptime,
        location=location,
        active_jobs=active,
        max_jobs=max_jobs,
        version="t",
    )
    return HostStatus(host=host, latency_ms=latency)


def peers(report_ranked: list[HostStatus]) -> list[str]:
    return [c.host.peer_id for c in report_ranked]


def test_no_criteria_matches_all_ranked_by_latency() -> None:
    report = match_hosts(HostCriteria(), [cand("b", latency=5), cand("a", latency=1)])
    assert peers(report.ranked) == ["a", "b"]
    assert report.answered == 2
    assert sum(report.excluded.values()) == 0


def test_each_criterion_excludes_and_is_counted() -> None:
    candidates = [
        cand("ok", models=("m1", "m2")),
        cand("model", models=("m1",)),
        cand("rep", models=("m1", "m2"), reputation=10),
        cand("lat", models=("m1", "m2"), latency=500),
        cand("up", models=("m1", "m2"), uptime=1),
        cand("loc", models=("m1", "m2"), location="DE"),
    ]
    crit = HostCriteria(
        required_models=("m1", "m2"),
        min_reputation=20,
        max_latency=100,
        min_uptime=50,
        location="us",
    )
    report = match_hosts(crit, candidates)
    assert peers(report.ranked) == ["ok"]
    assert report.excluded == {
        "required_models": 1,
        "min_reputation": 1,
        "max_latency": 1,
        "min_uptime": 1,
        "location": 1,
    }


def test_location_is_case_insensitive_and_missing_location_fails() -> None:
    report = match_hosts(
        HostCriteria(location="de"), [cand("a", location="DE"), cand("b", location=None)]
    )
    assert peers(report.ranked) == ["a"]
    assert report.excluded["location"] == 1


def test_ties_broken_by_reputation_then_capacity_then_peer_id() -> None:
    report = match_hosts(
        HostCriteria(),
        [
            cand("d", latency=1, reputation=50, active=3),
            cand("c", latency=1, reputation=50, active=0),
            cand("b", latency=1, reputation=90),
            cand("a", latency=1, reputation=50, active=0),
        ],
    )
    assert peers(report.ranked) == ["b", "a", "c", "d"]


def test_duplicate_answers_keep_the_fastest() -> None:
    report = match_hosts(HostCriteria(max_latency=5), [cand("a", latency=9), cand("a", latency=2)])
    assert peers(report.ranked) == ["a"]
    assert report.ranked[0].latency_ms == 2
    assert report.answered == 1


def test_boundaries_are_inclusive() -> None:
    crit = HostCriteria(min_reputation=50, max_latency=10, min_uptime=100)
    assert peers(match_hosts(crit, [cand("a")]).ranked) == ["a"]


@pytest.mark.parametrize("field", ["min_reputation", "max_latency", "min_uptime"])
def test_negative_criteria_are_config_errors(field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        HostCriteria(**{field: -1})


def test_no_match_error_message_counts_each_criterion() -> None:
    err = NoMatchingHostError(7, 5, {"required_models": 3, "min_reputation": 2, "location": 0})
    text = str(err)
    assert "7 candidates seen" in text and "5 answered" in text
    assert "required_models excluded 3" in text and "min_reputation excluded 2" in text
    assert "location" not in text


def test_summarize_shape() -> None:
    (row,) = summarize([cand("a", latency=1.23456)])
    assert row["peer_id"] == "a" and row["latency_ms"] == 1.235
    assert set(row) >= {
        "peer_id",
        "addrs",
        "models",
        "reputation",
        "uptime_s",
        "location",
        "latency_ms",
    }


candidates_st = st.lists(
    st.builds(
        cand,
        st.text(alphabet="abcdef", min_size=1, max_size=3),
        latency=st.floats(0, 1000),
        models=st.sets(st.sampled_from(["m1", "m2", "m3"])).map(tuple),
        reputation=st.integers(0, 100),
        uptime=st.integers(0, 1000),
        location=st.sampled_from([None, "US", "DE"]),
        active=st.integers(0, 4),
    ),
    max_size=20,
)
criteria_st = st.builds(
    HostCriteria,
    min_reputation=st.none() | st.integers(0, 100),
    max_latency=st.none() | st.floats(0, 1000),
    required_models=st.sets(st.sampled_from(["m1", "m2", "m3"]), max_size=2).map(tuple),
    min_uptime=st.none() | st.integers(0, 1000),
    location=st.none() | st.sampled_from(["us", "DE"]),
)


@given(criteria_st, candidates_st)
def test_report_is_consistent(criteria: HostCriteria, candidates: list[HostStatus]) -> None:
    report = match_hosts(criteria, candidates)
    assert len(report.ranked) + sum(report.excluded.values()) == report.answered
    assert report.answered == len({c.host.peer_id for c in candidates})
    assert all(criteria.failed(c) is None for c in report.ranked)
    keys = [rank_key(c) for c in report.ranked]
    assert keys == sorted(keys)
    assert set(report.excluded) == set(CRITERIA)
