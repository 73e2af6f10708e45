"""The kubelet's volumes: the node filesystem, volume plugins and the volume manager.

``paths`` resolves every path a manifest names inside the node's root (and
checks hostPath ``type``); ``atomic_writer`` writes configMap, secret,
downwardAPI and projected contents the way Kubernetes' AtomicWriter does;
``sources`` turns those volume sources into file payloads; ``plugins`` sets
up one volume of each kind; ``manager`` is the kubelet's volume manager (set
up before containers start, FailedMount with back-off, refresh, tear-down,
usage).
"""
