"""Resource URLs: the self links the simulator hands out and the references clients send back.

GCE answers with absolute self links and accepts a reference to another resource (a disk's
``sourceImage``, an attach's ``source``, a ``type``) as an absolute URL, as
``projects/P/...``, as a project-relative ``zones/Z/...``/``global/...`` path, or sometimes as a bare
name. The simulator's own links point at itself by default, because gcloud parses operation self
links to know where to poll; any host is accepted on the way in, so a ``https://www.googleapis.com``
link written by a client also resolves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sdworker_tools.computesim import errors

API_PREFIX = "/compute/v1/"
_URL = re.compile(r"^[a-z]+://[^/]+/compute/[^/]+/")


@dataclass(frozen=True)
class Ref:
    project: str
    zone: str | None
    name: str
    family: bool = False  # images/family/NAME


class Links:
    def __init__(self, base: str) -> None:
        self.base = base if base.endswith("/") else base + "/"

    def project(self, project: str) -> str:
        return f"{self.base}projects/{project}"

    def zone(self, project: str, zone: str) -> str:
        return f"{self.project(project)}/zones/{zone}"

    def region(self, project: str, region: str) -> str:
        return f"{self.project(project)}/regions/{region}"

    def disk(self, project: str, zone: str, name: str) -> str:
        return f"{self.zone(project, zone)}/disks/{name}"

    def instance(self, project: str, zone: str, name: str) -> str:
        return f"{self.zone(project, zone)}/instances/{name}"

    def disk_type(self, project: str, zone: str, name: str) -> str:
        return f"{self.zone(project, zone)}/diskTypes/{name}"

    def machine_type(self, project: str, zone: str, name: str) -> str:
        return f"{self.zone(project, zone)}/machineTypes/{name}"

    def image(self, project: str, name: str) -> str:
        return f"{self.project(project)}/global/images/{name}"

    def zone_operation(self, project: str, zone: str, name: str) -> str:
        return f"{self.zone(project, zone)}/operations/{name}"

    def global_operation(self, project: str, name: str) -> str:
        return f"{self.project(project)}/global/operations/{name}"


def path_of(url: str) -> str:
    """``https://host/compute/v1/projects/p/zones/z/disks/d`` -> ``projects/p/zones/z/disks/d``."""
    return _URL.sub("", url)


def parse_zonal(ref: str, collection: str, *, project: str, zone: str, field_name: str) -> Ref:
    """A reference to a zonal resource (``disks``, ``diskTypes``, ``instances``, ``machineTypes``)."""
    parts = path_of(ref.strip()).strip("/").split("/")
    if len(parts) == 1 and parts[0]:
        return Ref(project, zone, parts[0])
    if len(parts) == 4 and parts[0] == "zones" and parts[2] == collection:
        return Ref(project, parts[1], parts[3])
    if len(parts) == 6 and parts[0] == "projects" and parts[2] == "zones" and parts[4] == collection:
        return Ref(parts[1], parts[3], parts[5])
    raise errors.invalid_field(field_name, ref, f"The URL is malformed (expected a {collection} reference).")


def parse_image(ref: str, *, project: str, field_name: str) -> Ref:
    """A reference to a global image or image family."""
    parts = path_of(ref.strip()).strip("/").split("/")
    if parts[:1] == ["projects"] and len(parts) >= 2:
        project, parts = parts[1], parts[2:]
    if parts[:2] == ["global", "images"]:
        parts = parts[2:]
    if len(parts) == 1 and parts[0]:
        return Ref(project, None, parts[0])
    if len(parts) == 2 and parts[0] == "family":
        return Ref(project, None, parts[1], family=True)
    raise errors.invalid_field(field_name, ref, "The URL is malformed (expected an image reference).")
