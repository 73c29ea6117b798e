"""The validation rules a schema cannot express, shared by the SDWorker and RuntimeDisk parsers.

Structure comes from the CRD schema (``sdworker.api.schema``). What is left is written by hand: the CRDs'
CEL rules (``x-kubernetes-validations``, which Python cannot evaluate; each function names its rule) and
semantic checks the node agent and the renderer rely on. Each message is the CEL rule's own, from
``sdworker.api.constants``, so a ``Degraded`` condition reads like the ``kubectl apply`` error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from sdworker.api import constants as c
from sdworker.api.schema import FieldError

LABEL_KEY_NAME_RE: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
LABEL_KEY_MAX: Final = 317
LABEL_NAME_MAX: Final = 63


def flag_matches(arg: str, family: Sequence[str]) -> bool:
    """Whether ``arg`` sets one of ``family``, counting ``--flag=value`` and argparse abbreviations.

    webui parses its flags with argparse, which accepts any unambiguous prefix of a long option, so
    ``--api-a user:pw`` sets ``--api-auth``. Exact webui flags that happen to be prefixes (``--api``) are
    exempt because argparse prefers an exact match. The CRD's CEL rules implement the same test.
    """
    if not arg.startswith("--"):
        return False
    name = arg.split("=", 1)[0]
    if len(name) <= 2 or name in c.PREFIX_SAFE_FLAGS:
        return False
    return any(flag.startswith(name) for flag in family)


def prefetch_problem(entry: str) -> str | None:
    """Why a prefetch entry is unsafe, or None. The agent reads these paths relative to the mount.

    The three CEL rules on ``prefetch`` items (``self.size() > 0``, ``!self.startsWith('/')``, no ``..``
    segment), in their order.
    """
    if not entry:
        return c.MESSAGE_PREFETCH_EMPTY
    if entry.startswith("/"):
        return c.MESSAGE_PREFETCH_ABSOLUTE
    if entry == ".." or entry.startswith("../") or entry.endswith("/..") or "/../" in entry:
        return c.MESSAGE_PREFETCH_DOTDOT
    return None


def prefetch_errors(entries: Sequence[str], path: str) -> list[FieldError]:
    return [
        FieldError(f"{path}[{i}]", problem)
        for i, entry in enumerate(entries)
        if (problem := prefetch_problem(entry)) is not None
    ]


def shared_disk_type_errors(disk_type: str, mode: str, path: str) -> list[FieldError]:
    """CEL ``!has(mode) || mode != 'SharedReadOnly' || !has(diskType) || diskType in [...]``.

    SharedReadOnly needs a disk type GCE can attach read-only to many VMs.
    """
    if mode == "SharedReadOnly" and disk_type not in c.SHARED_READ_ONLY_DISK_TYPES:
        return [FieldError(path, c.MESSAGE_SHARED_DISK_TYPE)]
    return []


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid label key (``[prefix/]name``), or None.

    Not a CRD rule (the schema cannot constrain map keys); the Deployment the renderer writes would be
    refused with this, so it is refused here, where the user sees which SDWorker field is wrong.
    """
    prefix, _, name = key.rpartition("/")
    if len(key) > LABEL_KEY_MAX:
        return f"must be no more than {LABEL_KEY_MAX} characters"
    if prefix and not re.fullmatch(c.DNS1123_SUBDOMAIN_PATTERN, prefix):
        return "prefix part must be a lower-case DNS subdomain"
    if not name or len(name) > LABEL_NAME_MAX or not LABEL_KEY_NAME_RE.fullmatch(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', start and end with an "
            "alphanumeric character, and be at most 63 characters"
        )
    return None
