"""``sdworker_content``: the digest is canonical, the index round-trips, ``verify`` finds every difference.

The builder and the node agent share this package, so these tests pin the format both depend on: what the
digest covers (and what it ignores), what a tampered or truncated index looks like, and what each
verification mode does and does not catch.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from pathlib import Path

import pytest

import sdworker_content
from sdworker_content import index, walk
from sdworker_content.index import ContentIndex, Entry, Interpreter
from sdworker_content.verify import VerifyMode, verify

FILE = Entry("a/b.txt", "file", size=3, sha256="a" * 64, executable=False)
ENTRIES = (
    Entry("a", "dir"),
    FILE,
    Entry("a/link", "symlink", target="b.txt"),
    Entry("venv/bin/python", "symlink", target="/usr/bin/python3.10"),
)


def test_digest_is_independent_of_entry_order() -> None:
    assert index.content_digest(ENTRIES) == index.content_digest(reversed(ENTRIES))
    assert index.content_digest(ENTRIES).startswith("sha256:")
    assert len(index.parse_digest(index.content_digest(ENTRIES))) == 64


@pytest.mark.parametrize(
    "changed",
    [
        Entry("a/b.txt", "file", size=4, sha256="a" * 64),
        Entry("a/b.txt", "file", size=3, sha256="b" * 64),
        Entry("a/b.txt", "file", size=3, sha256="a" * 64, executable=True),
        Entry("a/B.txt", "file", size=3, sha256="a" * 64),
        Entry("a/b.txt", "symlink", target="x"),
    ],
    ids=["size", "sha256", "executable", "path", "type"],
)
def test_digest_changes_with_every_field(changed: Entry) -> None:
    before = index.content_digest(ENTRIES)
    after = index.content_digest([changed if e == FILE else e for e in ENTRIES])
    assert before != after


def test_digest_is_the_sha256_of_the_documented_canonical_form() -> None:
    # Written out by hand so that a change to the format cannot go unnoticed (the agent pins it too).
    canonical = (
        '[{"path":"a","type":"dir"},'
        '{"executable":false,"path":"a/b.txt","sha256":"' + "a" * 64 + '","size":3,"type":"file"},'
        '{"path":"a/link","target":"b.txt","type":"symlink"},'
        '{"path":"venv/bin/python","target":"/usr/bin/python3.10","type":"symlink"}]'
    )
    assert index.content_digest(ENTRIES) == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def test_index_json_round_trips_and_keeps_one_entry_per_line() -> None:
    original = ContentIndex(
        entries=tuple(reversed(ENTRIES)),
        interpreter=Interpreter("/usr/bin/python3.10", "3.10.12"),
        builder={"name": "sdworker-images", "version": "0.1.0"},
        source={"kind": "dir", "spec": None},
    )
    text = original.to_json()
    parsed = ContentIndex.from_json(text)
    assert parsed == original
    assert [e.path for e in parsed.entries] == sorted(e.path for e in ENTRIES)
    data = json.loads(text)
    assert data["digest"] == original.digest
    assert data["totalBytes"] == 3
    assert data["fileCount"] == 1
    assert sum(1 for line in text.splitlines() if line.startswith('    {"')) == len(ENTRIES)


def _document(**changes: object) -> str:
    data = json.loads(ContentIndex(entries=ENTRIES).to_json())
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        (_document(format="other/v9"), "format is 'other/v9'"),
        (_document(digest="sha256:" + "0" * 64), "does not match its entries"),
        (_document(entries=[e.canonical() for e in reversed(ENTRIES)]), "not sorted"),
        (_document(entries=[{"path": "../x", "type": "dir"}]), "escapes the runtime root"),
        (_document(entries=[{"path": "/x", "type": "dir"}]), "absolute path"),
        (_document(entries=[{"path": "x", "type": "fifo"}]), "is not one of"),
        (
            _document(
                entries=[{"path": "x", "type": "file", "size": 1, "sha256": "A" * 64, "executable": False}]
            ),
            "sha256",
        ),
        (_document(entries=[{"path": "x", "type": "file", "size": -1}]), "size"),
    ],
    ids=["json", "object", "format", "digest", "order", "dotdot", "absolute", "type", "sha-case", "size"],
)
def test_invalid_indexes_are_rejected_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(index.ContentIndexError, match=message):
        ContentIndex.from_json(text)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("sha256:" + "0" * 64, True),
        ("sha256:" + "f" * 64, True),
        ("sha256:" + "F" * 64, False),
        ("0" * 64, False),
        ("sha256:" + "0" * 63, False),
        ("sha512:" + "0" * 64, False),
        ("", False),
    ],
)
def test_parse_digest(text: str, ok: bool) -> None:
    if ok:
        assert index.parse_digest(text) == text[7:]
    else:
        with pytest.raises(ValueError, match="not a digest"):
            index.parse_digest(text)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("a/b", None),
        ("a..b/c", None),
        ("", "empty path"),
        ("/a", "absolute path"),
        ("a//b", "empty or '.' segment"),
        ("a/./b", "empty or '.' segment"),
        ("a/../b", "'..' segment"),
        ("a\nb", "control character"),
    ],
)
def test_path_problem(path: str, problem: str | None) -> None:
    found = index.path_problem(path)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


# --- scanning and verifying a real directory ---


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, str]:
    """A small runtime tree with its content index written, and the index's digest."""
    root = tmp_path / "root"
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "empty").mkdir()
    (root / "models" / "m.safetensors").write_bytes(b"\x00" * 5000 + b"weights")
    (root / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.10.12\n")
    script = root / "venv" / "bin" / "tool"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    os.symlink("/usr/bin/python3.10", root / "venv" / "bin" / "python")
    (root / "lost+found").mkdir()
    (root / "lost+found" / "ignored").write_text("mkfs makes this directory; it is not content")
    entries = walk.scan(root)
    built = ContentIndex(entries=entries, interpreter=Interpreter("/usr/bin/python3.10", "3.10.12"))
    (root / index.INDEX_DIR).mkdir()
    (root / index.INDEX_PATH).write_text(built.to_json())
    return root, built.digest


def test_scan_lists_every_path_without_following_symlinks(tree: tuple[Path, str]) -> None:
    root, _ = tree
    entries = {e.path: e for e in walk.scan(root)}
    assert set(entries) == {
        "empty",
        "models",
        "models/m.safetensors",
        "venv",
        "venv/bin",
        "venv/bin/python",
        "venv/bin/tool",
        "venv/pyvenv.cfg",
    }
    assert entries["venv/bin/python"] == Entry("venv/bin/python", "symlink", target="/usr/bin/python3.10")
    assert entries["venv/bin/tool"].executable
    assert not entries["models/m.safetensors"].executable
    assert entries["models/m.safetensors"].size == 5007


@pytest.mark.parametrize("mode", list(VerifyMode))
def test_an_intact_tree_verifies_in_every_mode(tree: tuple[Path, str], mode: VerifyMode) -> None:
    root, digest = tree
    seen: list[walk.HashProgress] = []
    result = verify(root, digest, mode, progress=seen.append)
    assert result.ok, result.summary()
    assert result.index_digest == digest
    assert result.interpreter == Interpreter("/usr/bin/python3.10", "3.10.12")
    if mode is VerifyMode.FULL:
        assert result.bytes_checked == 5007 + len("home = /usr/bin\nversion = 3.10.12\n") + len("#!/bin/sh\n")
        assert seen[-1].files_done == seen[-1].files_total == 3
    assert "verified" in result.summary()


def test_full_verification_counts_bytes_without_a_progress_callback(tree: tuple[Path, str]) -> None:
    root, digest = tree
    result = verify(root, digest)
    assert result.mode is VerifyMode.FULL
    assert (result.files_checked, result.bytes_checked) == (3, 5007 + 34 + 10)


def test_a_wrong_expected_digest_fails_even_the_fast_mode(tree: tuple[Path, str]) -> None:
    root, _ = tree
    other = "sha256:" + "0" * 64
    result = verify(root, other, VerifyMode.DIGEST)
    assert not result.ok
    assert f"is not the expected {other}" in result.summary()


def test_one_changed_byte_is_caught_by_full_but_not_by_stat(tree: tuple[Path, str]) -> None:
    root, digest = tree
    model = root / "models" / "m.safetensors"
    data = bytearray(model.read_bytes())
    data[100] ^= 1
    model.write_bytes(bytes(data))
    assert verify(root, digest, VerifyMode.STAT).ok
    result = verify(root, digest, VerifyMode.FULL)
    assert not result.ok
    (mismatch,) = result.mismatched
    assert (mismatch.path, mismatch.field) == ("models/m.safetensors", "sha256")
    assert mismatch.expected != mismatch.found
    assert "models/m.safetensors: sha256 expected" in result.summary()


def test_missing_extra_truncated_retargeted_and_mode_changes_are_all_reported(tree: tuple[Path, str]) -> None:
    root, digest = tree
    (root / "venv" / "pyvenv.cfg").unlink()
    (root / "models" / "extra.bin").write_bytes(b"x")
    (root / "models" / "m.safetensors").write_bytes(b"short")
    (root / "venv" / "bin" / "python").unlink()
    os.symlink("/usr/local/bin/python3.10", root / "venv" / "bin" / "python")
    (root / "venv" / "bin" / "tool").chmod(0o644)
    result = verify(root, digest, VerifyMode.STAT)
    assert result.missing == ("venv/pyvenv.cfg",)
    assert result.extra == ("models/extra.bin",)
    assert {(m.path, m.field) for m in result.mismatched} == {
        ("models/m.safetensors", "size"),
        ("venv/bin/python", "target"),
        ("venv/bin/tool", "executable"),
    }
    summary = result.summary()
    assert "1 missing (venv/pyvenv.cfg)" in summary
    assert "1 extra (models/extra.bin)" in summary


def test_a_missing_or_edited_index_is_a_problem_not_an_exception(tree: tuple[Path, str]) -> None:
    root, digest = tree
    path = root / index.INDEX_PATH
    text = path.read_text()
    path.write_text(text.replace('"size":5007', '"size":5008'))
    result = verify(root, digest, VerifyMode.DIGEST)
    assert not result.ok
    assert "does not match its entries" in result.summary()
    path.unlink()
    result = verify(root, digest, VerifyMode.DIGEST)
    assert not result.ok
    assert "missing (not an sdworker runtime disk?)" in result.summary()


def test_a_malformed_expected_digest_is_reported(tree: tuple[Path, str]) -> None:
    root, digest = tree
    result = verify(root, digest.upper(), VerifyMode.FULL)
    assert not result.ok
    assert "not a digest" in result.summary()


# The node agent runs this package as root against freshly mounted disks: standard library, no processes.
ALLOWED_IMPORTS = {
    "__future__",
    "collections.abc",
    "dataclasses",
    "enum",
    "hashlib",
    "json",
    "os",
    "pathlib",
    "threading",
    "typing",
    "sdworker_content.index",
    "sdworker_content.walk",
}


def test_the_package_imports_only_what_the_agent_can_trust() -> None:
    modules = sorted(Path(sdworker_content.__file__).parent.glob("*.py"))
    assert {m.name for m in modules} >= {"__init__.py", "index.py", "walk.py", "verify.py"}
    imported: set[str] = set()
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
    assert imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS
