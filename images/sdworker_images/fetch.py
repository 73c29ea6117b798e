"""Everything a spec build fetches from the network: git checkouts, the pip-installed venv, model downloads.

Kept apart from the rest of the builder so that all of it but this module runs offline (``--from-dir``), and
so that each way bytes enter a runtime is visible in one place, each with its integrity check:

* ``download``: HTTP(S) streamed to disk with sha256 computed on the fly; a mismatch deletes the file;
* ``git_export``: a shallow fetch of one ref, exported with ``git archive`` (no ``.git``: its index and
  pack files differ between clones), the resolved commit returned and checked against a pinned one;
* ``create_venv`` / ``pip_install``: a venv made by the very interpreter the base image ships, packages
  installed with ``--require-hashes`` from a lock (pip refuses any file whose hash the lock lacks).

The test suite never runs this module: the build machines have no route to GitHub or Hugging Face.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Final

from sdworker_images import proc
from sdworker_images.errors import BuildError
from sdworker_images.spec import GitSpec, PipSpec, PythonSpec

_CHUNK: Final = 1 << 20
TIMEOUT_SECONDS: Final = 60.0
# Hugging Face serves gated models only with a token; it is sent to huggingface.co hosts only.
HF_TOKEN_ENV: Final = "HF_TOKEN"


def download(
    url: str,
    dest: Path,
    sha256: str,
    on_bytes: Callable[[int, int | None], None] | None = None,
) -> None:
    """Fetch ``url`` to ``dest``, checking sha256 while streaming; ``on_bytes(done, total)`` reports."""
    partial = dest.with_name(dest.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "sdworker-images"})
    host = urllib.parse.urlsplit(url).hostname or ""
    token = os.environ.get(HF_TOKEN_ENV)
    if token and (host == "huggingface.co" or host.endswith(".huggingface.co")):
        request.add_header("Authorization", f"Bearer {token}")
    digest = hashlib.sha256()
    done = 0
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response, partial.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if on_bytes:
                    on_bytes(done, total)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BuildError(f"download of {url} failed after {done} bytes: {exc}") from exc
    actual = digest.hexdigest()
    if actual != sha256:
        partial.unlink(missing_ok=True)
        raise BuildError(f"download of {url}: sha256 mismatch: expected {sha256}, got {actual}")
    partial.replace(dest)


def git_export(source: GitSpec, dest: Path, work: Path) -> str:
    """Check out ``source.ref`` of ``source.repo`` into ``dest`` without ``.git``; returns the commit."""
    git = proc.require("git", "git")
    with tempfile.TemporaryDirectory(prefix="sdworker-git-", dir=work) as scratch:
        repo = Path(scratch) / "repo"
        env = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        proc.run([git, "init", "-q", str(repo)], env=env)
        proc.run([git, "-C", str(repo), "remote", "add", "origin", source.repo], env=env)
        # One ref, depth 1: GitHub serves tags, branches and full commit ids this way.
        proc.run(
            [git, "-C", str(repo), "fetch", "-q", "--depth=1", "origin", source.ref], env=env, timeout=1800
        )
        commit = proc.run([git, "-C", str(repo), "rev-parse", "FETCH_HEAD^{commit}"], env=env).stdout.strip()
        if source.commit and commit != source.commit:
            raise BuildError(
                f"{source.where}: ref {source.ref} of {source.repo} is {commit}, "
                f"not the pinned {source.commit}"
            )
        archive = Path(scratch) / "tree.tar"
        proc.run([git, "-C", str(repo), "archive", "--format=tar", "-o", str(archive), commit], env=env)
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    return commit


def create_venv(python: PythonSpec, venv: Path) -> None:
    """``<python.path> -m venv``: the venv must be made by the interpreter the base image provides."""
    interpreter = Path(python.path)
    if not interpreter.exists():
        raise BuildError(
            f"python.path {python.path} does not exist on this machine: build in the builder image "
            "(images/Dockerfile.builder: the base image plus python3.10-venv, git and e2fsprogs), or on "
            "another machine with the same interpreter at the same path"
        )
    proc.run([python.path, "-m", "venv", str(venv)])
    version = proc.run(
        [str(venv / "bin" / "python"), "-c", "import platform; print(platform.python_version())"]
    )
    if not python.accepts(version.stdout.strip()):
        raise BuildError(
            f"{python.path} is Python {version.stdout.strip()}, runtime.yaml says {python.version}"
        )


def pip_install(venv: Path, lock: Path, pip: PipSpec, on_tick: Callable[[float], None] | None = None) -> None:
    """Install ``lock`` into ``venv`` with hashes required, no bytecode (compiled later, hash-based)."""
    if not lock.is_file():
        raise BuildError(
            f"pip.lock {lock} does not exist: compile it with hashes, e.g. "
            "`pip-compile --generate-hashes -o runtime-requirements.lock runtime-requirements.in`"
        )
    argv = [str(venv / "bin" / "python"), "-m", "pip", "install", "--require-hashes", "--no-compile"]
    argv += ["--no-cache-dir", "--disable-pip-version-check", "--no-input", "-r", str(lock)]
    if pip.index_url:
        argv += ["--index-url", pip.index_url]
    for url in pip.extra_index_urls:
        argv += ["--extra-index-url", url]
    proc.run(argv, env={"PIP_NO_INPUT": "1"}, heartbeat=on_tick, timeout=6 * 3600)


def remove_pip(venv: Path) -> None:
    """Uninstall pip from the finished venv: pods never install anything (--skip-install), and ensurepip's
    copy comes with timestamp pycs listed in its RECORD, which would differ from build to build.
    """
    proc.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "--yes", "--no-input", "pip"])


def compile_bytecode(venv: Path, tree: Path, dirs: list[str], runtime_prefix: str) -> None:
    """Compile every module to an unchecked-hash pyc naming its path in the pod (``runtime_prefix``/...).

    On the read-only disk Python cannot write pycs, so without these every pod start recompiles everything;
    unchecked-hash pycs are valid whatever the file times are and are never re-validated.
    """
    argv = [str(venv / "bin" / "python"), "-m", "compileall", "-q", "-f", "-j", "0"]
    argv += ["--invalidation-mode", "unchecked-hash", "-s", str(tree), "-p", runtime_prefix]
    argv += [str(tree / d) for d in dirs]
    # Some repositories carry files that are not valid Python 3 (templates, samples): compileall reports
    # them and exits 1; every other file is still compiled, which is what matters.
    proc.run(argv, check=False, env={"PYTHONHASHSEED": "0"})
