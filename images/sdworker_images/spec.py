"""``runtime.yaml``: the declarative description of a runtime disk, loaded into typed, validated objects.

A spec names everything that goes onto the disk and pins it: the interpreter the venv is built against (which
the base image must provide at the same path), a pip lock installed with ``--require-hashes``, the
stable-diffusion-webui repository and the repositories and extensions it would otherwise clone at start-up,
each at a ref, model and extra files each with a sha256, and the Hugging Face files webui asks transformers
for at model load (``huggingface:``: a repository at a 40-hex commit, each file with its sha256), laid out
as a hub cache. This module only parses and checks the document;
it reads no file the document points at and fetches nothing. Every problem is reported with its field path
(``runtime.yaml: models[0].sha256: required``), all of them at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from sdworker import runtime_layout as layout
from sdworker_content.index import RESERVED_ROOT_NAMES, path_problem
from sdworker_images.errors import SpecError
from sdworker_images.fields import Fields

API_VERSION: Final = "sdworker.dev/v1alpha1"
KIND: Final = "RuntimeImage"

# Where each part lands in the runtime tree: the pod contract, shared with the operator's renderer.
VENV_DIR: Final = layout.VENV_DIR
WEBUI_DIR: Final = layout.WEBUI_DIR
REPOSITORIES_DIR: Final = layout.REPOSITORIES_DIR
# Not stable-diffusion-webui/extensions: with --data-dir /data webui looks for those under /data/extensions.
EXTENSIONS_DIR: Final = layout.EXTENSIONS_BUILTIN_DIR
HF_ENDPOINT: Final = "https://huggingface.co"

NAME_MAX: Final = 50
_RFC1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_GIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_HF_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_PY_VERSION = re.compile(r"3\.(\d+)(\.\d+)?")
_URL_SCHEMES: Final = ("https://", "http://", "file:")


def builder_path_problem(path: str) -> str | None:
    """Why the builder cannot put a file at ``path`` (relative to the runtime root), or None."""
    problem = path_problem(path)
    if problem:
        return problem
    if path.split("/")[0] in RESERVED_ROOT_NAMES:
        return f"{path.split('/')[0]} is reserved at the runtime root"
    if '"' in path or "\\" in path:
        # debugfs, which normalises inode times in the image, cannot quote these.
        return "'\"' and '\\' are not supported in names"
    return None


@dataclass(frozen=True)
class PythonSpec:
    """The interpreter the venv links to: the base image must have this exact file, at this version."""

    version: str
    path: str

    @property
    def minor(self) -> str:
        """``3.10`` for ``3.10`` and ``3.10.12``."""
        return ".".join(self.version.split(".")[:2])

    def accepts(self, version: str) -> bool:
        """Whether a venv made by Python ``version`` (``3.10.12``) fits: same minor, same patch if pinned."""
        if self.version.count(".") == 2:
            return version == self.version
        return version == self.minor or version.startswith(self.minor + ".")


@dataclass(frozen=True)
class PipSpec:
    """A hashed requirements lock (``pip install --require-hashes -r lock``) and where to find wheels."""

    lock: str
    index_url: str | None
    extra_index_urls: tuple[str, ...]


@dataclass(frozen=True)
class GitSpec:
    """A repository checked out at ``ref`` (tag, branch or commit) into ``dest`` (no ``.git``)."""

    name: str
    repo: str
    ref: str
    commit: str | None
    dest: str
    where: str


@dataclass(frozen=True)
class FileSpec:
    """A file placed at ``path``: downloaded from ``url`` or copied from ``source``; always sha256-checked."""

    path: str
    sha256: str
    url: str | None
    source: str | None
    executable: bool
    where: str


@dataclass(frozen=True)
class HFFile:
    """One file of a Hugging Face repository, by its path in the repository and the sha256 of its bytes."""

    path: str
    sha256: str
    where: str


@dataclass(frozen=True)
class HFRepo:
    """A Hugging Face model repository at one commit, cached under ``huggingface/hub`` as huggingface_hub
    lays a cache out: ``blobs/<sha256>`` (the bytes), ``snapshots/<revision>/<path>`` (relative links to the
    blobs) and ``refs/main`` (the revision), so ``from_pretrained(repo)`` finds it offline."""

    repo: str
    revision: str
    files: tuple[HFFile, ...]
    where: str

    @property
    def cache_dir(self) -> str:
        return f"{layout.HF_HUB_DIR}/{layout.hf_repo_dir(self.repo)}"

    def blob_path(self, sha256: str) -> str:
        return f"{self.cache_dir}/blobs/{sha256}"

    def snapshot_path(self, path: str) -> str:
        return f"{self.cache_dir}/snapshots/{self.revision}/{path}"

    @property
    def ref_path(self) -> str:
        return f"{self.cache_dir}/refs/main"

    def blob_link(self, path: str, sha256: str) -> str:
        """The relative target of ``snapshot_path(path)``: up to the repository folder, then the blob."""
        depth = 2 + path.count("/")  # snapshots/<revision>/ plus the file's own folders
        return "../" * depth + f"blobs/{sha256}"

    def declared_files(self) -> tuple[FileSpec, ...]:
        """One declared file per distinct blob, downloaded from the Hub at the pinned revision."""
        seen: dict[str, FileSpec] = {}
        for f in self.files:
            if f.sha256 not in seen:
                url = f"{HF_ENDPOINT}/{self.repo}/resolve/{self.revision}/{f.path}"
                seen[f.sha256] = FileSpec(self.blob_path(f.sha256), f.sha256, url, None, False, f.where)
        return tuple(seen.values())


@dataclass(frozen=True)
class ImageSpec:
    family: str | None
    size_gb: int | None


@dataclass(frozen=True)
class RuntimeSpec:
    """A loaded ``runtime.yaml``. ``document`` is the YAML as written (it goes into the content index)."""

    name: str
    python: PythonSpec
    pip: PipSpec | None
    webui: GitSpec | None
    repositories: tuple[GitSpec, ...]
    extensions: tuple[GitSpec, ...]
    models: tuple[FileSpec, ...]
    files: tuple[FileSpec, ...]
    image: ImageSpec
    base_dir: Path
    document: Mapping[str, Any]
    huggingface: tuple[HFRepo, ...] = ()

    @property
    def declared_files(self) -> tuple[FileSpec, ...]:
        return self.models + self.files + tuple(f for r in self.huggingface for f in r.declared_files())

    @property
    def git_sources(self) -> tuple[GitSpec, ...]:
        return ((self.webui,) if self.webui else ()) + self.repositories + self.extensions

    def resolve(self, relative: str) -> Path:
        """A path written in the spec (a lock, a ``source``), relative to the spec's directory."""
        return (self.base_dir / relative).resolve()


