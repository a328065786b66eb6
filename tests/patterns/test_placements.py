"""The placements cache (patterns.placements): what Redis confirmed a moment ago is trusted for
a window, bounded, per namespace; a collision with a new placement is seen."""

from __future__ import annotations

from patterns.placements import TRUST_SECONDS_MAX, PlacementCache, collides, trust_seconds
from patterns.store import Allocation


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _items(*values: str) -> list[Allocation]:
    return [Allocation(value, "AWS_EC2", "ec2") for value in values]


def test_a_placement_is_trusted_for_its_window_then_asked_again() -> None:
    clock = Clock()
    cache = PlacementCache(100, trust_seconds=60, clock=clock)
    cache.remember("team-a", {"i-1": "AWS_EC2_001"})
    trusted, missing = cache.split("team-a", _items("i-1", "i-2"))
    assert trusted == {"i-1": "AWS_EC2_001"}
    assert [item.value for item in missing] == ["i-2"]
    clock.now += 61  # Redis must confirm it again, which refreshes its TTL there
    trusted, missing = cache.split("team-a", _items("i-1"))
    assert trusted == {} and [item.value for item in missing] == ["i-1"]


def test_namespaces_are_apart_and_one_can_be_forgotten() -> None:
    cache = PlacementCache(100, trust_seconds=60, clock=Clock())
    cache.remember("team-a", {"i-1": "AWS_EC2_001"})
    cache.remember("team-b", {"i-1": "AWS_EC2_007"})
    assert cache.split("team-b", _items("i-1"))[0] == {"i-1": "AWS_EC2_007"}
    cache.forget("team-a")
    assert cache.split("team-a", _items("i-1"))[0] == {}
    assert cache.split("team-b", _items("i-1"))[0] == {"i-1": "AWS_EC2_007"}


def test_the_cache_holds_at_most_its_bound_the_longest_confirmed_out() -> None:
    clock = Clock()
    cache = PlacementCache(3, trust_seconds=60, clock=clock)
    cache.remember("team-a", {"i-1": "AWS_EC2_001", "i-2": "AWS_EC2_002"})
    clock.now += 1
    cache.remember("team-b", {"i-3": "AWS_EC2_001"})
    cache.remember("team-a", {"i-1": "AWS_EC2_001"})  # confirmed again: the newest
    cache.remember("team-a", {"i-4": "AWS_EC2_004"})
    assert len(cache) == 3
    assert cache.split("team-a", _items("i-2"))[0] == {}
    assert cache.split("team-a", _items("i-1", "i-4"))[0] == {
        "i-1": "AWS_EC2_001",
        "i-4": "AWS_EC2_004",
    }
    cache.remember("team-a", {"i-5": "AWS_EC2_005", "i-6": "AWS_EC2_006"})
    assert cache.split("team-b", _items("i-3"))[0] == {}  # its namespace emptied, and gone
    assert len(cache) == 3
    cache.forget("team-a")
    assert len(cache) == 0


def test_a_cache_of_size_zero_is_off() -> None:
    cache = PlacementCache(0, trust_seconds=60, clock=Clock())
    cache.remember("team-a", {"i-1": "AWS_EC2_001"})
    assert not cache.enabled and len(cache) == 0


def test_a_new_placement_that_repeats_a_trusted_one_collides() -> None:
    assert collides({"i-1": "AWS_EC2_001"}, {"i-2": "AWS_EC2_001"})
    assert not collides({"i-1": "AWS_EC2_001"}, {"i-2": "AWS_EC2_002"})
    assert not collides({}, {"i-2": "AWS_EC2_001"})


def test_the_window_is_a_tenth_of_the_ttl_at_most_five_minutes() -> None:
    assert trust_seconds(600) == 60
    assert trust_seconds(604_800) == TRUST_SECONDS_MAX == 300
