"""Inside a pod's namespaces: the pod sandbox ("pause") and the start of one container.

Run as ``python -m sdworker_tools.podrunner.sandbox pause|container CONFIG.json`` by the pod runner, as root,
never imported by it. Everything is done with mount(2) and friends through ctypes, so nothing here starts a
program: the one exception is the final ``execve`` of the container's own command.

``pause`` runs as PID 1 of the pod's new PID, mount, network and UTS namespaces (``unshare`` made them):
it names the host, brings loopback up (the only interface: nothing outside the pod is reachable), mounts a
private tmpfs over the pod's state directory with one directory per volume (a bind of the hostPath, a tmpfs
of ``sizeLimit`` for an emptyDir, a tmpfs the runner fills for a Secret) and the base-image layer, then
waits. When it exits the kernel kills every process of the pod and every mount here dies with the namespace.

``container`` enters those namespaces (``nsenter``), takes a mount namespace of its own and builds the
container's root: an overlay of the image layer over the host's ``/`` with a fresh tmpfs as the writable
layer (read-only with ``readOnlyRootFilesystem``), its own /proc, a minimal /dev, the volume mounts at their
``mountPath``s; then it moves into that root, drops to the pod's uid/gid/groups and execs the command.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC = 32, 4096, 8192, 16384
MS_PRIVATE, MS_SLAVE = 1 << 18, 1 << 19
CLONE_NEWNS = 0x00020000
PR_SET_NO_NEW_PRIVS = 38
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_ST_FLAGS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC}
_libc = ctypes.CDLL(None, use_errno=True)
Json = dict[str, Any]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source or fstype} on {target}",
    )


def bind(source: str, target: str, *, read_only: bool = False, propagation: int = MS_PRIVATE) -> None:
    mount(source, target, None, MS_BIND | MS_REC)
    mount(None, target, None, MS_REC | propagation)
    if read_only:
        # A bind remount keeps the source's nosuid/nodev/noexec only if they are passed again.
        kept = sum(flag for st, flag in _ST_FLAGS.items() if os.statvfs(target).f_flag & st)
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept)


def _touch(path: Path, *, directory: bool, mode: int = 0o755) -> None:
    if path.exists() or path.is_symlink():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        path.mkdir(mode=mode)
    else:
        path.touch(mode=0o644)


def in_root(root: Path, path: str) -> Path:
    """``path`` resolved inside ``root`` as if ``root`` were ``/``: symlinks on the way (``/var/run`` ->
    ``/run``) are followed within the root, never out to the host (runc's securejoin does the same)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current = root
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise OSError(40, f"too many levels of symbolic links in {path}")
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            if target.startswith("/"):
                current = root
            continue
        current = candidate
    return current


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))


def _opaque(path: Path, mode: int, owner: tuple[int, int] = (0, 0)) -> None:
    """An empty directory in the image layer that hides the host's one below it in the overlay."""
    path.mkdir(parents=True, exist_ok=True)
    os.setxattr(path, "trusted.overlay.opaque", b"y")
    os.chown(path, *owner)
    path.chmod(mode)


