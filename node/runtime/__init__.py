"""Container runtimes behind one interface (CRI's words): ``fake``, ``process`` and
``docker``. See ``interface.py`` for the contract.

``make_runtime(name, *, profile, root_dir, node_name, lab, clock, state_path, **extra)``
builds one by name (the kubelet's ``--runtime``); an unknown name raises ValueError
naming the supported ones. Real runtimes are imported only when asked for.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from node.runtime.fake import FakeRuntime
from node.runtime.interface import ContainerStatus, PodSandbox, Runtime

RUNTIMES = ("fake", "process", "docker")


def make_runtime(name: str, *, profile: Any, root_dir: str, node_name: str = "", lab: str | None = None,
                 clock: Callable[[], float] = time.monotonic, state_path: str | None = None,
                 anchor_pid: int | None = None, **extra: Any) -> Runtime:
    """``anchor_pid``: the process whose death kills a real runtime's containers (the lab's
    supervisor; default the calling process)."""
    if name == "fake":
        return FakeRuntime(profile, clock=clock, state_path=state_path, buffered=True)   # the kubelet flushes
    if name == "process":
        from node.runtime.process import ProcessRuntime
        return ProcessRuntime(profile, root_dir=root_dir, node_name=node_name, lab=lab, clock=clock,
                              state_path=state_path, anchor_pid=anchor_pid, **extra)
    if name == "docker":
        from node.runtime.docker import make_docker_runtime
        return make_docker_runtime(profile=profile, root_dir=root_dir, node_name=node_name, lab=lab,
                                   clock=clock, state_path=state_path, **extra)
    raise ValueError(f'unsupported runtime "{name}"; supported: {", ".join(RUNTIMES)}')


__all__ = ["ContainerStatus", "PodSandbox", "Runtime", "FakeRuntime", "RUNTIMES", "make_runtime"]
