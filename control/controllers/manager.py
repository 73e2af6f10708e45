"""The controller-manager: several control loops on one client, in one loop.

Contract
--------
* ``ControllerManager(client, profile, clock, controllers=("nodelifecycle",))``
  builds the named controllers from ``CONTROLLERS`` (adding a controller is one
  registry entry: a name and a constructor taking a ``ControllerContext``).
* Informers are shared (``SharedInformers``): one Informer per (kind,
  namespace), whichever controllers ask for it; handlers of every controller
  hang off the same cache. Controllers must not mutate cached objects.
* A controller has ``start()``, ``next_due() -> float`` (on ``clock``: when it
  next has timed work) and ``sync()`` (do whatever is due; called every turn,
  so it must be cheap when nothing is).
* ``start()`` lists and watches every informer (raises APIError when the
  apiserver is unreachable), then starts the controllers. ``step(timeout)``
  waits for watch events at most until the earliest ``next_due``, feeds them
  to the informers, then syncs every controller. A lost apiserver is logged,
  never raised: informers relist and controllers redo their work later.
* Times: ``clock`` (monotonic by default) drives timers; ``wall_clock`` (for
  timestamps written into objects) defaults to ``clock`` shifted to the epoch
  at construction, so one injected clock moves both.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.component import start_with_backoff
from emulator.client import Client
from emulator.informer import Informer
from emulator.logging import configure, get_logger
from emulator.process import StopFlag, settle_heap
from emulator.profiles import Profile, get_profile

Clock = Callable[[], float]


class SharedInformers:
    """One Informer per (kind, namespace), shared by every controller on a client."""

    def __init__(self, client: Client, clock: Clock = time.monotonic) -> None:
        self.client = client
        self.clock = clock
        self._informers: dict[tuple[str, str | None], Informer] = {}
        self._started: set[tuple[str, str | None]] = set()

    def informer(self, kind: str, namespace: str | None = None) -> Informer:
        key = (kind, namespace)
        inf = self._informers.get(key)
        if inf is None:
            inf = self._informers[key] = Informer(self.client, kind, namespace=namespace, clock=self.clock)
        return inf

    def start(self) -> None:
        for key, inf in self._informers.items():
            if key not in self._started:
                inf.start()
                self._started.add(key)

    def process(self) -> int:
        return sum(inf.process() for inf in self._informers.values())

    @property
    def has_synced(self) -> bool:
        return all(inf.has_synced for inf in self._informers.values())

    def stop(self) -> None:
        for inf in self._informers.values():
            inf.stop()


@dataclass
class ControllerContext:
    client: Client
    profile: Profile
    informers: SharedInformers
    clock: Clock
    wall_clock: Clock
    nodes_root: str | None = None    # <labdir>/nodes: where kemu.io/local-dir provisions (None: disabled)
    shared_root: str | None = None   # <labdir>/shared: where kemu.io/shared-dir provisions (None: disabled)


class Controller(Protocol):
    name: str

    def start(self) -> None: ...
    def next_due(self) -> float: ...
    def sync(self) -> None: ...


def _nodelifecycle(ctx: ControllerContext) -> Controller:
    from control.controllers.nodelifecycle import NodeLifecycleController
    return NodeLifecycleController(ctx)


# name -> constructor. Later: replicaset, deployment, endpoints, garbagecollector.
CONTROLLERS: dict[str, Callable[[ControllerContext], Controller]] = {
    "nodelifecycle": _nodelifecycle,
    "daemonset": lambda ctx: __import__("control.controllers.daemonset", fromlist=["_"]).DaemonSetController(ctx),
    "job": lambda ctx: __import__("control.controllers.job", fromlist=["_"]).JobController(ctx),
    "garbagecollector": lambda ctx: __import__("control.controllers.garbagecollector", fromlist=["_"]).GarbageCollector(ctx),
    "replicaset": lambda ctx: __import__("control.controllers.replicaset", fromlist=["_"]).ReplicaSetController(ctx),
    "deployment": lambda ctx: __import__("control.controllers.deployment", fromlist=["_"]).DeploymentController(ctx),
    "endpointslice": lambda ctx: __import__("control.controllers.endpointslice", fromlist=["_"]).EndpointSliceController(ctx),
    "persistentvolume-binder": lambda ctx: __import__("control.controllers.persistentvolume",
                                                      fromlist=["_"]).PersistentVolumeController(ctx),
    "persistentvolume-provisioner": lambda ctx: __import__("control.controllers.provisioner",
                                                           fromlist=["_"]).ProvisionerController(ctx),
    "pvc-protection": lambda ctx: __import__("control.controllers.volumeprotection",
                                             fromlist=["_"]).PVCProtectionController(ctx),
    "pv-protection": lambda ctx: __import__("control.controllers.volumeprotection",
                                            fromlist=["_"]).PVProtectionController(ctx),
    "statefulset": lambda ctx: __import__("control.controllers.statefulset", fromlist=["_"]).StatefulSetController(ctx),
    "disruption": lambda ctx: __import__("control.controllers.disruption", fromlist=["_"]).DisruptionController(ctx),
}


class ControllerManager:
    def __init__(self, client: Client, profile: Profile, clock: Clock = time.monotonic,
                 controllers: tuple[str, ...] | list[str] = ("nodelifecycle",),
                 wall_clock: Clock | None = None, nodes_root: str | None = None,
                 shared_root: str | None = None) -> None:
        unknown = [c for c in controllers if c not in CONTROLLERS]
        if unknown:
            raise ValueError(f"unknown controller(s) {', '.join(unknown)}; "
                             f"choose from: {', '.join(sorted(CONTROLLERS))}")
        self.client = client
        self.profile = profile
        self.clock = clock
        if wall_clock is None:
            offset = time.time() - clock()
            wall_clock = lambda: offset + clock()   # noqa: E731
        self.log = get_logger()
        self.informers = SharedInformers(client, clock)
        self.context = ControllerContext(client, profile, self.informers, clock, wall_clock,
                                         nodes_root=nodes_root, shared_root=shared_root)
        self.controllers: list[Controller] = [CONTROLLERS[name](self.context) for name in controllers]
        self.started = False

    def start(self) -> None:
        self.informers.start()
        for c in self.controllers:
            c.start()
        self.started = True
        self.log.info("controller_manager_started", controllers=[c.name for c in self.controllers])

    def step(self, timeout: float) -> None:
        now = self.clock()
        due = min((c.next_due() for c in self.controllers), default=now + timeout)
        try:
            self.client.poll(max(0.0, min(timeout, due - now)))
            self.informers.process()
        except (APIError, ConnectionError) as e:
            self.log.warning("apiserver_unavailable", error=str(e))
            return
        for c in self.controllers:
            try:
                c.sync()
            except (APIError, ConnectionError) as e:
                if isinstance(e, APIError) and e.code not in (errors.UNAVAILABLE, errors.TIMEOUT):
                    self.log.error("controller_sync_failed", controller=c.name, code=e.code, error=str(e))
                else:
                    self.log.warning("apiserver_unavailable", controller=c.name, error=str(e))


def run(server: str, profile_name: str = "default", log_path: str | None = None, lab: str | None = None,
        stop: Any = None, controllers: tuple[str, ...] = ("nodelifecycle",),
        nodes_root: str | None = None, shared_root: str | None = None) -> int:
    """The controller-manager process: configure logging, connect, loop until ``stop``."""
    configure("controller-manager", lab=lab, path=log_path)
    settle_heap()
    log = get_logger()
    stop = stop if stop is not None else StopFlag()
    profile = get_profile(profile_name)
    client = Client(server, component="controller-manager", lab=lab)
    try:
        from emulator.clock import WALL
        cm = ControllerManager(client, profile, controllers=controllers, nodes_root=nodes_root,
                               shared_root=shared_root, wall_clock=WALL)
        start_with_backoff(cm.start, stop, log)
        while not stop:
            cm.step(0.1)
        log.info("controller_manager_stopped")
    finally:
        client.close()
    return 0
