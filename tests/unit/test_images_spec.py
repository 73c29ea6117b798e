"""``runtime.yaml`` loading: the example loads, and every mistake is reported with its field path.

Table-driven: each case is a change to a valid document and the line the user must see.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdworker import runtime_layout as layout
from sdworker_images import spec
from sdworker_images.assemble import write_layout
from sdworker_images.errors import SpecError
from sdworker_images.webui_extension import extension_dir

REPO = Path(__file__).resolve().parents[2]
SHA = "ab" * 32

VALID: dict[str, Any] = {
    "apiVersion": "sdworker.dev/v1alpha1",
    "kind": "RuntimeImage",
    "metadata": {"name": "a1111-sd15"},
    "python": {"version": "3.10", "path": "/usr/bin/python3.10"},
    "pip": {"lock": "lock.txt", "extraIndexUrls": ["https://download.pytorch.org/whl/cu121"]},
    "webui": {"repo": "https://github.com/AUTOMATIC1111/stable-diffusion-webui.git", "ref": "v1.10.1"},
    "repositories": [{"name": "BLIP", "repo": "https://github.com/salesforce/BLIP.git", "ref": "48211a1"}],
    "extensions": [{"name": "ext", "repo": "https://example.com/ext.git", "ref": "v1", "commit": "c" * 40}],
    "models": [
        {"path": "models/Stable-diffusion/m.safetensors", "url": "https://example.com/m", "sha256": SHA}
    ],
    "files": [{"path": "stable-diffusion-webui/config.json", "source": "files/config.json", "sha256": SHA}],
    "huggingface": [
        {
            "repo": "openai/clip-vit-large-patch14",
            "revision": "d" * 40,
            "files": [
                {"path": "config.json", "sha256": "c1" * 32},
                {"path": "vocab.json", "sha256": SHA},
                {"path": "tokenizer/same-bytes.json", "sha256": SHA},
            ],
        }
    ],
    "image": {"family": "sd-runtime", "sizeGb": 20},
}
HUB = "huggingface/hub/models--openai--clip-vit-large-patch14"


def _with(path: str, value: Any) -> str:
    """VALID with ``path`` (dotted, list indexes as numbers) set to ``value`` (or removed if ``...``)."""
    data = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is ...:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return yaml.safe_dump(data)


def test_a_valid_document_loads_into_typed_fields() -> None:
    loaded = spec.parse(yaml.safe_dump(VALID), base_dir=Path("/specs"))
    assert loaded.name == "a1111-sd15"
    assert loaded.python == spec.PythonSpec(version="3.10", path="/usr/bin/python3.10")
    assert loaded.pip == spec.PipSpec("lock.txt", None, ("https://download.pytorch.org/whl/cu121",))
    assert [g.dest for g in loaded.git_sources] == [
        "stable-diffusion-webui",
        "stable-diffusion-webui/repositories/BLIP",
        # extensions-builtin/: webui scans it whatever --data-dir says (modules/paths_internal.py).
        "stable-diffusion-webui/extensions-builtin/ext",
    ]
    assert loaded.extensions[0].commit == "c" * 40
    # Hugging Face files are declared files too: one blob per distinct sha256, fetched at the revision.
    assert [f.path for f in loaded.declared_files] == [
        "models/Stable-diffusion/m.safetensors",
        "stable-diffusion-webui/config.json",
        f"{HUB}/blobs/{'c1' * 32}",
        f"{HUB}/blobs/{SHA}",
    ]
    hf_config = loaded.declared_files[2]
    assert (
        hf_config.url
        == f"https://huggingface.co/openai/clip-vit-large-patch14/resolve/{'d' * 40}/config.json"
    )
    assert hf_config.where == "huggingface[0].files[0]"
    assert loaded.files[0].where == "files[0]"
    assert loaded.resolve("files/config.json") == Path("/specs/files/config.json")
    assert loaded.image == spec.ImageSpec(family="sd-runtime", size_gb=20)


def test_the_example_spec_loads() -> None:
    loaded = spec.load(REPO / "examples" / "runtime.yaml")
    assert loaded.python.path == "/usr/bin/python3.10"
    assert loaded.webui is not None
    assert loaded.webui.ref == "v1.10.1"
    (model,) = loaded.models
    assert model.path == "models/Stable-diffusion/v1-5-pruned-emaonly.safetensors"
    assert model.sha256 == "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa"
    assert model.url is not None
    assert model.url.startswith("https://huggingface.co/")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("models.0.sha256", ..., "models[0].sha256: required"),
        ("models.0.sha256", "abc", "models[0].sha256: 'abc' is not valid (64 hex digits)"),
        ("models.0.path", "../escape.bin", "models[0].path: '../escape.bin': '..' segment escapes"),
        ("models.0.path", "/etc/passwd", "models[0].path: '/etc/passwd': absolute path"),
        ("models.0.path", ".sdworker/x", "models[0].path: '.sdworker/x': .sdworker is reserved"),
        ("models.0.path", 'a"b', "models[0].path: 'a\"b': '\"' and '\\' are not supported"),
        ("models.0.path", "venv/lib/x.py", "models[0].path: venv/lib/x.py is inside the venv"),
        ("models.0.url", "ftp://x", "models[0].url: 'ftp://x' must start with https://"),
        ("models.0.url", ..., "models[0].url: required (or source"),
        ("files.0.url", "https://x", "files[0].source: give url or source, not both"),
        ("files.0.path", "models/Stable-diffusion/m.safetensors", "also declared by models[0]"),
        ("models.0.color", "red", "models[0].color: unknown field"),
        ("python.version", 3.10, 'python.version: write it as a string ("3.10")'),
        ("python.version", "2.7", "python.version: '2.7' is not valid"),
        ("python.path", "python3.10", "python.path: 'python3.10' must be an absolute, normalised path"),
        ("python.path", "/usr/bin/../bin/python3.10", "must be an absolute, normalised path"),
        ("python.path", "/usr/bin/python3.11", "python.path: /usr/bin/python3.11 is Python 3.11"),
        ("python.path", "/usr/bin/ruby", "does not name a python interpreter"),
        ("python", ..., "python: required"),
        ("metadata.name", "Bad_Name", "metadata.name: 'Bad_Name' is not valid (an RFC 1035 label)"),
        ("metadata.name", "a" * 51, "is longer than 50 characters"),
        ("metadata.labels", {"a": "b"}, "metadata.labels: unknown field"),
        ("apiVersion", "v1", "apiVersion: must be sdworker.dev/v1alpha1"),
        ("kind", "Pod", "kind: must be RuntimeImage"),
        ("webui.ref", ..., "webui.ref: required"),
        ("webui.ref", "--upload-pack=x", "webui.ref: '--upload-pack=x' is not a git ref"),
        ("extensions.0.commit", "abc", "extensions[0].commit: 'abc' is not valid"),
        ("extensions.0.name", "webui/../x", "extensions[0].name: 'webui/../x' is not valid"),
        ("image.sizeGb", 0, "image.sizeGb: expected an integer from 1 to 65536"),
        ("image.family", "Sd", "image.family: 'Sd' is not valid"),
        ("models", {"path": "x"}, "models: expected a list, got a mapping"),
        ("models.0", "models/x", "models[0]: expected a mapping, got a string"),
        ("pip.extraIndexUrls", "https://x", "pip.extraIndexUrls: expected a list of non-empty strings"),
        ("extensions.0.name", "sdworker", "extensions[0].name: 'sdworker' is reserved for the built-in"),
        ("huggingface.0.repo", "clip", "huggingface[0].repo: 'clip' is not valid (ORG/NAME"),
        (
            "huggingface.0.revision",
            "main",
            "huggingface[0].revision: 'main' is not valid (the repository's 40-hex",
        ),
        ("huggingface.0.revision", ..., "huggingface[0].revision: required"),
        ("huggingface.0.files", [], "huggingface[0].files: must list at least one file"),
        ("huggingface.0.files.0.sha256", "x", "huggingface[0].files[0].sha256: 'x' is not valid (64 hex"),
        ("huggingface.0.files.0.path", "../x", "huggingface[0].files[0].path: '../x': '..' segment"),
        (
            "huggingface.0.files.1.path",
            "config.json",
            "huggingface[0].files[1].path: config.json is listed twice",
        ),
        ("huggingface.0.files.0.size", 3, "huggingface[0].files[0].size: unknown field"),
        ("huggingface.0.ref", "main", "huggingface[0].ref: unknown field"),
    ],
)
def test_each_problem_is_reported_with_its_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        spec.parse(_with(path, value), name="runtime.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("runtime.yaml: ")


def test_a_hugging_face_repo_maps_to_the_hub_cache_layout() -> None:
    (repo,) = spec.parse(yaml.safe_dump(VALID)).huggingface
    # huggingface_hub's layout: models--ORG--NAME/{blobs/<etag>, snapshots/<revision>/<file>, refs/main}.
    assert repo.cache_dir == HUB
    assert repo.ref_path == f"{HUB}/refs/main"
    assert repo.snapshot_path("config.json") == f"{HUB}/snapshots/{'d' * 40}/config.json"
    assert repo.blob_link("config.json", "e" * 64) == f"../../blobs/{'e' * 64}"
    assert repo.blob_link("tokenizer/x.json", "e" * 64) == f"../../../blobs/{'e' * 64}"


def test_the_example_declares_the_clip_files_webui_asks_transformers_for() -> None:
    loaded = spec.load(REPO / "examples" / "runtime.yaml")
    (clip,) = loaded.huggingface
    assert clip.repo == "openai/clip-vit-large-patch14"
    # FrozenCLIPEmbedder: CLIPTokenizer.from_pretrained (vocab, merges, configs) and CLIPTextModel's config;
    # webui's sd_disable_initialization loads the text model with state_dict={}, so no weights.
    assert {f.path for f in clip.files} >= {
        "config.json",
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }


def test_two_hugging_face_entries_for_one_repo_are_rejected() -> None:
    data = copy.deepcopy(VALID)
    data["huggingface"].append(copy.deepcopy(data["huggingface"][0]))
    with pytest.raises(
        SpecError, match=r"huggingface\[1\]\.repo: openai/clip-vit-large-patch14 is also declared"
    ):
        spec.parse(yaml.safe_dump(data))


def test_two_checkouts_into_one_directory_are_rejected() -> None:
    data = copy.deepcopy(VALID)
    data["repositories"].append(dict(data["repositories"][0]))
    with pytest.raises(
        SpecError, match=r"repositories\[1\]: stable-diffusion-webui/repositories/BLIP is also"
    ):
        spec.parse(yaml.safe_dump(data))


def test_all_problems_are_reported_at_once() -> None:
    data = copy.deepcopy(VALID)
    del data["models"][0]["sha256"]
    data["python"]["version"] = "x"
    data["image"]["colour"] = "blue"
    with pytest.raises(SpecError) as caught:
        spec.parse(yaml.safe_dump(data), name="rt.yaml")
    lines = str(caught.value).splitlines()
    assert lines == [
        'rt.yaml: python.version: \'x\' is not valid ("3.10" or "3.10.12")',
        "rt.yaml: models[0].sha256: required",
        "rt.yaml: image.colour: unknown field",
    ]


@pytest.mark.parametrize(
    "text",
    ["", "- a list\n", "key: [unclosed\n"],
    ids=["empty", "list", "bad-yaml"],
)
def test_documents_that_are_not_a_mapping(text: str) -> None:
    with pytest.raises(SpecError, match=r"runtime\.yaml: (the document: expected a mapping|not valid YAML)"):
        spec.parse(text)


def test_an_unreadable_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"missing\.yaml: cannot read"):
        spec.load(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("wanted", "found", "ok"),
    [
        ("3.10", "3.10.12", True),
        ("3.10", "3.10", True),
        ("3.10", "3.100.1", False),
        ("3.10.12", "3.10.11", False),
    ],
)
def test_python_version_matching(wanted: str, found: str, ok: bool) -> None:
    assert spec.PythonSpec(wanted, "/usr/bin/python3.10").accepts(found) is ok


def test_both_examples_name_the_same_image_family() -> None:
    runtime = spec.load(REPO / "examples" / "runtime.yaml")
    worker = yaml.safe_load((REPO / "examples" / "sdworker.yaml").read_text())
    assert worker["spec"]["runtime"]["image"].endswith(f"/global/images/family/{runtime.image.family}")


def test_the_example_passes_no_flag_whose_package_the_lock_lacks() -> None:
    # Under --skip-prepare-environment webui installs nothing, so --xformers works only if the lock has it.
    worker = yaml.safe_load((REPO / "examples" / "sdworker.yaml").read_text())
    inputs = (REPO / "examples" / "runtime-requirements.in").read_text()
    packages = {line.split("==")[0].split(" @ ")[0].strip().lower() for line in inputs.splitlines()}
    for flag, package in (("--xformers", "xformers"), ("--force-enable-xformers", "xformers")):
        if flag in worker["spec"]["webui"]["args"]:
            assert package in packages, f"{flag} needs {package} in runtime-requirements.in"


def test_write_layout_lays_out_the_pod_contracts_fixed_parts(tmp_path: Path) -> None:
    loaded = spec.parse(yaml.safe_dump(VALID))
    write_layout(tmp_path, loaded)
    for folder in layout.REQUIRED_DIRS:
        assert (tmp_path / folder).is_dir(), folder
    ours = sorted(p.relative_to(extension_dir()) for p in extension_dir().rglob("*.py"))
    assert ours
    assert all((tmp_path / layout.BUILTIN_EXTENSION_DIR / rel).is_file() for rel in ours)
    assert (tmp_path / HUB / "refs" / "main").read_text() == "d" * 40
    assert (tmp_path / "huggingface" / "hub" / "version.txt").read_text() == "1"
    link = tmp_path / HUB / "snapshots" / ("d" * 40) / "tokenizer" / "same-bytes.json"
    assert link.is_symlink()
    assert link.resolve() == (tmp_path / HUB / "blobs" / SHA).resolve()
    # Idempotent: a second run (a spec build rerunning over its tree) replaces, never fails.
    write_layout(tmp_path, loaded)
    assert link.is_symlink()
