"""Assemble the example runtime tree with the stand-in webui's venv, a Hugging Face cache and our extension.

examples/runtime-tree holds the stand-in webui (source only); the libraries it runs on (GitPython,
FastAPI/starlette, uvicorn, safetensors, transformers, Pillow; no torch) are pip-installed for Python 3.10
from examples/runtime-tree-requirements.txt (hash-pinned) into a cache, never into the repository:
``~/.cache/sdworker/standin-venv-<hash>/`` ($SDWORKER_CACHE). ``assemble`` then lays out a tree ready for
``sdworker image build --from-dir`` or a read-only bind mount: the example tree, the site-packages
(hard-linked from the cache), ``huggingface/hub`` and ``extensions-builtin/sdworker``.

The hub cache is synthetic: Hugging Face cannot be reached from here, so ``openai/clip-vit-large-patch14``
gets a tiny CLIP tokenizer (byte-level vocabulary, no merges) and a CLIP config, in the real cache layout
(``models--openai--clip-vit-large-patch14/{refs/main, blobs/<sha256>, snapshots/<rev>/<file> -> blobs}``),
so transformers finds it offline exactly as it would find the real one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Final

from sdworker_images.webui_extension import NAME as EXTENSION_NAME
from sdworker_images.webui_extension import extension_dir
from sdworker_tools import procs

REPO: Final = Path(__file__).resolve().parents[2]
EXAMPLE_TREE: Final = REPO / "examples" / "runtime-tree"
REQUIREMENTS: Final = REPO / "examples" / "runtime-tree-requirements.txt"
SITE_PACKAGES: Final = "venv/lib/python3.10/site-packages"
WEBUI: Final = "stable-diffusion-webui"
HF_HUB: Final = "huggingface/hub"
CLIP_REPO: Final = "openai/clip-vit-large-patch14"
PIP_PLATFORM: Final = (
    "--python-version",
    "3.10",
    "--only-binary=:all:",
    "--platform",
    "manylinux2014_x86_64",
    "--implementation",
    "cp",
)
MODEL_DIRS: Final = ("Stable-diffusion", "Lora", "VAE", "embeddings", "hypernetworks")


def cache_root() -> Path:
    return Path(os.environ.get("SDWORKER_CACHE", Path.home() / ".cache" / "sdworker"))


def site_packages() -> Path:
    """The stand-in's site-packages for Python 3.10, installed once per requirements file (cached)."""
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + " ".join(PIP_PLATFORM).encode()).hexdigest()[:16]
    dest = cache_root() / f"standin-venv-{key}" / "site-packages"
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="site-packages.", dir=dest.parent))
    staging.chmod(0o755)  # mkdtemp makes it 0700; the pod user (uid 10001) must read it
    try:
        procs.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",
                "--no-deps",
                "--require-hashes",
                "--target",
                str(staging),
                *PIP_PLATFORM,
                "-r",
                str(REQUIREMENTS),
            ],
            timeout=900,
        )
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet (transformers' models/clip/tokenization_clip.bytes_to_unicode)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def clip_files() -> dict[str, bytes]:
    """A tiny but loadable CLIPTokenizer + CLIPTextConfig for openai/clip-vit-large-patch14 (synthetic)."""
    alphabet = list(_bytes_to_unicode().values())
    vocab_tokens = [*alphabet, *(a + "</w>" for a in alphabet), "<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(vocab_tokens)}
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    text_config = {
        "vocab_size": len(vocab),
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "max_position_embeddings": 77,
    }
    return {
        "vocab.json": json.dumps(vocab).encode(),
        "merges.txt": b"#version: 0.2 (sdworker synthetic: no merges)\n",
        "tokenizer_config.json": json.dumps({**special, "model_max_length": 77}).encode(),
        "special_tokens_map.json": json.dumps(special).encode(),
        "config.json": json.dumps(
            {"model_type": "clip", "text_config": text_config, "vision_config": {}, "projection_dim": 768}
        ).encode(),
    }


def write_hf_cache(hub: Path) -> None:
    """``hub/models--openai--clip-vit-large-patch14`` in huggingface_hub's cache layout."""
    files = clip_files()
    repo_dir = hub / ("models--" + CLIP_REPO.replace("/", "--"))
    revision = hashlib.sha1(b"".join(files[k] for k in sorted(files)), usedforsecurity=False).hexdigest()
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    (repo_dir / "blobs").mkdir(exist_ok=True)
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = hashlib.sha256(data).hexdigest()
        (repo_dir / "blobs" / blob).write_bytes(data)
        (snapshot / name).symlink_to(f"../../blobs/{blob}")


def _link_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, copy_function=os.link, symlinks=True, dirs_exist_ok=True)


def assemble(
    dest: Path,
    *,
    config_states: bool = True,
    extension_parent: str = "extensions-builtin",
    hf_cache: bool = True,
    model_dirs: bool = True,
) -> Path:
    """Lay out a runtime tree at ``dest`` (must not exist) as the runtime disk holds it, and return ``dest``.

    The defaults are the pod contract (pod-contract.md): an empty ``config_states/``, the model folders,
    the extension under ``extensions-builtin/``, the hub cache. The keyword arguments build the trees the
    operator's old contract produced, for tests that show what fails without each part.
    """
    shutil.copytree(EXAMPLE_TREE, dest, symlinks=True)
    _link_tree(site_packages(), dest / SITE_PACKAGES)
    webui = dest / WEBUI
    if config_states:
        (webui / "config_states").mkdir()
    for name in MODEL_DIRS if model_dirs else ():
        (dest / "models" / name).mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        extension_dir(),
        webui / extension_parent / EXTENSION_NAME,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    if hf_cache:
        write_hf_cache(dest / HF_HUB)
    return dest
