"""IAM denials: the answer GCE gives a caller whose service account lacks a permission.

Why: the chaos campaign (tests/chaos) needs "permission denied" as a fault that lasts until someone fixes
the role binding, and neither the 5xx rules nor the quotas can say it. A ``FaultRule`` of kind
``permission`` (``count=-1``: until ``DELETE /_sim/faults``) makes matching calls answer what Compute
Engine answers a missing IAM permission: HTTP 403, ``errors[].reason`` ``forbidden``, message
"Required '<permission>' permission for '<resource>'" (the wording the Google API client libraries surface
as ``googleapi: Error 403: Required 'compute.disks.create' permission for 'projects/p/zones/z/disks/d',
forbidden``; the permission names are those of the Compute Engine IAM permissions reference,
https://cloud.google.com/compute/docs/reference/rest/v1/disks/insert "Authorization requires the following
IAM permission on the specified resource: compute.disks.create").
"""

from __future__ import annotations

from typing import Final

from sdworker_tools.computesim.errors import ApiError

# API method -> the IAM permission it needs, where the name is not simply compute.<resource>.<verb>.
_PERMISSIONS: Final[dict[str, str]] = {
    "disks.insert": "compute.disks.create",
    "disks.aggregatedList": "compute.disks.list",
    "instances.aggregatedList": "compute.instances.list",
    "instances.setDiskAutoDelete": "compute.instances.setDiskAutoDelete",
    "images.getFromFamily": "compute.images.getFromFamily",
    "images.insert": "compute.images.create",
    "zoneOperations.get": "compute.zoneOperations.get",
    "zoneOperations.wait": "compute.zoneOperations.get",
    "globalOperations.wait": "compute.globalOperations.get",
}


def permission_for(method: str) -> str:
    """The IAM permission a compute v1 method needs (``disks.insert`` -> ``compute.disks.create``)."""
    return _PERMISSIONS.get(method, f"compute.{method}")


def permission_denied(method: str, path: str) -> ApiError:
    """The 403 a caller without the method's permission gets, naming the permission and the resource."""
    resource = path.split("/compute/v1/", 1)[-1].lstrip("/")
    return ApiError(403, "forbidden", f"Required '{permission_for(method)}' permission for '{resource}'")
