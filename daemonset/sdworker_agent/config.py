"""The node agent's settings, one frozen object shared by its loop and its bring-up.

``python -m sdworker_agent`` builds it from flags and ``$NODE_NAME`` (``__main__.config_from``); the loop
(``sdworker_agent.agent``) and the bring-up (``sdworker_agent.bringup``) only read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sdworker.api import constants as c
from sdworker.api import naming
from sdworker_agent import prefetch
from sdworker_content.verify import VerifyMode


@dataclass(frozen=True)
class Config:
    node_name: str
    dev_root: str = "/dev"
    host_root: str = "/host"
    mount_root: str = c.MOUNT_ROOT
    device_timeout: float = 120.0
    prefetch_workers: int = prefetch.DEFAULT_WORKERS
    verify_mode: VerifyMode = VerifyMode.STAT
    full_fsck: bool = False
    resync_seconds: float = 60.0
    watch_timeout_seconds: int = 300
    mountinfo_path: str = "/proc/self/mountinfo"

    @property
    def mount_dir(self) -> str:
        """The mount root as the agent sees it (under the host root)."""
        return os.path.join(os.path.normpath(self.host_root), os.path.normpath(self.mount_root).lstrip("/"))

    @property
    def selector(self) -> str:
        return f"{c.LABEL_NODE}={naming.node_label_value(self.node_name)}"
