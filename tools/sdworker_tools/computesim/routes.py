"""URL routing of the compute v1 REST API: which API method a verb and path name, and its path parameters.

One table for the single-request and the batch path (``/batch/compute/v1``), in the URL templates of the
compute v1 discovery document; a known path with another verb is a 405, an unknown one a 404, as GFE
answers them.
"""

from __future__ import annotations

import re
import urllib.parse

from sdworker_tools.computesim import errors
from sdworker_tools.computesim.errors import ApiError
from sdworker_tools.computesim.links import API_PREFIX

_P = r"(?P<project>[^/]+)"
_Z = r"(?P<zone>[^/]+)"
_ROUTES: list[tuple[str, str, str]] = [
    ("GET", rf"projects/{_P}/zones", "zones.list"),
    ("GET", rf"projects/{_P}/zones/{_Z}", "zones.get"),
    ("GET", rf"projects/{_P}/global/images", "images.list"),
    ("POST", rf"projects/{_P}/global/images", "images.insert"),
    ("GET", rf"projects/{_P}/global/images/family/(?P<family>[^/]+)", "images.getFromFamily"),
    ("GET", rf"projects/{_P}/global/images/(?P<image>[^/]+)", "images.get"),
    ("DELETE", rf"projects/{_P}/global/images/(?P<image>[^/]+)", "images.delete"),
    ("POST", rf"projects/{_P}/global/images/(?P<image>[^/]+)/deprecate", "images.deprecate"),
    ("POST", rf"projects/{_P}/global/images/(?P<resource>[^/]+)/setLabels", "images.setLabels"),
    ("GET", rf"projects/{_P}/aggregated/disks", "disks.aggregatedList"),
    ("GET", rf"projects/{_P}/zones/{_Z}/disks", "disks.list"),
    ("POST", rf"projects/{_P}/zones/{_Z}/disks", "disks.insert"),
    ("GET", rf"projects/{_P}/zones/{_Z}/disks/(?P<disk>[^/]+)", "disks.get"),
    ("DELETE", rf"projects/{_P}/zones/{_Z}/disks/(?P<disk>[^/]+)", "disks.delete"),
    ("POST", rf"projects/{_P}/zones/{_Z}/disks/(?P<resource>[^/]+)/setLabels", "disks.setLabels"),
    ("GET", rf"projects/{_P}/aggregated/instances", "instances.aggregatedList"),
    ("GET", rf"projects/{_P}/zones/{_Z}/instances", "instances.list"),
    ("POST", rf"projects/{_P}/zones/{_Z}/instances", "instances.insert"),
    ("GET", rf"projects/{_P}/zones/{_Z}/instances/(?P<instance>[^/]+)", "instances.get"),
    ("DELETE", rf"projects/{_P}/zones/{_Z}/instances/(?P<instance>[^/]+)", "instances.delete"),
    ("POST", rf"projects/{_P}/zones/{_Z}/instances/(?P<instance>[^/]+)/attachDisk", "instances.attachDisk"),
    ("POST", rf"projects/{_P}/zones/{_Z}/instances/(?P<instance>[^/]+)/detachDisk", "instances.detachDisk"),
    (
        "POST",
        rf"projects/{_P}/zones/{_Z}/instances/(?P<instance>[^/]+)/setDiskAutoDelete",
        "instances.setDiskAutoDelete",
    ),
    ("POST", rf"projects/{_P}/zones/{_Z}/instances/(?P<instance>[^/]+)/setLabels", "instances.setLabels"),
    ("GET", rf"projects/{_P}/zones/{_Z}/operations", "zoneOperations.list"),
    ("GET", rf"projects/{_P}/zones/{_Z}/operations/(?P<operation>[^/]+)", "zoneOperations.get"),
    ("POST", rf"projects/{_P}/zones/{_Z}/operations/(?P<operation>[^/]+)/wait", "zoneOperations.wait"),
    ("GET", rf"projects/{_P}/global/operations", "globalOperations.list"),
    ("GET", rf"projects/{_P}/global/operations/(?P<operation>[^/]+)", "globalOperations.get"),
    ("POST", rf"projects/{_P}/global/operations/(?P<operation>[^/]+)/wait", "globalOperations.wait"),
]
ROUTES = [(verb, re.compile(pattern + "$"), method) for verb, pattern, method in _ROUTES]
BATCH_PATH = "/batch/compute/v1"


def route(verb: str, path: str) -> tuple[str, dict[str, str]]:
    """(API method, path parameters) for a request, or a 404/405 ApiError."""
    if not path.startswith(API_PREFIX):
        raise errors.not_found(path)
    rest = path[len(API_PREFIX) :]
    verbs_seen = False
    for route_verb, pattern, method in ROUTES:
        match = pattern.match(rest)
        if match is None:
            continue
        if route_verb != verb:
            verbs_seen = True
            continue
        return method, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
    if verbs_seen:
        raise ApiError(405, "httpMethodNotAllowed", f"HTTP method {verb} is not supported by this URL")
    raise errors.not_found(rest)
