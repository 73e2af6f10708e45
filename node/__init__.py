"""Worker nodes: kubelet, runtimes, kube-proxy and volumes (issue 3 on).

Layering contract: ``node`` imports ``emulator`` only, never ``control`` or ``lab``.
"""
