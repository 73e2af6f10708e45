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