def _image_layer(layer: Path, image: Json, hostname: str) -> None:
    """The files the base image has and the host lacks, as the top lower layer of every container root."""
    for rel in image["python_files"]:
        _touch(layer / rel.lstrip("/"), directory=False)
    for rel in image["python_dirs"]:
        _touch(layer / rel.lstrip("/"), directory=True)
    _opaque(layer / "tmp", 0o1777)
    _opaque(layer / "var" / "tmp", 0o1777)
    _opaque(layer / "root", 0o700)
    _opaque(layer / "run", 0o755)  # also hides the runner's own state under /run
    _opaque(layer / "home", 0o755)
    for login in image["logins"]:
        home = layer / login["home"].lstrip("/")
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, login["uid"], login["gid"])
        home.chmod(0o750)  # useradd --create-home (HOME_MODE of Ubuntu 22.04's login.defs)
    workdir = layer / image["workdir"].lstrip("/")
    workdir.mkdir(parents=True, exist_ok=True)
    etc = layer / "etc"
    etc.mkdir(exist_ok=True)
    passwd = Path("/etc/passwd").read_text() + "".join(
        f"{u['name']}:x:{u['uid']}:{u['gid']}::{u['home']}:{u['shell']}\n" for u in image["logins"]
    )
    group = Path("/etc/group").read_text() + "".join(f"{u['name']}:x:{u['gid']}:\n" for u in image["logins"])
    (etc / "passwd").write_text(passwd)
    (etc / "group").write_text(group)
    (etc / "hostname").write_text(hostname + "\n")
    (etc / "hosts").write_text(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    (etc / "resolv.conf").write_text(image["resolv_conf"])
    for path in (etc / "passwd", etc / "group", etc / "hostname", etc / "hosts", etc / "resolv.conf"):
        path.chmod(0o644)


def pause(config: Json) -> None:
    state = Path(config["state"])
    socket.sethostname(config["hostname"])
    _loopback_up()
    mount("tmpfs", str(state), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")
    for volume in config["volumes"]:
        target = state / "volumes" / volume["name"]
        kind = volume["kind"]
        if kind == "hostPath":
            _touch(target, directory=not volume["file"])
            bind(volume["source"], str(target), propagation=MS_SLAVE)
        elif kind == "emptyDir":
            target.mkdir(parents=True)
            size = f",size={volume['size']}" if volume.get("size") else ""
            mount("tmpfs", str(target), "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0777{size}")
        else:  # secret: a memory-backed directory the runner fills (the kubelet's tmpfs for Secrets)
            target.mkdir(parents=True)
            mount("tmpfs", str(target), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    shm = state / "shm"
    shm.mkdir()
    mount("shm", str(shm), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=64m")
    layer = state / "image"
    layer.mkdir()
    _image_layer(layer, config["image"], config["hostname"])
    (state / "env").mkdir(mode=0o700)
    (state / "containers").mkdir()
    (state / "ready").write_text(str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:  # PID 1 of the pod: reap orphans until told to stop
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(1)


def _make_path(root: Path, path: str, *, directory: bool) -> Path:
    """Create ``path`` inside ``root`` (a mount point or working directory), one component at a time so that
    no symlink leads a mkdir out of the root."""
    parts = [p for p in path.split("/") if p]
    for i in range(1, len(parts)):
        parent = in_root(root, "/".join(parts[:i]))
        if not parent.exists():
            parent.mkdir(mode=0o755)
    target = in_root(root, path)
    if not target.exists():
        if directory:
            target.mkdir(mode=0o755)
        else:
            target.touch(mode=0o644)
    return target


def _dev(dev: Path, shm: str) -> None:
    """A minimal /dev as container runtimes make it (null, zero, full, random, urandom, tty, shm)."""
    mount("tmpfs", str(dev), "tmpfs", MS_NOSUID, "mode=0755,size=64k")
    for node in ("null", "zero", "full", "random", "urandom", "tty"):
        (dev / node).touch()
        mount(f"/dev/{node}", str(dev / node), None, MS_BIND)
    (dev / "shm").mkdir()
    mount(shm, str(dev / "shm"), None, MS_BIND)
    (dev / "pts").mkdir()
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        (dev / name).symlink_to(target)


def container(config: Json) -> None:
    state = Path(config["state"])
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount(None, "/", None, MS_REC | MS_SLAVE)
    base = state / "containers" / config["id"]
    layer, root = base / "layer", base / "root"
    layer.mkdir(parents=True)
    root.mkdir()
    mount("tmpfs", str(layer), "tmpfs", 0, "mode=0755")
    (layer / "upper").mkdir()
    (layer / "work").mkdir()
    mount(
        "overlay",
        str(root),
        "overlay",
        0,
        f"lowerdir={state / 'image'}:/,upperdir={layer / 'upper'},workdir={layer / 'work'}",
    )
    for source, target in config["image"]["python_binds"]:
        mount(source, str(in_root(root, target)), None, MS_BIND)
    mount("proc", str(root / "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _dev(root / "dev", str(state / "shm"))
    mount("/sys", str(root / "sys"), None, MS_BIND | MS_REC)
    mount(None, str(root / "sys"), None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for m in sorted(config["mounts"], key=lambda m: m["path"].count("/")):
        source = state / "volumes" / m["volume"]
        if m.get("sub_path"):
            source = in_root(source, m["sub_path"])
            _touch(source, directory=True)
        target = _make_path(root, m["path"], directory=source.is_dir())
        propagation = MS_SLAVE if m.get("propagation") == "HostToContainer" else MS_PRIVATE
        bind(str(source), str(target), read_only=bool(m.get("read_only")), propagation=propagation)
    _make_path(root, config["cwd"], directory=True)  # runc creates a missing working directory
    if config["read_only_root"]:
        mount(None, str(root), None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    env_file = state / "env" / f"{config['id']}.json"
    env: dict[str, str] = json.loads(env_file.read_text())
    env_file.unlink()
    os.chdir(root)
    mount(str(root), "/", None, MS_MOVE)
    os.chroot(".")
    os.setgroups(config["groups"])
    os.setgid(config["gid"])
    os.setuid(config["uid"])
    if config["no_new_privs"]:
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    try:
        os.chdir(config["cwd"])
    except OSError as exc:
        print(f"chdir to cwd ({config['cwd']!r}) set in config.json failed: {exc.strerror}", file=sys.stderr)
        os._exit(128)
    argv = config["argv"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        reason = "executable file not found in $PATH" if exc.errno == 2 else exc.strerror
        print(f'exec: "{argv[0]}": {reason}', file=sys.stderr)
        os._exit(128)


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    config = json.loads(Path(path).read_text())
    if mode == "pause":
        pause(config)
    elif mode == "container":
        container(config)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
