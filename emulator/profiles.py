"""Time profiles: every timer in kemu comes from one of these; none is hard-coded.

Contract: ``default`` uses Kubernetes' own timings. ``fast`` divides every
duration by 20 (with small floors), so tests and chaos experiments see the
same sequence of events in seconds instead of minutes. Components receive a
``Profile`` and read timers from it; they never invent their own. A lab's
processes get ``NAME@NODES`` (``get_profile``): the profile as a lab of that
size runs it (``Profile.for_lab``: bookmarks, and ``fast``'s heartbeats, stretch
with the lab's size).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Profile:
    name: str
    # kubelet
    node_lease_duration: float = 40.0        # Lease.spec.leaseDurationSeconds
    node_lease_renew_interval: float = 10.0  # 25% of the lease duration, as the kubelet does
    node_status_update_frequency: float = 10.0   # how often the kubelet computes NodeStatus
    node_status_report_frequency: float = 300.0  # post NodeStatus at least this often if unchanged
    kubelet_sync_frequency: float = 60.0     # periodic resync of every pod
    crashloop_backoff_initial: float = 10.0
    crashloop_backoff_max: float = 300.0
    crashloop_backoff_reset: float = 600.0   # a container that ran this long starts back-off afresh
    proxy_min_sync_period: float = 1.0       # kube-proxy's --iptables-min-sync-period
    housekeeping_interval: float = 10.0      # the kubelet's housekeeping: eviction manager, disk usage
    eviction_hard_nodefs_available: str = "10%"   # --eviction-hard nodefs.available (a string: not scaled)
    eviction_hard_memory_available: str = "100Mi"  # --eviction-hard memory.available (a string: not scaled)
    eviction_pressure_transition_period: float = 300.0   # a pressure condition stays this long
    volume_mount_backoff_initial: float = 0.5    # FailedMount retries back off from this ...
    volume_mount_backoff_max: float = 122.0      # ... up to this (Kubernetes' 2m2s)
    # controller-manager
    node_monitor_period: float = 5.0
    node_monitor_grace_period: float = 40.0
    default_toleration_seconds: int = 300    # DefaultTolerationSeconds admission, not-ready/unreachable
    # scheduler
    pod_initial_backoff: float = 1.0
    pod_max_backoff: float = 10.0
    unschedulable_flush_interval: float = 300.0
    volume_bind_timeout: float = 600.0       # --bind-timeout-seconds: a pod waits this long for its claims
    # fake runtime
    job_completion_delay: float = 1.0
    # apiserver
    watch_bookmark_interval: float = 60.0    # the kube-apiserver cacher's bookmarkFrequency (1 min)
    watch_bookmark_interval_max: float = 60.0   # what a big lab's bookmark interval stretches to
    event_ttl: float = 3600.0                # kube-apiserver --event-ttl: an Event lives 1h after its last update
    # observability (strings are not scaled by ``fast``)
    metrics_interval: str = "15s"            # how often the lab collects every process's metrics (Prometheus' usual)
    log_max_file_size: str = "64Mi"          # a process's log file rotates at this size
    log_max_lab_size: str = "1Gi"            # a lab's logs, rotated files included, are capped at this
    # jitter applied to periodic timers, as a fraction (client-go's wait.Jitter)
    jitter: float = 0.1
    heartbeat_stretch_nodes: int = 0         # above this many nodes heartbeats stretch (0: never)

    def bookmark_interval_for(self, nodes: int) -> float:
        """The bookmark interval of a lab of ``nodes`` nodes: ``watch_bookmark_interval``
        stretched in proportion above ``BOOKMARK_NODES`` nodes, as dask stretches its
        heartbeats with the cluster's size, up to ``watch_bookmark_interval_max``
        (Kubernetes' own minute, scaled by the profile). ``default`` is at its maximum
        already; a 1,000-node ``fast`` lab gets 2.5 s instead of 0.25 s (the bookmarks
        were 12 of a fast node's 25 wake-ups a second)."""
        stretched = self.watch_bookmark_interval * max(1.0, nodes / BOOKMARK_NODES)
        return max(self.watch_bookmark_interval, min(self.watch_bookmark_interval_max, stretched))

    def for_lab(self, nodes: int) -> "Profile":
        """The profile as a lab of ``nodes`` nodes runs it: the bookmark interval of
        ``bookmark_interval_for``; and, above ``heartbeat_stretch_nodes`` nodes, the
        node heartbeat timers (``HEARTBEAT_TIMERS``: Lease duration and renewal, status,
        housekeeping, and the node lifecycle controller's grace; not its period, which
        bounds how late past the grace a silent node is seen) stretched in
        proportion to the size, as dask stretches its workers' heartbeats, at most
        ``MAX_STRETCH`` times. ``default`` keeps Kubernetes' timings at any size, as
        Kubernetes does; ``fast`` stretches above 250 nodes (x4 at 1,000: renewal 2 s,
        grace 8 s), where 1,000 nodes renewing every 0.5 s took the whole machine.
        Evictions (``default_toleration_seconds``) do not stretch."""
        p = replace(self, watch_bookmark_interval=self.bookmark_interval_for(nodes))
        if not self.heartbeat_stretch_nodes or nodes <= self.heartbeat_stretch_nodes:
            return p
        f = min(MAX_STRETCH, nodes / self.heartbeat_stretch_nodes)
        return replace(p, **{k: getattr(self, k) * f for k in HEARTBEAT_TIMERS})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


HEARTBEAT_TIMERS = ("node_lease_duration", "node_lease_renew_interval", "node_status_update_frequency",
                    "housekeeping_interval", "node_monitor_grace_period")
MAX_STRETCH = 20.0     # fast's heartbeats never stretch beyond default's
BOOKMARK_NODES = 100   # labs up to this size get the profile's bookmark interval as it is
DEFAULT = Profile("default")


def _scaled(p: Profile, name: str, factor: float) -> Profile:
    changes: dict[str, Any] = {"name": name}
    for k, v in asdict(p).items():
        if k in ("name", "jitter", "heartbeat_stretch_nodes"):
            continue
        if isinstance(v, int) and not isinstance(v, bool):
            changes[k] = max(1, int(round(v / factor)))
        elif isinstance(v, float):
            changes[k] = max(0.05, v / factor)
    return replace(p, **changes)


# ``fast`` keeps a bookmark every 0.25 s rather than 60 / 20 = 3 s: its tests and chaos
# scenarios lean on a quiet watch learning of a lost event (a bookmark's seq) at once.
# Labs of more than ``BOOKMARK_NODES`` nodes stretch it towards 3 s (bookmark_interval_for).
# It also collects metrics every 5 s: its runs last seconds, not hours.
# Labs of more than 250 nodes stretch its heartbeats (for_lab).
FAST = replace(_scaled(DEFAULT, "fast", 20.0), watch_bookmark_interval=0.25, metrics_interval="5s",
               heartbeat_stretch_nodes=250)

PROFILES = {"default": DEFAULT, "fast": FAST}


def get_profile(name: str) -> Profile:
    """``NAME``, or ``NAME@N``: the profile as a lab of N nodes runs it (``for_lab``;
    a lab passes its processes ``LabConfig.process_profile``)."""
    base, at, nodes = name.partition("@")
    try:
        p = PROFILES[base]
    except KeyError:
        raise ValueError(f'unknown profile "{base}"; choose one of: {", ".join(sorted(PROFILES))}') from None
    if not at:
        return p
    if not nodes.isdigit() or int(nodes) < 1:
        raise ValueError(f'profile "{name}": after "@" comes the lab\'s node count, a whole number '
                         f'of at least 1 (e.g. "{base}@1000")')
    return p.for_lab(int(nodes))
