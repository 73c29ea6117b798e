"""The stand-in runtime's parts that need no venv: the Hugging Face cache layout, the extension's place."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from sdworker_images.webui_extension import NAME, extension_dir
from sdworker_tools import standin_runtime


def test_the_hub_cache_has_huggingface_hubs_layout(tmp_path: Path) -> None:
    standin_runtime.write_hf_cache(tmp_path)
    repo = tmp_path / "models--openai--clip-vit-large-patch14"
    revision = (repo / "refs" / "main").read_text()
    snapshot = repo / "snapshots" / revision
    names = sorted(p.name for p in snapshot.iterdir())
    assert names == sorted(standin_runtime.clip_files())
    for link in snapshot.iterdir():
        target = os.readlink(link)
        assert target.startswith("../../blobs/"), "snapshot files are relative links into blobs/"
        assert hashlib.sha256(link.read_bytes()).hexdigest() == Path(target).name


def test_the_clip_files_describe_one_tokenizer() -> None:
    files = standin_runtime.clip_files()
    vocab = json.loads(files["vocab.json"])
    config = json.loads(files["config.json"])
    assert config["model_type"] == "clip"
    assert config["text_config"]["vocab_size"] == len(vocab)
    assert {"<|startoftext|>", "<|endoftext|>"} <= vocab.keys()
    assert files["merges.txt"].startswith(b"#version:")


def test_the_extension_dir_holds_the_webui_scripts() -> None:
    assert extension_dir().name == NAME
    assert (extension_dir() / "scripts" / "sdworker_api.py").is_file()
