"""Container runtimes behind one interface (CRI's words): ``fake`` today,
``process`` and ``docker`` later. See ``interface.py`` for the contract."""
from node.runtime.interface import ContainerStatus, PodSandbox, Runtime
from node.runtime.fake import FakeRuntime

__all__ = ["ContainerStatus", "PodSandbox", "Runtime", "FakeRuntime"]
