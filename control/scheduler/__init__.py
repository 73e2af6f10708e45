"""kube-scheduler for kemu: filter, score and bind unscheduled Pods (issue 3).

Pure logic lives in ``cache`` (NodeInfo bookkeeping), ``podinfo`` (what the
scheduler reads from a Pod), ``filters``, ``scoring``, ``framework``
(``schedule_one`` and the FitError message) and ``queue`` (activeQ, backoffQ,
unschedulable pods). ``scheduler`` is the component: informers, the queue,
batched binding, Events and PodScheduled conditions.
"""
