"""Time profiles: fast is default / 20, and a big lab's bookmark interval stretches with its size."""
from __future__ import annotations

import pytest

from emulator.profiles import BOOKMARK_NODES, DEFAULT, FAST, get_profile


def test_fast_is_default_divided_by_twenty_with_its_stated_exceptions():
    assert FAST.node_lease_renew_interval == DEFAULT.node_lease_renew_interval / 20
    assert FAST.node_monitor_grace_period == DEFAULT.node_monitor_grace_period / 20
    assert FAST.watch_bookmark_interval == 0.25
    assert FAST.watch_bookmark_interval_max == DEFAULT.watch_bookmark_interval_max / 20 == 3.0


@pytest.mark.parametrize("nodes, fast, default", [
    (1, 0.25, 60.0), (BOOKMARK_NODES, 0.25, 60.0), (2 * BOOKMARK_NODES, 0.5, 60.0),
    (1000, 2.5, 60.0), (10_000, 3.0, 60.0)])
def test_the_bookmark_interval_stretches_with_the_labs_size_up_to_its_maximum(nodes, fast, default):
    assert FAST.bookmark_interval_for(nodes) == pytest.approx(fast)
    assert DEFAULT.bookmark_interval_for(nodes) == default


def test_an_unknown_profile_names_the_choices():
    with pytest.raises(ValueError, match='unknown profile "slow"; choose one of: default, fast'):
        get_profile("slow")


def test_fast_heartbeats_stretch_with_a_big_labs_size_and_default_never_does():
    small, big, huge = FAST.for_lab(250), FAST.for_lab(1000), FAST.for_lab(100_000)
    assert small.node_lease_renew_interval == FAST.node_lease_renew_interval
    assert big.node_lease_renew_interval == pytest.approx(4 * FAST.node_lease_renew_interval)   # 2 s
    assert big.node_monitor_grace_period == pytest.approx(4 * FAST.node_monitor_grace_period)   # 8 s
    assert big.node_lease_duration == big.node_monitor_grace_period
    assert big.default_toleration_seconds == FAST.default_toleration_seconds    # evictions do not stretch
    assert big.node_monitor_period == FAST.node_monitor_period    # nor how often silence is looked for
    assert big.watch_bookmark_interval == pytest.approx(2.5)
    assert huge.node_monitor_grace_period == pytest.approx(DEFAULT.node_monitor_grace_period)   # capped
    assert DEFAULT.for_lab(10_000).node_lease_renew_interval == DEFAULT.node_lease_renew_interval


def test_a_lab_passes_its_processes_the_profile_at_its_size():
    from lab.config import LabConfig
    cfg = LabConfig(nodes=1000, profile="fast")
    assert cfg.process_profile == "fast@1000"
    assert get_profile(cfg.process_profile) == FAST.for_lab(1000)
    assert get_profile("fast@3") == FAST.for_lab(3)


@pytest.mark.parametrize("name", ["fast@", "fast@x", "fast@0", "fast@-3"])
def test_a_bad_node_count_in_a_profile_name_is_explained(name):
    with pytest.raises(ValueError, match="after \"@\" comes the lab's node count"):
        get_profile(name)
