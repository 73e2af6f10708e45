"""The kubelet: registers its Node, renews its Lease and runs its pods through a runtime.

``kubelet.py`` is the component (and the node process's ``run`` entry);
``heartbeat.py`` registers the Node and posts its Lease and status;
``housekeeping.py`` hooks in the volume manager (``node.volumes``) and runs
the eviction manager. The pure decisions live in ``sync`` (pod actions and
status), ``admission``, ``backoff``, ``eviction``, ``node_status``, ``lease``
and ``ipam``.
"""
