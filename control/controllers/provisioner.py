"""kemu's dynamic provisioner: ``kemu.io/local-dir`` and ``kemu.io/shared-dir``, run in the controller-manager.

It plays the CSI external-provisioner's part: the binder annotates a claim
with its class's provisioner; this controller makes the directory and the PV
(pre-bound to the claim), and the binder then binds them. Decisions and paths
live in ``provisioner_logic``.

Contract
--------
* Informers: PersistentVolumeClaims, PersistentVolumes, StorageClasses and
  Nodes (shared). Claims are synced when they, or their class, change; PVs
  when they change.
* Provisioning (``provision_decision``): Event ``Provisioning``
  (``External provisioner is provisioning volume for claim "NS/NAME"``),
  then the directory (``<nodes_root>/<node>/var/lib/kemu/storage/<pv>`` or
  ``<shared_root>/<pv>``, mode 0777, its resolved path checked to stay inside
  the root), then the PV (creates pipelined across claims). Success: Event
  ``ProvisioningSucceeded`` (``Successfully provisioned volume NAME``);
  failure: Warning ``ProvisioningFailed`` (``failed to provision volume with
  StorageClass "C": ...``) and a retry after ``RETRY_PERIOD``. A PV that
  already exists (AlreadyExists) counts as provisioned.
* Delete reclaim (``should_delete``): the directory is removed (a symlink is
  only unlinked; nothing outside the root is touched), then the PV object is
  deleted. A failure is a Warning ``VolumeFailedDelete`` on the PV, retried.
* With ``nodes_root``/``shared_root`` unset (None) the matching provisioner is
  disabled: one ``provisioning_disabled`` log line at start, claims are left alone.
* Logs: ``volume_provisioned``, ``volume_provision_failed``, ``volume_reclaimed``,
  ``volume_reclaim_failed``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from control.controllers import persistentvolume_logic as pvl
from control.controllers import provisioner_logic as logic
from control.controllers.persistentvolume import Chain, run_chains
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.events import EventRecorder
from emulator.logging import get_logger

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

Key = tuple[str, str]
RETRY_PERIOD = 5.0


def _ckey(obj: dict) -> Key:
    return (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])


def make_volume_dir(path: Path, root: Path) -> None:
    """Create ``path`` (and parents) under ``root``; OSError/ValueError if it would leave the root."""
    root.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not logic.inside(path.parent, root) and os.path.realpath(path.parent) != os.path.realpath(root):
        raise ValueError(f"{path.parent} resolves outside {root}")
    path.mkdir(exist_ok=True)
    if not logic.inside(path, root) or path.is_symlink():
        raise ValueError(f"{path} resolves outside {root}")
    os.chmod(path, 0o777)


def remove_volume_dir(path: Path, root: Path) -> None:
    """Remove ``path`` if it exists: a symlink is unlinked, a directory inside ``root`` removed."""
    if path.is_symlink():
        path.unlink()
        return
    if not path.exists():
        return
    if not logic.inside(path, root):
        raise ValueError(f"{path} resolves outside {root}: not removed")
    shutil.rmtree(path)


class ProvisionerController:
    name = "persistentvolume-provisioner"

    def __init__(self, ctx: "ControllerContext") -> None:
        self.client = ctx.client
        self.clock = ctx.clock
        self.wall = ctx.wall_clock
        self.log = get_logger()
        self.nodes_root = ctx.nodes_root
        self.shared_root = ctx.shared_root
        self.pvcs = ctx.informers.informer("PersistentVolumeClaim")
        self.pvs = ctx.informers.informer("PersistentVolume")
        self.classes = ctx.informers.informer("StorageClass")
        self.nodes = ctx.informers.informer("Node")
        self.recorders = {p: EventRecorder(self.client, p, clock=self.wall) for p in logic.PROVISIONERS}
        self.dirty_claims: set[Key] = set()
        self.dirty_volumes: set[str] = set()
        self.timers: dict[tuple[str, Any], float] = {}   # ("claim", key) | ("volume", name) -> clock time
        self.created: set[str] = set()    # PVs created, not yet seen by the informer
        self.unavailable: APIError | None = None
        self.pvcs.add_event_handler(lambda o: self.dirty_claims.add(_ckey(o)),
                                    lambda _o, n: self.dirty_claims.add(_ckey(n)))
        self.pvs.add_event_handler(self._volume_changed, lambda _o, n: self._volume_changed(n),
                                   lambda o: self.created.discard(o["metadata"]["name"]))
        self.classes.add_event_handler(self._class_changed, lambda _o, n: self._class_changed(n))

    def enabled(self, provisioner: str) -> bool:
        return (self.nodes_root if provisioner == logic.LOCAL_DIR else self.shared_root) is not None

    def _volume_changed(self, pv: dict) -> None:
        self.created.discard(pv["metadata"]["name"])
        if logic.should_delete(pv):
            self.dirty_volumes.add(pv["metadata"]["name"])

    def _class_changed(self, sc: dict) -> None:
        if sc.get("provisioner") in logic.PROVISIONERS:
            name = sc["metadata"]["name"]
            self.dirty_claims.update(_ckey(c) for c in self.pvcs.list() if pvl.claim_class(c) == name
                                     and not (c.get("spec") or {}).get("volumeName"))

    def start(self) -> None:
        for p in logic.PROVISIONERS:
            if not self.enabled(p):
                self.log.info("provisioning_disabled", provisioner=p,
                              reason=f"the controller-manager was started without "
                                     f"{'a nodes root' if p == logic.LOCAL_DIR else 'a shared root'}")

    def _synced(self) -> bool:
        return all(i.has_synced for i in (self.pvcs, self.pvs, self.classes, self.nodes))

    def next_due(self) -> float:
        now = self.clock()
        if (self.dirty_claims or self.dirty_volumes) and self._synced():
            return now
        return max(now, min(self.timers.values(), default=now + 3600.0))

    def sync(self) -> None:
        if not self._synced():
            return
        now = self.clock()
        for (what, key), at in list(self.timers.items()):
            if at <= now:
                del self.timers[(what, key)]
                (self.dirty_claims if what == "claim" else self.dirty_volumes).add(key)
        self.unavailable = None
        claims, self.dirty_claims = sorted(self.dirty_claims), set()
        run_chains(self.client, self._provision_chains(claims))
        volumes, self.dirty_volumes = sorted(self.dirty_volumes), set()
        run_chains(self.client, self._delete_chains(volumes))
        if self.unavailable is not None:
            self.log.warning("apiserver_unavailable", controller=self.name, error=str(self.unavailable))

    def _retry(self, what: str, key: Any, err: APIError | None = None) -> None:
        if err is not None and err.code in (errors.UNAVAILABLE, errors.TIMEOUT):
            self.unavailable = err
            (self.dirty_claims if what == "claim" else self.dirty_volumes).add(key)
            return
        self.timers[(what, key)] = self.clock() + RETRY_PERIOD

    # -- provisioning -----------------------------------------------------------------
    def _provision_chains(self, keys: list[Key]) -> Iterable[Chain]:
        chains: list[Chain] = []
        for key in keys:
            claim = self.pvcs.get(key[1], key[0])
            if claim is None:
                continue
            prov = logic.claim_provisioner(claim)
            if prov not in logic.PROVISIONERS or not self.enabled(prov):
                continue
            cls = pvl.claim_class(claim)
            sc = self.classes.get(cls) if cls else None
            node = pvl.selected_node(claim)
            pv_name = logic.volume_name(claim)
            decision = logic.provision_decision(claim, sc, node_known=bool(node) and self.nodes.get(node) is not None,
                                                volume_exists=pv_name in self.created or
                                                self.pvs.get(pv_name) is not None)
            if decision is None:
                continue
            rec = self.recorders[prov]
            rec.event(claim, "Normal", "Provisioning",
                      f'External provisioner is provisioning volume for claim "{key[0]}/{key[1]}"')
            if decision[0] == "fail":
                self._provision_failed(key, claim, prov, decision[1])
                continue
            assert sc is not None
            pv = logic.volume_for(claim, sc, decision[1])
            try:
                path, root = logic.volume_dir(pv, self.nodes_root, self.shared_root)
                make_volume_dir(path, root)
            except (OSError, ValueError) as e:
                self._provision_failed(key, claim, prov, f'failed to provision volume with StorageClass "{cls}": {e}')
                continue
            self.created.add(pv_name)
            chains.append(self._create(key, claim, prov, pv))
        return chains

    def _provision_failed(self, key: Key, claim: dict, prov: str, message: str) -> None:
        self.recorders[prov].event(claim, "Warning", "ProvisioningFailed", message)
        self.log.warning("volume_provision_failed", kind="PersistentVolumeClaim", namespace=key[0],
                         name=key[1], error=message)
        self._retry("claim", key)

    def _create(self, key: Key, claim: dict, prov: str, pv: dict) -> Chain:
        name = pv["metadata"]["name"]
        res = yield ("create", {"object": pv, "namespace": None})
        if isinstance(res, APIError) and res.code != errors.ALREADY_EXISTS:
            self.created.discard(name)
            if res.code in (errors.UNAVAILABLE, errors.TIMEOUT):
                self._retry("claim", key, res)
            else:
                self._provision_failed(key, claim, prov, f'failed to provision volume with StorageClass '
                                       f'"{pvl.claim_class(claim)}": {res.message}')
            return
        self.recorders[prov].event(claim, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {name}")
        self.log.info("volume_provisioned", kind="PersistentVolume", name=name, provisioner=prov,
                      claim=f"{key[0]}/{key[1]}")

    # -- Delete reclaim -----------------------------------------------------------------
    def _delete_chains(self, names: list[str]) -> Iterable[Chain]:
        chains: list[Chain] = []
        for name in names:
            pv = self.pvs.get(name)
            if pv is None or not logic.should_delete(pv):
                continue
            prov = pvl.annotations(pv).get(pvl.ANN_PROVISIONED_BY, "")
            if not self.enabled(prov):
                continue
            try:
                path, root = logic.volume_dir(pv, self.nodes_root, self.shared_root)
                remove_volume_dir(path, root)
            except (OSError, ValueError) as e:
                self.recorders[prov].event(pv, "Warning", "VolumeFailedDelete", str(e))
                self.log.warning("volume_reclaim_failed", kind="PersistentVolume", name=name, error=str(e))
                self._retry("volume", name)
                continue
            chains.append(self._delete(pv))
        return chains

    def _delete(self, pv: dict) -> Chain:
        name = pv["metadata"]["name"]
        res = yield ("delete", {"kind": "PersistentVolume", "name": name, "namespace": None,
                                "preconditions": {"uid": pv["metadata"].get("uid")}})
        if isinstance(res, APIError) and res.code != errors.NOT_FOUND:
            self._retry("volume", name, res)
            return
        self.log.info("volume_reclaimed", kind="PersistentVolume", name=name, policy="Delete")

    def status(self) -> dict[str, Any]:
        return {"pending_claims": len(self.dirty_claims), "retries": len(self.timers)}
