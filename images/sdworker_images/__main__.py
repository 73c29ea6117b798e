"""``python -m sdworker_images`` (``sdworker image``): the command line of the runtime disk image builder.

Owns argument parsing and turning ``BuildError`` into one ``error:`` line and exit status 1; the work is in
``build``, ``publish`` and ``sdworker_content.verify``. ``main(argv)`` is the entry point the ``sdworker`` CLI
mounts as ``sdworker image build|publish|verify``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sdworker_content.verify import VerifyMode, verify
from sdworker_images import __version__, build, pack, publish, spec
from sdworker_images.errors import BuildError
from sdworker_images.progress import Progress

EXAMPLES = """\
examples:
  # from a spec: fetch webui, repositories, extensions, the pip lock, the model and the Hugging Face files
  # (needs network; run it in the builder image, images/Dockerfile.builder)
  sdworker image build --spec examples/runtime.yaml --out out/
  # from an existing tree, offline; the spec (optional) checks the interpreter and every model's sha256
  sdworker image build --from-dir /srv/runtime --spec examples/runtime.yaml --offline --out out/
  # publish: upload out/image.tar.gz and create the image (labels carry the digest)
  sdworker image publish --build-dir out/ --project my-proj --bucket gs://my-bucket/sdworker \\
      --family sd-runtime
  # check a mounted disk the way the node agent does
  sdworker image verify --root /mnt/sdworker/RUNTIME-ID --digest sha256:... --mode full
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdworker image",
        description="Build, publish and verify sdworker runtime disk images.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sdworker-images {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build disk.raw and image.tar.gz from a spec and/or a directory")
    b.add_argument("--spec", type=Path, help="runtime.yaml")
    b.add_argument(
        "--from-dir",
        type=Path,
        help="an existing runtime tree (venv/, stable-diffusion-webui/, models/), left unmodified; the image "
        "also gets the pod contract's folders and the built-in sdworker extension",
    )
    b.add_argument("--out", type=Path, required=True, help="output directory (created; files replaced)")
    b.add_argument("--python-path", help="without --spec: the interpreter the venv must link to")
    b.add_argument("--python-version", help='without --spec: its version ("3.10" or "3.10.12")')
    b.add_argument("--size-gb", type=_positive_int, help="disk size in GiB (default: content + headroom)")
    b.add_argument("--offline", action="store_true", help="never download; fail if anything is missing")
    b.add_argument(
        "--work-dir", type=Path, help="scratch space (default: next to --out; needs the tree's size)"
    )
    b.add_argument(
        "--gzip-level",
        type=int,
        default=pack.DEFAULT_GZIP_LEVEL,
        help="0 (store only) to 9; default 1 (fast)",
    )
    b.add_argument("--no-pack", action="store_true", help="stop after disk.raw (no image.tar.gz)")
    b.add_argument("--quiet", action="store_true", help="no progress on stderr")

    p = sub.add_parser("publish", help="upload image.tar.gz and create the GCE image (images.insert)")
    p.add_argument("--build-dir", type=Path, required=True, help="the --out of a finished build")
    p.add_argument("--project", required=True)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--bucket", help="gs://BUCKET[/PREFIX] (needs google-cloud-storage)")
    where.add_argument("--upload-dir", type=Path, help="a local directory (tests, the compute API simulator)")
    p.add_argument("--name", help="image name (default: <spec name or sd-runtime>-<12 hex of the digest>)")
    p.add_argument("--family", help="image family (default: runtime.yaml image.family)")
    p.add_argument("--storage-location", action="append", default=[], help="e.g. us (repeatable)")
    p.add_argument("--api-endpoint", help="compute API endpoint, e.g. http://127.0.0.1:8089 (the simulator)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the insert operation")

    v = sub.add_parser("verify", help="check a runtime tree or mounted disk against a digest")
    v.add_argument("--root", type=Path, required=True)
    v.add_argument("--digest", required=True, help="sha256:<64 hex> (RuntimeDisk spec.imageDigest)")
    v.add_argument("--mode", choices=[m.value for m in VerifyMode], default="full")
    return parser


def _build(args: argparse.Namespace) -> int:
    python = None
    if args.python_path or args.python_version:
        if not (args.python_path and args.python_version):
            raise BuildError("--python-path and --python-version go together")
        python = spec.PythonSpec(version=args.python_version, path=args.python_path)
    result = build.build(
        build.BuildOptions(
            out=args.out,
            spec_path=args.spec,
            from_dir=args.from_dir,
            python=python,
            size_gb=args.size_gb,
            offline=args.offline,
            work_dir=args.work_dir,
            gzip_level=args.gzip_level,
            pack=not args.no_pack,
            fixed_time=build.fixed_time_from_env(),
        ),
        Progress(quiet=args.quiet),
    )
    print(result.digest)
    return 0


def _publish(args: argparse.Namespace) -> int:
    uploader: publish.Uploader = (
        publish.GcsUploader.from_url(args.bucket)
        if args.bucket
        else publish.LocalDirUploader(args.upload_dir)
    )
    result = publish.publish(
        args.build_dir,
        project=args.project,
        uploader=uploader,
        images=publish.ComputeImageService(args.api_endpoint),
        name=args.name,
        family=args.family,
        storage_locations=tuple(args.storage_location),
        timeout=args.timeout,
    )
    state = "created" if result.created else "already published"
    print(f"{result.image} {state} ({result.digest}, from {result.source_url})", file=sys.stderr)
    print(result.image)
    return 0


def _verify(args: argparse.Namespace) -> int:
    reporter = Progress()
    result = verify(args.root, args.digest, VerifyMode(args.mode), progress=reporter.hashing("verified"))
    print(result.summary(limit=10))
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"build": _build, "publish": _publish, "verify": _verify}
    try:
        return commands[args.command](args)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
