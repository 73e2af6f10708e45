"""The Job controller: run pods to completion.

After Kubernetes' ``pkg/controller/job``. Decisions live in ``job_logic``;
this module moves objects and timers.

Contract
--------
* Informers: Jobs and Pods (shared). A Job is synced when it changes or one of
  its pods (controller ownerReference) changes.
* A sync applies ``job_logic.plan``: pods are created (event
  ``SuccessfulCreate`` ``Created pod: NAME``) or deleted (``SuccessfulDelete``
  ``Deleted pod: NAME``), the status subresource is written when it differs,
  and ``Completed`` (``Job completed``) or ``BackoffLimitExceeded`` (Warning)
  is recorded when the Job finishes.
* Failed pods are replaced after a back-off, as Kubernetes does: the n-th
  failure delays the next pod creation by ``crashloop_backoff_initial *
  2^(n-1)``, capped at ``crashloop_backoff_max`` (Kubernetes' 10 s and 10 min
  defaults are not in the profile; the kubelet's crash-loop timers are the
  nearest kemu has).
* Logs: ``job_pod_created``, ``job_pod_deleted``, ``job_completed``,
  ``job_failed``, ``job_suspended``, ``job_resumed`` (Events ``Suspended``/``Resumed``).
* ``sync()`` never raises for a lost apiserver (the manager logs it): the Job
  stays dirty and is retried.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from control.controllers import job_logic as logic
from control.controllers.controller_utils import write_status
from control.controllers.workload_common import OwnedPodHandlers, OwnedPods, key_of
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.events import EventRecorder
from emulator.logging import get_logger

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext


class JobController(OwnedPodHandlers):
    name = "job"

    def __init__(self, ctx: "ControllerContext") -> None:
        self.client = ctx.client
        self.profile = ctx.profile
        self.clock = ctx.clock
        self.wall = ctx.wall_clock
        self.log = get_logger()
        self.jobs = ctx.informers.informer("Job")
        self.pods = ctx.informers.informer("Pod")
        self.events = EventRecorder(self.client, "job-controller", clock=ctx.wall_clock)
        self.owned = OwnedPods(self.pods.get)
        self.by_uid: dict[str, tuple[str, str]] = {}
        self.dirty: set[tuple[str, str]] = set()
        self.not_before: dict[str, float] = {}       # job uid -> no pod creation before (clock)
        self.failures: dict[str, int] = {}           # job uid -> failures already backed off for
        self.jobs.add_event_handler(self._job_changed, lambda _o, n: self._job_changed(n), self._job_deleted)
        self.pods.add_event_handler(self._pod_changed, self._pod_updated, self._pod_deleted)

    def _job_changed(self, job: dict) -> None:
        self.by_uid[job["metadata"].get("uid", "")] = key_of(job)
        self.dirty.add(key_of(job))

    def _job_deleted(self, job: dict) -> None:
        uid = job["metadata"].get("uid", "")
        for d in (self.by_uid, self.not_before, self.failures):
            d.pop(uid, None)
        self.owned.forget(uid)
        self.dirty.discard(key_of(job))

    # -- loop -----------------------------------------------------------------
    def start(self) -> None:
        pass

    def next_due(self) -> float:
        now = self.clock()
        if self.dirty:
            return now
        waiting = [t for t in self.not_before.values() if t > now]
        return min(waiting, default=now + 3600.0)

    def sync(self) -> None:
        now = self.clock()
        for uid, t in list(self.not_before.items()):
            if t <= now:
                del self.not_before[uid]
                self._mark_owner(uid)
        todo, self.dirty = sorted(self.dirty), set()
        for i, key in enumerate(todo):
            try:
                self.sync_job(key)
            except APIError as e:
                if e.code in (errors.UNAVAILABLE, errors.TIMEOUT):
                    self.dirty.update(todo[i:])
                    raise
                self.dirty.add(key)
                self.log.warning("job_sync_failed", kind="Job", namespace=key[0], name=key[1],
                                 code=e.code, error=str(e))
            except ConnectionError:
                self.dirty.update(todo[i:])
                raise

    def _backoff(self, uid: str, failed: int) -> float:
        """Seconds to wait before creating pods, given ``failed`` failures so far."""
        seen = self.failures.get(uid, 0)
        if failed > seen:
            self.failures[uid] = failed
            delay = min(self.profile.crashloop_backoff_max,
                        self.profile.crashloop_backoff_initial * 2 ** (failed - 1))
            self.not_before[uid] = self.clock() + delay
        return max(0.0, self.not_before.get(uid, 0.0) - self.clock())

    def sync_job(self, key: tuple[str, str]) -> None:
        job = self.jobs.get(key[1], key[0])
        if job is None or job["metadata"].get("deletionTimestamp") or logic.finished(job):
            return
        uid = job["metadata"].get("uid", "")
        ns, name = key
        p = logic.plan(job, self.owned.pods(uid, self.clock()), self.wall())
        for pod in p.delete:
            try:
                self.client.delete("Pod", pod["metadata"]["name"], ns)
            except APIError as e:
                if e.code != errors.NOT_FOUND:
                    raise
                continue
            self.owned.expect_deleted(pod, self.clock())
            self.log.info("job_pod_deleted", kind="Pod", namespace=ns, name=pod["metadata"]["name"], job=name)
            self.events.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")
        created = 0
        if p.create and self._backoff(uid, int(p.status.get("failed") or 0)) <= 0:
            for _ in range(p.create):
                pod = self.client.create(logic.job_pod(job), namespace=ns)
                self.owned.expect_created(uid, pod, self.clock())
                created += 1
                self.log.info("job_pod_created", kind="Pod", namespace=ns, name=pod["metadata"]["name"], job=name)
                self.events.event(job, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        status = dict(p.status)
        if created != p.create:
            status["active"] = (status.get("active") or 0) - (p.create - created)
            if not status["active"]:
                status.pop("active")
        if p.delete or created:
            self.dirty.add(key)
        if logic.status_changed(job, status) and not write_status(self.client, job, status, self.dirty, key):
            self.dirty.add(key)
            return
        if p.event is not None:
            type_, reason, message = p.event
            event = {"Completed": "job_completed", "Suspended": "job_suspended",
                     "Resumed": "job_resumed"}.get(reason, "job_failed")
            self.log.info(event, kind="Job", namespace=ns, name=name, reason=reason)
            self.events.event(job, type_, reason, message)
