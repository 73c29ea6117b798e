"""The tree checks that run before any image is written: symlinks, the interpreter, names, and staging.

Symlink resolution is tested as a table of link sets, including the cases a lexical check gets wrong; the
interpreter check against venvs laid out as ``python3.X -m venv`` makes them.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import stat
from pathlib import Path

import pytest

from sdworker_content import walk as content_walk
from sdworker_content.index import Interpreter
from sdworker_content.walk import HashProgress
from sdworker_images import pyc, tree
from sdworker_images.errors import BuildError
from sdworker_images.spec import PythonSpec

INTERPRETER = "/usr/bin/python3.10"
PY310 = PythonSpec(version="3.10", path=INTERPRETER)


@pytest.mark.parametrize(
    ("links", "path", "problem"),
    [
        ({"a/l": "b"}, "a/l", None),
        ({"a/l": "../b"}, "a/l", None),
        ({"a/l": "../../b"}, "a/l", "points outside the runtime root"),
        ({"l": ".."}, "l", "points outside"),
        ({"l": "/etc/passwd"}, "l", "symlink to '/etc/passwd' points outside"),
        ({"venv/bin/python": INTERPRETER}, "venv/bin/python", None),
        ({"venv/bin/python": INTERPRETER, "venv/bin/python3": "python"}, "venv/bin/python3", None),
        ({"venv/bin/python": INTERPRETER, "x": "venv/bin/python/.."}, "x", "leads to '/usr/bin/python3.10'"),
        ({"venv/bin/python": "/usr/local/bin/python3.10"}, "venv/bin/python", "points outside"),
        # Lexically "d/.." is the root itself; the kernel expands d first and ends above the root.
        ({"d": ".", "x": "d/.."}, "x", "points outside"),
        ({"d": "a/b/c", "x": "d/../../.."}, "x", None),
        ({"d": "a/b/c", "x": "d/../../../.."}, "x", "points outside"),
        ({"d": "/tmp", "x": "d/file"}, "x", "leads to '/tmp'"),
        ({"a": "b", "b": "a"}, "a", "loops"),
        ({"a/l": "./././b"}, "a/l", None),
    ],
)
def test_symlink_resolution(links: dict[str, str], path: str, problem: str | None) -> None:
    found = tree.symlink_problem(path, links, INTERPRETER)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def _venv(root: Path, *, home: str = "/usr/bin", version: str = "3.10.12", link: str = INTERPRETER) -> Path:
    """A venv laid out as ``python3.10 -m venv`` makes one (symlinks, no pip)."""
    bin_dir = root / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (root / "venv" / "lib" / "python3.10" / "site-packages").mkdir(parents=True)
    (root / "venv" / "pyvenv.cfg").write_text(
        f"home = {home}\ninclude-system-site-packages = false\nversion = {version}\n"
    )
    os.symlink(link, bin_dir / "python")
    os.symlink("python", bin_dir / "python3")
    os.symlink("python", bin_dir / "python3.10")
    return root


def test_a_matching_venv_gives_the_interpreter(tmp_path: Path) -> None:
    root = _venv(tmp_path)
    items = tree.scan(root)
    assert tree.check_interpreter(root, items, PY310).path == INTERPRETER
    assert tree.check_interpreter(root, items, None) == Interpreter(INTERPRETER, "3.10.12")
    tree.check_symlinks(items, INTERPRETER)


@pytest.mark.parametrize(
    ("venv", "expected", "message"),
    [
        ({"home": "/usr/local/bin"}, PY310, "home = /usr/local/bin, but runtime.yaml python.path is"),
        ({"version": "3.11.4"}, PY310, "version = 3.11.4, but runtime.yaml python.version is 3.10"),
        (
            {},
            PythonSpec("3.10.13", INTERPRETER),
            "version = 3.10.12, but runtime.yaml python.version is 3.10.13",
        ),
        (
            {"link": "/opt/python3.10"},
            PY310,
            "venv/bin/python -> /opt/python3.10, but the venv's interpreter",
        ),
        (
            {"link": "/opt/python3.10"},
            None,
            "venv/bin links to /opt/python3.10, but venv/pyvenv.cfg has home",
        ),
    ],
)
def test_interpreter_mismatches_name_the_file_and_the_values(
    tmp_path: Path, venv: dict[str, str], expected: PythonSpec | None, message: str
) -> None:
    root = _venv(tmp_path, **venv)
    with pytest.raises(BuildError, match="interpreter mismatch") as caught:
        tree.check_interpreter(root, tree.scan(root), expected)
    assert message in str(caught.value)


def test_packages_for_another_python_are_an_interpreter_mismatch(tmp_path: Path) -> None:
    root = _venv(tmp_path)
    (root / "venv" / "lib" / "python3.11").mkdir()
    with pytest.raises(BuildError, match=r"venv/lib/python3.11 holds packages for Python 3.11"):
        tree.check_interpreter(root, tree.scan(root), PY310)


def test_a_tree_without_a_venv_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"venv/pyvenv.cfg: missing"):
        tree.check_interpreter(tmp_path, [], None)


def test_scan_skips_the_reserved_root_names_but_not_a_full_lost_and_found(tmp_path: Path) -> None:
    (tmp_path / ".sdworker").mkdir()
    (tmp_path / ".sdworker" / "manifest.json").write_text("{}")
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "sub" / "lost+found").mkdir(parents=True)
    assert [i.path for i in tree.scan(tmp_path)] == ["sub", "sub/lost+found"]
    (tmp_path / "lost+found" / "x").write_text("x")
    with pytest.raises(BuildError, match="lost\\+found: not empty"):
        tree.scan(tmp_path)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ('say"hi', "are not supported in names"),
        ("back\\slash", "are not supported"),
        ("a\tb", "control character"),
    ],
)
def test_names_debugfs_cannot_handle_are_refused(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / name).write_text("x")
    with pytest.raises(BuildError, match=message):
        tree.scan(tmp_path)


def test_the_builder_and_the_verifier_walk_the_same_tree_in_path_order(tmp_path: Path) -> None:
    # One walker (sdworker_content.walk) for both: the builder's items are exactly what the content index
    # lists, in path order ("a-b" before "a/b", which a depth-first walk visits the other way round).
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a-b").write_text("x")
    (tmp_path / "a" / "b" / "f").write_text("y")
    os.symlink("a-b", tmp_path / "link")
    (tmp_path / "lost+found").mkdir()
    items = tree.scan(tmp_path)
    assert [i.path for i in items] == ["a", "a-b", "a/b", "a/b/f", "link"]
    indexed = {e.path: e for e in content_walk.scan(tmp_path)}
    assert [(i.path, i.type, i.size, i.executable, i.target) for i in items] == [
        (e.path, e.type, e.size, e.executable, e.target) for e in (indexed[i.path] for i in items)
    ]
    assert len(indexed) == len(items)


def test_special_files_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(BuildError, match="pipe: not a regular file, directory or symlink"):
        tree.scan(tmp_path)


def test_stage_copies_hashes_and_normalises_modes(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "d").mkdir(parents=True)
    (source / "d").chmod(0o700)
    (source / "d" / "run").write_text("#!/bin/sh\n")
    (source / "d" / "run").chmod(0o700)
    (source / "d" / "data").write_bytes(b"\x01" * 3_000_000)
    (source / "d" / "data").chmod(0o600)
    os.symlink("run", source / "d" / "alias")
    dest = tmp_path / "stage"
    dest.mkdir()
    seen: list[HashProgress] = []
    entries = {
        e.path: e for e in tree.stage(tree.scan(source), dest, fixed_time=946684800, progress=seen.append)
    }
    assert stat.S_IMODE((dest / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "d" / "run").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "d" / "data").stat().st_mode) == 0o644
    assert os.readlink(dest / "d" / "alias") == "run"
    assert (dest / "d" / "data").read_bytes() == b"\x01" * 3_000_000
    assert entries["d/data"].size == 3_000_000
    assert not entries["d/data"].executable
    assert entries["d/run"].executable
    assert entries["d/alias"].target == "run"
    assert seen[-1].files_done == 2
    assert seen[-1].bytes_done == 3_000_000 + len("#!/bin/sh\n")
    assert stat.S_IMODE((source / "d" / "data").stat().st_mode) == 0o600, "the source tree is not touched"


def test_stage_refuses_a_declared_file_with_another_sha256(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "model.bin").write_bytes(b"fake weights")
    (item,) = tree.scan(source)
    declared = tree.Item(**{**item.__dict__, "expected_sha256": "0" * 64, "declared_by": "models[0]"})
    dest = tmp_path / "stage"
    dest.mkdir()
    with pytest.raises(
        BuildError, match=r"models\[0\] \(model.bin\): sha256 mismatch: runtime.yaml says 0000"
    ):
        tree.stage([declared], dest, fixed_time=1)


# --- pyc headers ---


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("pkg/__pycache__/mod.cpython-310.pyc", "pkg/mod.py"),
        ("pkg/__pycache__/mod.cpython-310.opt-1.pyc", "pkg/mod.py"),
        ("__pycache__/top.cpython-310.pyc", "top.py"),
        ("pkg/mod.pyc", None),
        ("pkg/__pycache__/notes.txt", None),
    ],
)
def test_pyc_source_path(path: str, source: str | None) -> None:
    assert pyc.source_for(path) == source


def _pyc(flags: int, mtime: int, size: int) -> bytes:
    magic = (3439).to_bytes(2, "little") + b"\r\n"  # Python 3.10
    return (
        magic
        + flags.to_bytes(4, "little")
        + mtime.to_bytes(4, "little")
        + size.to_bytes(4, "little")
        + b"code"
    )


def test_a_valid_timestamp_pyc_gets_the_fixed_time() -> None:
    fixed = pyc.with_fixed_mtime(_pyc(0, 1_700_000_000, 123), 1_700_000_000, 123, 946684800)
    assert fixed == _pyc(0, 946684800, 123)


@pytest.mark.parametrize(
    "data",
    [
        _pyc(0, 1_600_000_000, 123),  # stale: the source changed after compilation
        _pyc(0, 1_700_000_000, 124),  # stale: another size
        _pyc(0b11, 0, 0),  # hash-based, checked: does not depend on times
        _pyc(0b01, 0, 0),  # hash-based, unchecked
        b"\x00\x00\r\n",  # too short
        (3379).to_bytes(2, "little") + b"\r\n" + bytes(12),  # Python 3.6: no flags field
    ],
    ids=["stale-mtime", "stale-size", "checked-hash", "unchecked-hash", "short", "py36"],
)
def test_other_pycs_are_left_alone(data: bytes) -> None:
    assert pyc.with_fixed_mtime(data, 1_700_000_000, 123, 946684800) == data


def test_stage_keeps_a_timestamp_pyc_valid(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "pkg" / "__pycache__").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("x = 1\n")
    os.utime(source / "pkg" / "mod.py", (1_700_000_000, 1_700_000_000))
    (source / "pkg" / "__pycache__" / "mod.cpython-310.pyc").write_bytes(_pyc(0, 1_700_000_000, 6))
    dest = tmp_path / "stage"
    dest.mkdir()
    tree.stage(tree.scan(source), dest, fixed_time=946684800)
    assert (dest / "pkg" / "__pycache__" / "mod.cpython-310.pyc").read_bytes() == _pyc(0, 946684800, 6)


def _many_files(source: Path, count: int) -> None:
    rng = random.Random(5)
    for i in range(count):
        path = source / f"pkg{i % 7}" / f"mod{i:03d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(0, 300_000)))
    os.symlink("pkg0", source / "link")


def test_stage_gives_the_same_entries_whatever_the_thread_count(tmp_path: Path) -> None:
    source = tmp_path / "src"
    _many_files(source, 120)
    results = []
    for workers in (1, 8):
        dest = tmp_path / f"stage{workers}"
        dest.mkdir()
        results.append(tree.stage(tree.scan(source), dest, fixed_time=946684800, workers=workers))
    assert results[0] == results[1]
    files = [e for e in results[0] if e.type == "file"]
    assert len(files) == 120
    assert [e.path for e in results[0]] == sorted(e.path for e in results[0])
    for entry in files:
        assert entry.sha256 == hashlib.sha256((source / entry.path).read_bytes()).hexdigest()


def test_stage_gives_what_it_staged_the_fixed_times(tmp_path: Path) -> None:
    # mkfs.ext4 copies mtime and atime from the staged tree, so normalisation need not set them.
    source = tmp_path / "src"
    _many_files(source, 10)
    dest = tmp_path / "stage"
    dest.mkdir()
    tree.stage(tree.scan(source), dest, fixed_time=946684800, workers=4)
    staged = list(dest.rglob("*"))
    assert len(staged) == 10 + 7 + 1
    fixed_ns = 946684800 * 10**9
    for path in staged:
        st = path.lstat()
        assert st.st_mtime_ns == fixed_ns, path
        if not stat.S_ISDIR(st.st_mode):  # listing a directory here moves its atime (relatime)
            assert st.st_atime_ns == fixed_ns, path
    assert (source / "pkg0").stat().st_mtime != 946684800, "the source tree is not touched"


def test_the_first_bad_file_in_path_order_is_the_one_reported(tmp_path: Path) -> None:
    source = tmp_path / "src"
    _many_files(source, 40)
    items = [
        tree.Item(**{**i.__dict__, "expected_sha256": "0" * 64, "declared_by": f"models[{n}]"})
        if i.type == "file" and n % 5 == 0
        else i
        for n, i in enumerate(tree.scan(source))
    ]
    first = next(i for i in items if i.expected_sha256)
    dest = tmp_path / "stage"
    dest.mkdir()
    with pytest.raises(BuildError, match=rf"^{re.escape(str(first.declared_by))} \({first.path}\)"):
        tree.stage(items, dest, fixed_time=1, workers=8)
