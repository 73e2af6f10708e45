"""kube-scheduler for kemu: filter, score and bind unscheduled Pods (issue 3).

Pure logic lives in ``cache`` (NodeInfo bookkeeping), ``podinfo`` (what the
scheduler reads from a Pod), ``filters``, ``scoring``, ``framework``
(``schedule_one`` and the FitError message), ``queue`` (activeQ, backoffQ,
unschedulable pods), ``volumecache`` (PVCs, PVs and StorageClasses, indexed,
with assumptions) and ``volumebinding`` (the VolumeRestrictions, VolumeBinding
and VolumeZone plugins). ``volumes`` is the volume side of the component
(storage informers' handlers, Reserve, waiting for the PV controller);
``scheduler`` is the component: informers, the queue, batched binding, Events
and PodScheduled conditions.
"""
