"""One status writer: read, let the caller decide, write guarded by the resourceVersion.

The operator's provisioner and the node agent both write a RuntimeDisk's status (``api.transitions`` says
which phases each may set). A blind merge patch from one would overwrite what the other wrote a moment
earlier; here every write replaces the status subresource of the version it was computed from, and a 409
(someone wrote in between) re-reads and decides again. ``mutate`` sees the fresh object and returns the new
status, or None for "nothing to write", so callers never write what did not change (each write is a watch
event for every reader).

A caller that already holds a recent copy (the agent keeps the newest version it has seen of each of its
disks) passes it as ``known``: the first write is computed from it without a read, and the resourceVersion
guard still refuses it if the copy was stale. Only a write is ever decided from ``known``; "nothing to
write" and a ``mutate`` that raises are decided again from a fresh read, so the outcome is the same as
without it, one GET cheaper when the copy was current.

Status cannot ride along on create: for a custom resource with the status subresource the API server ignores
``status`` in a create (and in writes to the main resource), so a new object's first status write carries
everything known at creation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sdworker.kube.client import Kube, KubeError
from sdworker.workqueue import backoff

log = logging.getLogger("sdworker.kube.status")
Json = dict[str, Any]


async def update_status(
    kube: Kube,
    kind: str,
    name: str,
    mutate: Callable[[Json], Json | None],
    *,
    namespace: str | None = None,
    attempts: int = 5,
    known: Json | None = None,
) -> Json | None:
    """Set ``kind``/``name``'s status to ``mutate(fresh object)`` unless that is None or unchanged.

    Returns the object as it is after the call (as written, or as read when there was nothing to write),
    or None when the object does not exist. Exceptions from ``mutate`` on a fresh read propagate (a
    caller's way to stop). Raises ``KubeError`` 409 when the object kept changing for ``attempts`` tries.
    ``known``: a recent copy of the object to try a first write from (module docstring).
    """
    if known is not None:
        done, written = await _write_from_known(kube, known, mutate)
        if done:
            return written
    for attempt in range(1, attempts + 1):
        obj = await kube.get(kind, name, namespace)
        if obj is None:
            return None
        new = mutate(obj)
        if new is None or new == obj.get("status"):
            return obj
        done, written = await _replace(kube, obj, new)
        if done:
            return written
        log.debug("%s %s changed under a status write (attempt %d); reading it again", kind, name, attempt)
        await asyncio.sleep(backoff(attempt, base=0.02, cap=0.5))
    raise KubeError(409, "Conflict", f"{kind} {name}: its status kept changing; gave up for now")


async def _write_from_known(
    kube: Kube, known: Json, mutate: Callable[[Json], Json | None]
) -> tuple[bool, Json | None]:
    """(True, result) for a write ``mutate`` decided from ``known``; (False, None) where a fresh read must
    decide: a ``mutate`` that raised or found nothing to write, or a 409."""
    try:
        new = mutate(known)
    except Exception:  # decided again from a fresh read; what that raises propagates
        return False, None
    if new is None or new == known.get("status"):
        return False, None
    return await _replace(kube, known, new)


async def _replace(kube: Kube, obj: Json, new: Json) -> tuple[bool, Json | None]:
    """Write ``new`` as ``obj``'s status, guarded by its resourceVersion: (True, the object written),
    (True, None) when it is gone, (False, None) on a 409 (it changed since ``obj`` was read)."""
    try:
        return True, await kube.replace_status({**obj, "status": new})
    except KubeError as exc:
        if exc.status == 404:
            return True, None
        if exc.status != 409:
            raise
    return False, None