def load(path: Path) -> RuntimeSpec:
    """Read and validate ``path``; SpecError listing every problem, one per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse(text, name=str(path), base_dir=path.resolve().parent)


def parse(text: str, *, name: str = "runtime.yaml", base_dir: Path | None = None) -> RuntimeSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{name}: not valid YAML: {exc}") from exc
    errors: list[str] = []
    root = Fields(data, "", errors)
    spec = _read_spec(root, base_dir or Path.cwd())
    if errors or spec is None:
        raise SpecError("\n".join(f"{name}: {e}" for e in errors or ["not a valid runtime spec"]))
    return spec


def _read_spec(root: Fields, base_dir: Path) -> RuntimeSpec | None:
    if not root.valid:
        return None
    api_version = root.string("apiVersion")
    if api_version is not None and api_version != API_VERSION:
        root.error("apiVersion", f"must be {API_VERSION}")
    kind = root.string("kind")
    if kind is not None and kind != KIND:
        root.error("kind", f"must be {KIND}")
    metadata = root.mapping("metadata")
    name = None
    if metadata is not None:
        name = metadata.string("name", pattern=_RFC1035, max_len=NAME_MAX, hint="an RFC 1035 label")
        metadata.reject_unknown()
    python = _read_python(root.mapping("python"))
    pip = _read_pip(root.mapping("pip", required=False))
    webui_fields = root.mapping("webui", required=False)
    webui = _read_git(webui_fields, WEBUI_DIR, with_name=False) if webui_fields else None
    repositories = tuple(
        _read_git(item, f"{REPOSITORIES_DIR}/{{name}}", with_name=True) for item in root.items("repositories")
    )
    extension_items = root.items("extensions")
    extensions = tuple(
        _read_git(item, f"{EXTENSIONS_DIR}/{{name}}", with_name=True) for item in extension_items
    )
    for item, extension in zip(extension_items, extensions, strict=True):
        if extension is not None and extension.name == layout.BUILTIN_EXTENSION_NAME:
            item.error("name", f"{extension.name!r} is reserved for the built-in sdworker extension")
    models = tuple(_read_file(item) for item in root.items("models"))
    files = tuple(_read_file(item) for item in root.items("files"))
    huggingface = tuple(_read_hf_repo(item) for item in root.items("huggingface"))
    image = _read_image(root.mapping("image", required=False))
    root.reject_unknown()
    hf_files = [f for r in huggingface if r for f in r.declared_files()]
    _check_overlaps(root, [g for g in (webui, *repositories, *extensions) if g], [*models, *files, *hf_files])
    _check_hf_repos(root, [r for r in huggingface if r])
    if name is None or python is None or None in repositories or None in extensions:
        return None
    if None in models or None in files or None in huggingface:
        return None
    return RuntimeSpec(
        name=name,
        python=python,
        pip=pip,
        webui=webui,
        repositories=tuple(r for r in repositories if r),
        extensions=tuple(e for e in extensions if e),
        models=tuple(m for m in models if m),
        files=tuple(f for f in files if f),
        image=image,
        base_dir=base_dir,
        document=root.data,
        huggingface=tuple(r for r in huggingface if r),
    )


def _read_python(fields: Fields | None) -> PythonSpec | None:
    if fields is None:
        return None
    raw_version = fields.data.get("version")
    if isinstance(raw_version, float):
        fields.read.add("version")
        fields.error("version", f'write it as a string ("3.10"): YAML reads {raw_version} as a number')
        version = None
    else:
        version = fields.string("version", pattern=_PY_VERSION, hint='"3.10" or "3.10.12"')
    path = fields.string("path")
    fields.reject_unknown()
    if path is not None:
        if not path.startswith("/") or os.path.normpath(path) != path:
            fields.error("path", f"{path!r} must be an absolute, normalised path (e.g. /usr/bin/python3.10)")
            path = None
        elif not Path(path).name.startswith("python"):
            fields.error("path", f"{path!r} does not name a python interpreter")
            path = None
    if version is None or path is None:
        return None
    spec = PythonSpec(version=version, path=path)
    named = re.fullmatch(r"python(3\.\d+)", Path(path).name)
    if named and named.group(1) != spec.minor:
        fields.error("path", f"{path} is Python {named.group(1)} but python.version is {version}")
        return None
    return spec


def _read_pip(fields: Fields | None) -> PipSpec | None:
    if fields is None:
        return None
    lock = fields.string("lock")
    index_url = fields.string("indexUrl", required=False)
    extra = fields.string_list("extraIndexUrls")
    fields.reject_unknown()
    if lock is None:
        return None
    return PipSpec(lock=lock, index_url=index_url, extra_index_urls=tuple(extra))


def _read_git(fields: Fields, dest_pattern: str, *, with_name: bool) -> GitSpec | None:
    name = (
        fields.string("name", pattern=_GIT_NAME, hint="letters, digits, '.', '_', '-'") if with_name else ""
    )
    repo = fields.string("repo")
    ref = fields.string("ref")
    commit = fields.string("commit", required=False, pattern=_COMMIT, hint="40 lower-case hex digits")
    fields.reject_unknown()
    if name is None or repo is None or ref is None:
        return None
    if ref.startswith("-") or any(c.isspace() for c in ref):
        fields.error("ref", f"{ref!r} is not a git ref")
        return None
    return GitSpec(
        name=name or WEBUI_DIR,
        repo=repo,
        ref=ref,
        commit=commit,
        dest=dest_pattern.format(name=name),
        where=fields.where,
    )


def _read_file(fields: Fields) -> FileSpec | None:
    path = fields.string("path")
    sha256 = fields.string("sha256", pattern=_SHA256, hint="64 hex digits")
    url = fields.string("url", required=False)
    source = fields.string("source", required=False)
    executable = fields.boolean("executable", default=False)
    fields.reject_unknown()
    if path is not None and (problem := builder_path_problem(path)):
        fields.error("path", f"{path!r}: {problem}")
        path = None
    if url is not None and not url.startswith(_URL_SCHEMES):
        fields.error("url", f"{url!r} must start with https://, http:// or file:")
        url = None
    if url is not None and source is not None:
        fields.error("source", "give url or source, not both")
        return None
    if fields.valid and "url" not in fields.data and "source" not in fields.data:
        fields.error("url", "required (or source: a local file, relative to runtime.yaml)")
    if path is None or sha256 is None or (url is None and source is None):
        return None
    return FileSpec(
        path=path,
        sha256=sha256.lower(),
        url=url,
        source=source,
        executable=executable,
        where=fields.where,
    )


def _read_hf_repo(fields: Fields) -> HFRepo | None:
    repo = fields.string("repo", pattern=_HF_REPO, hint="ORG/NAME, as on huggingface.co")
    revision = fields.string("revision", pattern=_COMMIT, hint="the repository's 40-hex commit")
    items = fields.items("files")
    if fields.valid and "files" in fields.data and not items:
        fields.error("files", "must list at least one file")
    files: list[HFFile | None] = []
    for item in items:
        path = item.string("path")
        sha256 = item.string("sha256", pattern=_SHA256, hint="64 hex digits")
        item.reject_unknown()
        if path is not None and (problem := path_problem(path)):
            item.error("path", f"{path!r}: {problem}")
            path = None
        files.append(HFFile(path, sha256.lower(), item.where) if path and sha256 else None)
    fields.reject_unknown()
    if repo is None or revision is None or not files or None in files:
        return None
    return HFRepo(repo=repo, revision=revision, files=tuple(f for f in files if f), where=fields.where)


def _check_hf_repos(root: Fields, repos: list[HFRepo]) -> None:
    seen: dict[str, str] = {}
    for repo in repos:
        if repo.repo in seen:
            root.errors.append(f"{repo.where}.repo: {repo.repo} is also declared by {seen[repo.repo]}")
        seen[repo.repo] = repo.where
        paths: set[str] = set()
        for f in repo.files:
            if f.path in paths:
                root.errors.append(f"{f.where}.path: {f.path} is listed twice")
            paths.add(f.path)


def _read_image(fields: Fields | None) -> ImageSpec:
    if fields is None:
        return ImageSpec(family=None, size_gb=None)
    family = fields.string("family", required=False, pattern=_RFC1035, max_len=63, hint="an RFC 1035 label")
    size_gb = fields.integer("sizeGb", minimum=1, maximum=65536)
    fields.reject_unknown()
    return ImageSpec(family=family, size_gb=size_gb)


def _check_overlaps(root: Fields, gits: list[GitSpec | None], files: list[FileSpec | None]) -> None:
    seen: dict[str, str] = {}
    for git in gits:
        if git and git.dest in seen:
            root.errors.append(f"{git.where}: {git.dest} is also checked out by {seen[git.dest]}")
        elif git:
            seen[git.dest] = git.where
    paths: dict[str, str] = {}
    for item in files:
        if item is None:
            continue
        if item.path in paths:
            root.errors.append(f"{item.where}.path: {item.path} is also declared by {paths[item.path]}")
        paths[item.path] = item.where
        if item.path == VENV_DIR or item.path.startswith(VENV_DIR + "/"):
            root.errors.append(f"{item.where}.path: {item.path} is inside the venv, which pip owns")
