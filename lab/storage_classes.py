"""The StorageClasses every lab has, as a cluster add-on installs them.

Contract: ``ensure_storage_classes(client)`` creates, when missing:

* ``standard``, the default class (annotation
  ``storageclass.kubernetes.io/is-default-class: "true"``): provisioner
  ``kemu.io/local-dir`` (a directory on the node the pod is scheduled to),
  binding mode WaitForFirstConsumer, reclaim policy Delete;
* ``shared``: provisioner ``kemu.io/shared-dir`` (a directory in the lab's
  ``shared/``, outside every node, standing in for network storage; it
  supports ReadWriteMany), binding mode Immediate, reclaim policy Delete.

An existing class of the same name is left as the user changed it.
"""
from __future__ import annotations

from typing import Any

from emulator.api import errors
from emulator.api.errors import APIError

__all__ = ["STORAGE_CLASSES", "ensure_storage_classes"]

STORAGE_CLASSES: list[dict[str, Any]] = [
    {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
     "metadata": {"name": "standard",
                  "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
     "provisioner": "kemu.io/local-dir", "reclaimPolicy": "Delete",
     "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": True},
    {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
     "metadata": {"name": "shared"},
     "provisioner": "kemu.io/shared-dir", "reclaimPolicy": "Delete",
     "volumeBindingMode": "Immediate", "allowVolumeExpansion": True},
]


def ensure_storage_classes(client: Any) -> None:
    for sc in STORAGE_CLASSES:
        try:
            client.create(sc)
        except APIError as e:
            if e.code != errors.ALREADY_EXISTS:
                raise
