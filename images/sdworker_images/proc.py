"""The only place in ``sdworker_images`` that starts child processes (mkfs.ext4, debugfs, git, pip...).

Keeping it in one module keeps the rules in one place: commands are argument lists (never a shell), output
goes to temporary files (a chatty child cannot fill a pipe and hang), a long step can report that it is still
alive, and a failure becomes a ``BuildError`` carrying the command and the tail of its stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sdworker_images.errors import BuildError

_TAIL_LINES = 20


@dataclass(frozen=True)
class Completed:
    """A finished command: its exit status and its output, decoded leniently."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class CommandError(BuildError):
    """A command exited non-zero or could not be started."""

    def __init__(self, message: str, result: Completed | None = None) -> None:
        super().__init__(message)
        self.result = result


def require(tool: str, package: str) -> str:
    """The path of ``tool`` on PATH (or in /usr/sbin, /sbin), else a BuildError naming its package."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(tool, path=search)
    if not found:
        raise BuildError(f"{tool} not found: install {package}")
    return found


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
    heartbeat: Callable[[float], None] | None = None,
    heartbeat_seconds: float = 2.0,
) -> Completed:
    """Run ``argv`` to completion; ``env`` is added to (not substituted for) this process's environment.

    ``heartbeat`` is called with the elapsed seconds every ``heartbeat_seconds`` while the command runs, for
    progress on long steps. With ``check`` a non-zero exit raises CommandError with the stderr tail.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            child = subprocess.Popen(
                list(argv), cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        except OSError as exc:
            raise CommandError(f"{argv[0]}: cannot start: {exc}") from exc
        try:
            returncode = _wait(child, start, timeout, heartbeat, heartbeat_seconds)
        except BaseException:
            child.kill()
            child.wait()
            raise
        out.seek(0)
        err.seek(0)
        result = Completed(
            tuple(argv),
            returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            time.monotonic() - start,
        )
    if check and result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-_TAIL_LINES:])
        raise CommandError(f"{Path(argv[0]).name} exited with status {result.returncode}: {tail}", result)
    return result


def _wait(
    child: subprocess.Popen[bytes],
    start: float,
    timeout: float | None,
    heartbeat: Callable[[float], None] | None,
    every: float,
) -> int:
    while True:
        try:
            return child.wait(timeout=every)
        except subprocess.TimeoutExpired:
            elapsed = time.monotonic() - start
            if timeout is not None and elapsed > timeout:
                raise CommandError(f"{child.args!r} still running after {timeout:.0f}s") from None
            if heartbeat:
                heartbeat(elapsed)
