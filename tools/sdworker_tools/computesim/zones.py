"""Zones and the operations resources: ``zones.*``, ``zoneOperations.*``, ``globalOperations.*``.

The operations a mutation starts live in ``core``; this is how clients read them back: ``get`` and
``list`` answer at once, ``wait`` blocks until the operation is DONE (or the wait deadline, as GCE's
``wait`` returns after about two minutes regardless).
"""

from __future__ import annotations

import time
from typing import Any

from sdworker_tools.computesim import errors, listing
from sdworker_tools.computesim.core import Core
from sdworker_tools.computesim.models import Operation
from sdworker_tools.computesim.quota import region_of
from sdworker_tools.computesim.state import Call


class ZoneHandlers(Core):
    def _zone_json(self, project: str, zone: str) -> dict[str, Any]:
        return {
            "kind": "compute#zone",
            "id": str(2000 + self._config.zones.index(zone)),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
            "name": zone,
            "description": zone,
            "status": "UP",
            "region": self.links.region(project, region_of(zone)),
            "selfLink": self.links.zone(project, zone),
            "availableCpuPlatforms": ["Intel Cascade Lake", "AMD Milan"],
            "supportsPzs": False,
        }

    def _zones_list(self, call: Call) -> dict[str, Any]:
        items = [self._zone_json(call.project, z) for z in self._config.zones]
        return listing.page(
            call.query, "compute#zoneList", f"projects/{call.project}/zones", items, self.links
        )

    def _zones_get(self, call: Call) -> dict[str, Any]:
        zone = call.params["zone"]
        if zone not in self._config.zones:
            raise errors.not_found(f"projects/{call.project}/zones/{zone}")
        return self._zone_json(call.project, zone)

    # ------------------------------------------------------------------ operations

    def _find_operation(self, call: Call) -> Operation:
        self._known_zone(call)
        scope = call.params.get("zone", "global")
        op = self._ops.get((call.project, scope, call.params["operation"]))
        if op is None:
            where = f"zones/{scope}" if scope != "global" else "global"
            raise errors.not_found(f"projects/{call.project}/{where}/operations/{call.params['operation']}")
        return op

    def _operations_get(self, call: Call) -> dict[str, Any]:
        with self._lock:
            return self._find_operation(call).to_json(self.links, time.monotonic())

    def _operations_wait(self, call: Call) -> dict[str, Any]:
        with self._changed:
            op = self._find_operation(call)
            deadline = time.monotonic() + self._config.operation_wait_timeout_s
            while op.status != "DONE" and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return op.to_json(self.links, time.monotonic())

    def _operations_list(self, call: Call) -> dict[str, Any]:
        with self._lock:
            zone = call.params.get("zone")
            if zone is not None:
                self._known_zone(call)
            now = time.monotonic()
            items = [
                o.to_json(self.links, now)
                for o in self._op_log
                if o.project == call.project and o.zone == zone
            ]
        where = f"zones/{zone}" if zone else "global"
        return listing.page(
            call.query,
            "compute#operationList",
            f"projects/{call.project}/{where}/operations",
            items,
            self.links,
        )
