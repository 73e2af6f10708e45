"""The kubelet: registers its Node, renews its Lease and runs its pods through a runtime.

``kubelet.py`` is the component (and the node process's ``run`` entry);
``heartbeat.py`` registers the Node and posts its Lease and status. The pure
decisions live in ``sync`` (pod actions and status), ``admission``,
``backoff``, ``node_status``, ``lease`` and ``ipam``.
"""
