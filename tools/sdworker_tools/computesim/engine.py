"""The simulated compute API itself, without HTTP: one ``Engine`` over the operation core and its resources.

``core`` holds the state and the call pipeline (quota, injected faults, IAM denial, ``requestId`` replay,
the request log) and the life of an operation (queued per resource, PENDING, RUNNING, DONE, its effect or
its undo); each resource's handlers live in their own module (``images``, ``disks``, ``instances``,
``zones`` with the operations resource), and ``admin`` is what tests do from outside the API. This module
only names which API method each handler serves.

Owns all simulated state and the block devices behind it (through ``blockdev``); ``close`` releases
every loop device and file it created.
"""

from __future__ import annotations

from sdworker_tools.computesim.admin import AdminHandlers
from sdworker_tools.computesim.core import Method
from sdworker_tools.computesim.disks import DISK_TYPES
from sdworker_tools.computesim.state import Call, LogEntry
from sdworker_tools.computesim.zones import ZoneHandlers

__all__ = ["DISK_TYPES", "Call", "Engine", "LogEntry"]


class Engine(ZoneHandlers, AdminHandlers):
    def _method_table(self) -> dict[str, Method]:
        reads = {
            "zones.list": self._zones_list,
            "zones.get": self._zones_get,
            "images.get": self._images_get,
            "images.getFromFamily": self._images_get_from_family,
            "images.list": self._images_list,
            "disks.get": self._disks_get,
            "disks.list": self._disks_list,
            "disks.aggregatedList": self._disks_list,
            "instances.get": self._instances_get,
            "instances.list": self._instances_list,
            "instances.aggregatedList": self._instances_list,
            "zoneOperations.list": self._operations_list,
            "globalOperations.list": self._operations_list,
        }
        writes = {
            "images.insert": self._images_insert,
            "images.delete": self._images_delete,
            "images.deprecate": self._images_deprecate,
            "images.setLabels": self._images_set_labels,
            "disks.insert": self._disks_insert,
            "disks.delete": self._disks_delete,
            "disks.setLabels": self._disks_set_labels,
            "instances.insert": self._instances_insert,
            "instances.delete": self._instances_delete,
            "instances.attachDisk": self._instances_attach,
            "instances.detachDisk": self._instances_detach,
            "instances.setDiskAutoDelete": self._instances_set_auto_delete,
            "instances.setLabels": self._instances_set_labels,
        }
        # Operation polling has its own meter: it does not count against the read quota.
        polls = {
            "zoneOperations.get": self._operations_get,
            "zoneOperations.wait": self._operations_wait,
            "globalOperations.get": self._operations_get,
            "globalOperations.wait": self._operations_wait,
        }
        return {
            **{name: Method(handler, write=False) for name, handler in reads.items()},
            **{name: Method(handler, write=True) for name, handler in writes.items()},
            **{name: Method(handler, write=False, counted=False) for name, handler in polls.items()},
        }
