"""The node lifecycle controller, with taint-based eviction.

After Kubernetes' ``pkg/controller/nodelifecycle`` (``monitorNodeHealth``) and
``pkg/controller/tainteviction`` (the taint manager). The decisions live in
``nodelifecycle_logic``; this module only moves objects and timers.

Contract
--------
* Informers: Nodes, Leases in ``kube-node-lease`` and Pods (shared through
  the controller-manager's ``SharedInformers``).
* Every ``node_monitor_period``, for each node: a node with no heartbeat
  (Lease renewTime or Ready lastHeartbeatTime) seen changing for
  ``node_monitor_grace_period`` on the controller's own clock gets its
  conditions set to Unknown (status subresource, with the resourceVersion it
  read: a Conflict means the kubelet just wrote; it is retried next period).
  Before calling any node silent the controller reads the watch events already
  waiting in its socket and judges again (a controller behind its watch must
  not take unread heartbeats for silence); the Unknown writes of one pass are
  pipelined.
  Then its node-lifecycle taints are brought to what its conditions call for
  (``desired_taints``), through a merge patch carrying the resourceVersion.
* No pass runs while an informer is relisting or cut off (a stale cache
  would make every node look silent); after a relist, changed leases count
  as heartbeats seen at that moment.
* Events, as Kubernetes records them: on the Node, ``NodeNotReady`` when the
  controller sees Ready leave True and ``NodeReady`` when it comes back
  (``Node NAME status is now: NodeNotReady``); on a pod, ``TaintManagerEviction``
  (``Marking for deletion Pod NS/NAME``, or ``Cancelling deletion of Pod NS/NAME``
  when the taint goes before the toleration runs out).
* Pods of a node whose Ready leaves True get Ready=False (status subresource,
  Warning event ``NodeNotReady`` ``Node is not ready`` on the pod), retried
  every pass until done or the node is Ready again.
* Taint eviction: a pod on a node with NoExecute taints is deleted (a normal
  graceful delete) when due (``pods_to_evict``). Nobody confirms the deletion
  on a dead node, so the pod stays Terminating, as in Kubernetes, until its
  kubelet returns or someone force-deletes it. DaemonSet pods are not special.
* Logs: ``node_status_unknown``, ``node_not_ready``, ``node_ready``,
  ``taint_added``, ``taint_removed``, ``pod_marked_not_ready``, ``eviction_scheduled``,
  ``eviction_cancelled``, ``pod_evicted``, with ``kind``/``namespace``/``name``.
* ``sync()`` never raises for a lost apiserver; the work is redone on the
  next pass.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from control.controllers import nodelifecycle_logic as logic
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.events import EventRecorder
from emulator.logging import get_logger

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

LEASE_NAMESPACE = "kube-node-lease"
PodKey = tuple[str, str]


class NodeLifecycleController:
    name = "nodelifecycle"

    def __init__(self, ctx: "ControllerContext") -> None:
        self.client = ctx.client
        self.profile = ctx.profile
        self.clock = ctx.clock
        self.wall = ctx.wall_clock
        self.log = get_logger()
        self.informers = ctx.informers
        self.nodes = ctx.informers.informer("Node")
        self.leases = ctx.informers.informer("Lease", namespace=LEASE_NAMESPACE)
        self.pods = ctx.informers.informer("Pod")
        self.node_events = EventRecorder(self.client, "node-controller", clock=self.wall)
        self.pod_events = EventRecorder(self.client, "taint-eviction-controller", clock=self.wall)
        self.health: dict[str, logic.NodeHealth] = {}
        self.last_ready: dict[str, str] = {}
        self.pods_by_node: dict[str, set[PodKey]] = {}
        self.taint_times: dict[str, dict[tuple[str, str], float]] = {}   # precise wall time we added
        self.scheduled: dict[PodKey, tuple[str, float]] = {}             # pod -> (node, when)
        self.evicted: set[str] = set()                                   # uids we deleted
        self.dirty: set[str] = set()                                     # nodes to re-check evictions
        self.mark_not_ready: set[str] = set()                            # nodes whose pods to mark
        self.next_monitor = self.clock()
        self.nodes.add_event_handler(self._node_changed, lambda _o, n: self._node_changed(n),
                                     self._node_deleted)
        self.leases.add_event_handler(self._lease_changed, lambda _o, n: self._lease_changed(n), None)
        self.pods.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    # -- informer handlers (cheap: they only note what changed) ---------------
    def _node_changed(self, node: dict) -> None:
        name = node["metadata"]["name"]
        if name in self.health:   # a new heartbeat restarts the grace period at once
            self.health[name] = logic.observe(self.health[name], node, self.leases.get(name, LEASE_NAMESPACE),
                                              self.clock())
        self.dirty.add(name)

    def _node_deleted(self, node: dict) -> None:
        name = node["metadata"]["name"]
        for d in (self.health, self.last_ready, self.taint_times):
            d.pop(name, None)
        self.mark_not_ready.discard(name)
        self.dirty.discard(name)

    def _lease_changed(self, lease: dict) -> None:
        name = lease["metadata"]["name"]
        node = self.nodes.get(name)
        if node is not None and name in self.health:
            self.health[name] = logic.observe(self.health[name], node, lease, self.clock())

    @staticmethod
    def _pod_key(pod: dict) -> PodKey:
        return (pod["metadata"].get("namespace") or "", pod["metadata"]["name"])

    def _pod_added(self, pod: dict) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            self.pods_by_node.setdefault(node, set()).add(self._pod_key(pod))
            self.dirty.add(node)

    def _pod_updated(self, old: dict, new: dict) -> None:
        if (old.get("spec") or {}).get("nodeName") != (new.get("spec") or {}).get("nodeName"):
            self._pod_deleted(old)
        self._pod_added(new)

    def _pod_deleted(self, pod: dict) -> None:
        key = self._pod_key(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        if node and node in self.pods_by_node:
            self.pods_by_node[node].discard(key)
            if not self.pods_by_node[node]:
                del self.pods_by_node[node]
        self.scheduled.pop(key, None)
        self.evicted.discard(pod["metadata"].get("uid", ""))

    # -- the loop -------------------------------------------------------------
    def start(self) -> None:
        self.next_monitor = self.clock()

    def next_due(self) -> float:
        due = self.next_monitor
        if self.dirty:
            return self.clock()
        if self.scheduled:
            soonest = min(when for _node, when in self.scheduled.values())
            due = min(due, self.clock() + max(0.0, soonest - self.wall()))
        return due

    def sync(self) -> None:
        now = self.clock()
        if now >= self.next_monitor:
            self.next_monitor = now + self.profile.node_monitor_period
            self.monitor_node_health()
        wall = self.wall()
        due = {node for node, when in self.scheduled.values() if when <= wall}
        todo, self.dirty = self.dirty | due, set()
        for name in sorted(todo):
            try:
                self.process_node_evictions(name)
            except (APIError, ConnectionError) as e:
                self.dirty.add(name)
                self._lost(e)
                return

    def _lost(self, e: Exception) -> None:
        self.log.warning("apiserver_unavailable", controller=self.name, error=str(e))

    # -- node health (monitorNodeHealth) --------------------------------------
    def _watching(self) -> bool:
        """All three caches are live; after an outage, heartbeats must be seen before judging."""
        return all(i.has_synced and i.watch is not None and not i.watch.closed
                   for i in (self.nodes, self.leases, self.pods))

    def _stale_nodes(self, names: list[str]) -> list[str]:
        grace, now = self.profile.node_monitor_grace_period, self.clock()
        out = []
        for name in names:
            node = self.nodes.get(name)
            if node is None:
                continue
            h = self.health[name] = logic.observe(self.health.get(name), node,
                                                  self.leases.get(name, LEASE_NAMESPACE), now)
            if logic.node_health(h, now, grace) == "Stale":
                out.append(name)
        return out

    def monitor_node_health(self) -> None:
        if not self._watching():
            return   # a stale cache would make every node look silent
        stale = self._stale_nodes([n["metadata"]["name"] for n in self.nodes.list()])
        if stale:
            # A controller behind its watch would take heartbeats still in the socket for
            # silence: read them first, then judge again.
            try:
                self.client.poll(0)
                self.informers.process()
            except (APIError, ConnectionError) as e:
                self._lost(e)
                return
            if not self._watching():
                return
            stale = self._stale_nodes(stale)
        try:
            marked = self._mark_unknown_all(stale)
        except (APIError, ConnectionError) as e:
            self._lost(e)
            return
        for node in self.nodes.list():
            name = node["metadata"]["name"]
            node = marked.get(name, node)
            try:
                self._record_ready_transition(node)
                self._update_taints(node)
                if name in self.mark_not_ready:
                    self._mark_pods_not_ready(name)
            except APIError as e:
                if e.code in (errors.CONFLICT, errors.NOT_FOUND):
                    continue   # a newer state is on its way through the informer
                self._lost(e)
                return
            except ConnectionError as e:
                self._lost(e)
                return

    def _mark_unknown_all(self, names: list[str]) -> dict[str, dict]:
        """Set the conditions of the silent nodes to Unknown, the writes pipelined (one round
        trip for them all, where a blocking write each let the watch backlog grow). A
        Conflict or NotFound skips its node: a newer state is on its way through the
        informer. Returns the nodes as written."""
        wall, sent = self.wall(), []
        lost: APIError | None = None
        for name in names:
            node = self.nodes.get(name)
            conditions = logic.unknown_conditions(node, wall) if node is not None else None
            if conditions is None:
                continue
            new = {**node, "status": {**(node.get("status") or {}), "conditions": conditions}}
            try:
                sent.append((name, self.client.send("update", object=new, subresource="status")))
            except APIError as e:
                lost = e
                break
        out: dict[str, dict] = {}
        for name, rid in sent:
            try:
                out[name] = self.client.wait(rid, 0.0 if lost is not None else None)
            except APIError as e:
                if e.code in (errors.CONFLICT, errors.NOT_FOUND):
                    continue
                lost = lost or e
                continue
            self.log.info("node_status_unknown", kind="Node", name=name, reason=logic.REASON_UNKNOWN)
        if lost is not None:
            raise lost
        return out

    def _record_ready_transition(self, node: dict) -> None:
        name = node["metadata"]["name"]
        ready = logic.ready_status(node)
        prev = self.last_ready.get(name)
        self.last_ready[name] = ready
        if prev == "True" and ready != "True":
            self.log.info("node_not_ready", kind="Node", name=name, ready=ready)
            self.node_events.event(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
            self.mark_not_ready.add(name)
        elif prev is not None and prev != "True" and ready == "True":
            self.log.info("node_ready", kind="Node", name=name)
            self.node_events.event(node, "Normal", "NodeReady", f"Node {name} status is now: NodeReady")
        if ready == "True":
            self.mark_not_ready.discard(name)

    def _update_taints(self, node: dict) -> None:
        wall = self.wall()
        taints = logic.desired_taints(node, wall)
        if taints is None:
            return
        name = node["metadata"]["name"]
        old = (node.get("spec") or {}).get("taints") or []
        node = self.client.patch("Node", name, {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                                                "spec": {"taints": taints}})
        added, removed = logic.taint_changes(old, taints)
        times = self.taint_times.setdefault(name, {})
        for t in added:
            times[(t["key"], t["effect"])] = wall
            self.log.info("taint_added", kind="Node", name=name, taint=f'{t["key"]}:{t["effect"]}')
        for t in removed:
            times.pop((t.get("key"), t.get("effect")), None)
            self.log.info("taint_removed", kind="Node", name=name, taint=f'{t.get("key")}:{t.get("effect")}')
        self.dirty.add(name)

    def _mark_pods_not_ready(self, name: str) -> None:
        """Kubernetes' MarkPodsNotReady; the node stays in the set until every pod is done."""
        for key in sorted(self.pods_by_node.get(name, ())):
            pod = self.pods.get(key[1], key[0])
            if pod is None:
                continue
            conditions = logic.pod_not_ready_conditions(pod, self.wall())
            if conditions is None:
                continue
            try:
                self.client.update_status({**pod, "status": {**(pod.get("status") or {}),
                                                             "conditions": conditions}})
            except APIError as e:
                if e.code == errors.NOT_FOUND:
                    continue
                if e.code == errors.CONFLICT:
                    return   # retried on the next pass with the informer's newer copy
                raise
            self.log.info("pod_marked_not_ready", kind="Pod", namespace=key[0], name=key[1], nodeName=name)
            self.pod_events.event(pod, "Warning", "NodeNotReady", "Node is not ready")
        self.mark_not_ready.discard(name)

    # -- taint eviction (the taint manager) -----------------------------------
    def process_node_evictions(self, name: str) -> None:
        node = self.nodes.get(name)
        keys = self.pods_by_node.get(name, set())
        pods = [p for p in (self.pods.get(k[1], k[0]) for k in keys) if p is not None
                and p["metadata"].get("uid") not in self.evicted]
        taints = ((node or {}).get("spec") or {}).get("taints") or []
        wall = self.wall()
        decisions = logic.pods_to_evict(taints, pods, wall, self.taint_times.get(name))
        wanted = set()
        for pod, when in decisions:
            key = self._pod_key(pod)
            wanted.add(key)
            if when <= wall:
                self._evict(pod, name)
            elif self.scheduled.get(key, (None, None))[1] != when:
                self.scheduled[key] = (name, when)
                self.log.info("eviction_scheduled", kind="Pod", namespace=key[0], name=key[1],
                              nodeName=name, in_seconds=round(when - wall, 3))
        for key, (node_name, _when) in list(self.scheduled.items()):
            if node_name == name and key not in wanted:
                del self.scheduled[key]
                pod = self.pods.get(key[1], key[0])
                if pod is not None and not pod["metadata"].get("deletionTimestamp"):
                    self.log.info("eviction_cancelled", kind="Pod", namespace=key[0], name=key[1], nodeName=name)
                    self.pod_events.event(pod, "Normal", "TaintManagerEviction",
                                          f"Cancelling deletion of Pod {key[0]}/{key[1]}")

    def _evict(self, pod: dict, node: str) -> None:
        ns, name = self._pod_key(pod)
        self.scheduled.pop((ns, name), None)
        try:
            self.client.delete("Pod", name, ns)
        except APIError as e:
            if e.code != errors.NOT_FOUND:
                raise
            return
        self.evicted.add(pod["metadata"].get("uid", ""))
        self.log.info("pod_evicted", kind="Pod", namespace=ns, name=name, nodeName=node)
        self.pod_events.event(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {ns}/{name}")

    def status(self) -> dict[str, Any]:
        return {"nodes": len(self.health), "scheduled_evictions": len(self.scheduled)}
