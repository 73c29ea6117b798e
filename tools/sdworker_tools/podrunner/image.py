"""What the SD pods' base image provides, read from ``images/Dockerfile.base`` itself.

The pod runner runs containers without an image store, so it emulates the base image; the facts that a
pod spec relies on (``USER``, ``WORKDIR``, ``ENV``, the login created by ``useradd`` and the interpreter
path ``SDWORKER_PYTHON``) are parsed from the Dockerfile rather than repeated here, so the image and the
pod spec cannot drift apart unseen. Pure: text in, a ``BaseImage`` out.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[3] / "images" / "Dockerfile.base"
# The PATH of the nvidia/cuda:*-ubuntu22.04 parent image (its Dockerfile's ENV PATH), which the base
# image's Dockerfile inherits without restating it.
PARENT_PATH = (
    "/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)


class DockerfileError(ValueError):
    """The Dockerfile lacks, or has an unusable form of, an instruction the pod runner needs."""


@dataclass(frozen=True)
class Login:
    """The account ``useradd`` creates in the image (an /etc/passwd and /etc/group line)."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str


@dataclass(frozen=True)
class BaseImage:
    user: str  # as USER states it ("10001:10001", "10001" or a name)
    workdir: str
    env: dict[str, str] = field(default_factory=dict)
    logins: tuple[Login, ...] = ()

    @property
    def python(self) -> str:
        """The interpreter the runtime disk's venv links to (the image's SDWORKER_PYTHON)."""
        try:
            return self.env["SDWORKER_PYTHON"]
        except KeyError:
            raise DockerfileError("Dockerfile.base sets no ENV SDWORKER_PYTHON") from None

    def uid_gid(self) -> tuple[int | None, int | None]:
        """USER as numbers, ``None`` for a part that is a name (it cannot be checked non-root)."""
        user, _, group = self.user.partition(":")
        uid = int(user) if user.isdigit() else self._login_uid(user)
        gid: int | None
        if group:
            gid = int(group) if group.isdigit() else None
        else:
            # USER without a group: the user's primary group from the image's /etc/passwd, else root's.
            gid = next((login.gid for login in self.logins if login.uid == uid), 0)
        return uid, gid

    def _login_uid(self, name: str) -> int | None:
        return next((login.uid for login in self.logins if login.name == name), None)


def _logical_lines(text: str) -> list[str]:
    """Dockerfile lines with comments dropped and backslash continuations joined."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        lines.append(current)
        current = ""
    if current:
        lines.append(current)
    return lines


def _env_pairs(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if len(words) >= 2 and "=" not in words[0]:  # legacy form: ENV KEY value with spaces
        return {words[0]: " ".join(words[1:])}
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise DockerfileError(f"ENV {args!r}: expected KEY=VALUE pairs")
        pairs[key] = value
    return pairs


_USERADD = re.compile(r"\buseradd\b(?P<args>[^&;|]*)")
_USERADD_OPTS = {
    "--uid": "u",
    "-u": "u",
    "--gid": "g",
    "-g": "g",
    "--home-dir": "h",
    "-d": "h",
    "--shell": "s",
    "-s": "s",
}


def _logins(run: str) -> list[Login]:
    found = []
    for match in _USERADD.finditer(run):
        words = shlex.split(match.group("args"))
        opts: dict[str, str] = {}
        name = ""
        i = 0
        while i < len(words):
            word = words[i]
            if word in _USERADD_OPTS and i + 1 < len(words):
                opts[_USERADD_OPTS[word]] = words[i + 1]
                i += 2
                continue
            if not word.startswith("-"):
                name = word
            i += 1
        if not name or "u" not in opts:
            continue
        uid = int(opts["u"])
        # --user-group: a group named like the user with the same number (useradd's default GID choice).
        gid = int(opts["g"]) if opts.get("g", "").isdigit() else uid
        found.append(Login(name, uid, gid, opts.get("h", f"/home/{name}"), opts.get("s", "/bin/sh")))
    return found


def parse(text: str) -> BaseImage:
    """The final stage's USER, WORKDIR, ENV and useradd logins (Docker defaults where unset)."""
    user, workdir = "0", "/"
    env = {"PATH": PARENT_PATH}
    logins: list[Login] = []
    for line in _logical_lines(text):
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":  # a new stage starts from scratch (the parent's settings as known)
            user, workdir, env, logins = "0", "/", {"PATH": PARENT_PATH}, []
        elif instruction == "USER":
            user = args
        elif instruction == "WORKDIR":
            # A relative WORKDIR is relative to the previous one (Dockerfile reference, WORKDIR).
            workdir = args if args.startswith("/") else f"{workdir.rstrip('/')}/{args}"
        elif instruction == "ENV":
            env.update(_env_pairs(args))
        elif instruction == "RUN":
            logins += _logins(args)
    if not user:
        raise DockerfileError("USER has no value")
    return BaseImage(user=user, workdir=workdir, env=env, logins=tuple(logins))


def load(path: Path = DOCKERFILE) -> BaseImage:
    return parse(path.read_text())
