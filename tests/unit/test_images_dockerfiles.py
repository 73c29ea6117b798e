"""Static checks that keep the Dockerfiles honest: what each image may and may not contain.

The base image must stay a ~2 GB CUDA *runtime* image with the same interpreter, at the same path, as the
runtime disk's venv (examples/runtime.yaml); nothing heavy (PyTorch, webui, models) may creep into it, since
that is exactly what the runtime disk exists to keep out. The builder image is the base image plus every
program the builder runs (read from images/sdworker_images, so a new one fails here until it is installed).
Every image is pinned and names its user.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from sdworker_images import spec

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
DOCKERFILES = sorted(IMAGES.glob("Dockerfile.*"))


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    result = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _args(path: Path, keyword: str) -> list[str]:
    return [rest for kw, rest in _instructions(path) if kw == keyword]


def test_the_four_images_exist() -> None:
    assert [p.name for p in DOCKERFILES] == [
        "Dockerfile.agent",
        "Dockerfile.base",
        "Dockerfile.builder",
        "Dockerfile.operator",
    ]


def test_the_base_image_is_a_cuda_runtime_image_not_devel() -> None:
    (base,) = _args(IMAGES / "Dockerfile.base", "FROM")
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu22\.04", base), base
    assert "devel" not in base
    assert "cudnn" not in base


@pytest.mark.parametrize(
    "forbidden",
    [
        r"pip3? install",
        r"\btorch\b",
        r"xformers",
        r"stable-diffusion-webui",
        r"git clone",
        r"\.safetensors",
        r"\.ckpt",
        r"huggingface",
        r"\bwget\b|\bcurl\b",
        r"build-essential|\bgcc\b",
    ],
)
def test_nothing_heavy_is_installed_in_the_base_image(forbidden: str) -> None:
    for keyword, rest in _instructions(IMAGES / "Dockerfile.base"):
        if keyword in ("RUN", "ADD", "COPY"):
            assert not re.search(forbidden, rest), f"Dockerfile.base {keyword} matches {forbidden!r}: {rest}"


def test_the_base_python_is_the_runtime_spec_python() -> None:
    runtime = spec.load(REPO / "examples" / "runtime.yaml")
    envs = " ".join(_args(IMAGES / "Dockerfile.base", "ENV"))
    match = re.search(r"SDWORKER_PYTHON=(\S+)", envs)
    assert match, "Dockerfile.base must set SDWORKER_PYTHON"
    assert match.group(1) == runtime.python.path
    runs = " ".join(_args(IMAGES / "Dockerfile.base", "RUN"))
    assert re.search(rf"\bpython{re.escape(runtime.python.minor)}\b", runs), "the apt package for that Python"
    assert f"sys.version_info[:2] == ({runtime.python.minor.replace('.', ', ')})" in runs
    labels = " ".join(_args(IMAGES / "Dockerfile.base", "LABEL"))
    assert f'dev.sdworker.python.path="{runtime.python.path}"' in labels


def test_apt_installs_are_minimal_and_leave_no_lists() -> None:
    for path in DOCKERFILES:
        for rest in _args(path, "RUN"):
            if "apt-get install" in rest:
                assert "--no-install-recommends" in rest, path.name
                assert "rm -rf /var/lib/apt/lists/*" in rest, path.name


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_every_base_is_pinned_by_tag(path: Path) -> None:
    for ref in _args(path, "FROM"):
        image = ref.split()[0]
        assert ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image, f"{path.name}: {image} has no tag"
        tag = image.rsplit(":", 1)[-1]
        assert tag != "latest", f"{path.name}: {image} is not pinned"
        assert re.search(r"\d", tag), f"{path.name}: {image} is not pinned to a version"


@pytest.mark.parametrize(
    ("name", "root"),
    [
        ("Dockerfile.base", False),
        ("Dockerfile.builder", False),
        ("Dockerfile.operator", False),
        ("Dockerfile.agent", True),
    ],
)
def test_each_image_declares_its_user(name: str, root: bool) -> None:
    users = _args(IMAGES / name, "USER")
    assert users, f"{name} must say which user it runs as"
    uid = users[-1].split(":")[0]
    if root:
        assert uid in ("0", "root")
        assert "privileged" in (IMAGES / name).read_text(), "why the agent is root must be documented"
    else:
        assert uid.isdigit(), f"{name}: USER {users[-1]} must be numeric (runAsNonRoot checks the uid)"
        assert int(uid) >= 1000, f"{name}: USER {users[-1]}"


@pytest.mark.parametrize("name", ["Dockerfile.operator", "Dockerfile.agent"])
def test_product_images_install_the_wheel_against_the_lock_and_drop_the_test_tools(name: str) -> None:
    runs = " ".join(_args(IMAGES / name, "RUN"))
    assert "pip wheel" in runs
    assert "--constraint /tmp/requirements.lock" in runs
    assert "sdworker_tools" in runs
    assert "find_spec" in runs


# Every program images/sdworker_images starts, and the Ubuntu 22.04 package that provides it.
BUILDER_PACKAGES = {
    "git": "git",
    "mkfs.ext4": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "tar": "tar",
}


def _required_programs() -> set[str]:
    """The first argument of every ``proc.require(...)`` call in the builder's sources."""
    found: set[str] = set()
    for path in sorted((IMAGES / "sdworker_images").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "require"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(str(node.args[0].value))
    return found


def _apt_packages(path: Path) -> set[str]:
    packages: set[str] = set()
    for rest in _args(path, "RUN"):
        for install in re.findall(r"apt-get install ([^&]*)", rest):
            packages |= {word for word in install.split() if not word.startswith("-")}
    return packages


def test_the_builder_image_has_every_program_the_builder_runs() -> None:
    programs = _required_programs()
    assert {"git", "mkfs.ext4"} <= programs, "the scan found the builder's proc.require calls"
    assert programs <= set(BUILDER_PACKAGES), (
        f"map the new program(s) to a package: {programs - set(BUILDER_PACKAGES)}"
    )
    installed = _apt_packages(IMAGES / "Dockerfile.builder")
    for program in sorted(programs):
        assert BUILDER_PACKAGES[program] in installed, (
            f"{program}: apt-get install {BUILDER_PACKAGES[program]}"
        )
    # fetch.create_venv runs `<python.path> -m venv` (ensurepip): Ubuntu splits that into python3.X-venv.
    runtime = spec.load(REPO / "examples" / "runtime.yaml")
    assert f"python{runtime.python.minor}-venv" in installed
    assert "ca-certificates" in installed, "HTTPS downloads"
    # The builder itself needs Python >= 3.11 (pyproject requires-python), which the base image lacks.
    assert "python3.11" in installed
    assert "python3.11-venv" in installed


def test_the_builder_image_is_the_base_image_so_the_venv_links_to_the_pods_python() -> None:
    froms = _args(IMAGES / "Dockerfile.builder", "FROM")
    final = froms[-1].split()[0]
    base_tag = re.search(r"-t (\S*sd-base:\S+)", (IMAGES / "Dockerfile.base").read_text())
    assert base_tag, "Dockerfile.base documents its tag"
    assert base_tag.group(1).endswith(final.rsplit("/", 1)[-1]), (final, base_tag.group(1))
    users = _args(IMAGES / "Dockerfile.builder", "USER")
    assert users[0] == "root", "apt-get needs root"
    assert users[-1] == _args(IMAGES / "Dockerfile.base", "USER")[-1], "then back to the base image's user"


def test_no_doc_claims_the_runtime_can_be_built_in_the_base_image() -> None:
    for doc in (REPO / "README.md", IMAGES / "README.md", REPO / "examples" / "runtime.yaml"):
        text = " ".join(doc.read_text().split())
        assert not re.search(r"(build|run) (it|the runtime)? ?inside the base image", text), doc.name
        assert "Dockerfile.builder" in text, f"{doc.name} points at the builder image"
