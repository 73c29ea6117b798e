"""Prefetch reads every byte of what it is asked for, exactly once, and nothing outside the runtime root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sdworker_agent import prefetch


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    root = tmp_path / "runtime"
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    (root / "models" / "Stable-diffusion" / "v1.safetensors").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (root / "models" / "VAE").mkdir()
    (root / "models" / "VAE" / "vae.pt").write_bytes(b"v" * 1000)
    (root / "models" / "VAE" / "empty.pt").write_bytes(b"")
    (root / "venv").mkdir()
    (root / "venv" / "python").write_bytes(b"#!")
    (tmp_path / "host-secret").write_bytes(b"s" * 4096)
    (root / "escape").symlink_to(tmp_path / "host-secret")
    (root / "models" / "link.safetensors").symlink_to("Stable-diffusion/v1.safetensors")
    return root


@pytest.mark.parametrize(("workers", "chunk"), [(1, 1 << 20), (4, 1 << 20), (8, 4096), (3, 7)])
def test_every_byte_is_read_once_whatever_the_chunking(runtime: Path, workers: int, chunk: int) -> None:
    result = prefetch.prefetch(
        str(runtime), ["models/Stable-diffusion/v1.safetensors"], workers=workers, chunk_bytes=chunk
    )
    assert result.files == ("models/Stable-diffusion/v1.safetensors",)
    assert result.stats.bytes == 3 * 1024 * 1024 + 17
    assert result.stats.seconds > 0
    assert result.stats.throughput_mbps == pytest.approx(result.stats.bytes / 1e6 / result.stats.seconds)
    assert result.skipped == ()


def test_directories_expand_to_their_files_and_duplicates_are_read_once(runtime: Path) -> None:
    result = prefetch.prefetch(
        str(runtime), ["models/VAE", "models/VAE/vae.pt", "models/link.safetensors", "venv/python"], workers=2
    )
    assert result.files == (
        "models/VAE/empty.pt",
        "models/VAE/vae.pt",
        "models/Stable-diffusion/v1.safetensors",
        "venv/python",
    )
    assert result.stats.bytes == 1000 + 3 * 1024 * 1024 + 17 + 2


def test_missing_and_escaping_entries_are_skipped_with_a_reason(runtime: Path) -> None:
    result = prefetch.prefetch(str(runtime), ["models/nope.ckpt", "escape", "../host-secret", "venv/python"])
    assert result.files == ("venv/python",)
    assert result.skipped == (
        "models/nope.ckpt (not found)",
        "escape (resolves outside the runtime root)",
        "../host-secret (resolves outside the runtime root)",
    )
    assert result.stats.bytes == 2


def test_nothing_to_prefetch_is_not_an_error(runtime: Path) -> None:
    result = prefetch.prefetch(str(runtime), [])
    assert (result.files, result.stats.bytes, result.stats.throughput_mbps >= 0) == ((), 0, True)


def test_a_stop_request_aborts_the_readers(runtime: Path) -> None:
    with pytest.raises(prefetch.PrefetchAborted):
        prefetch.prefetch(str(runtime), ["models"], chunk_bytes=4096, should_stop=lambda: True)


def test_bad_parameters_are_refused(runtime: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        prefetch.read_parallel([str(runtime / "venv" / "python")], workers=0)


def test_sequential_read_and_evict(runtime: Path) -> None:
    path = str(runtime / "models" / "Stable-diffusion" / "v1.safetensors")
    prefetch.evict(path)
    stats = prefetch.read_sequential(path, buffer_bytes=65536)
    assert stats.bytes == 3 * 1024 * 1024 + 17
