"""The example runtime image, built and published by the real producers, for tests needing a published image.

``build_example`` runs the image builder on ``examples/runtime-tree`` (what ``sdworker image build --from-dir
examples/runtime-tree --offline`` does); ``sdworker_tools.computesim.testing.publish_build`` publishes the
result into the compute API simulator. Tests never write an image's labels or description themselves.
"""

from __future__ import annotations

from pathlib import Path

from sdworker_images import build
from sdworker_images.progress import Progress

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_TREE = REPO / "examples" / "runtime-tree"


def build_example(out: Path, tree: Path = EXAMPLE_TREE) -> build.BuildResult:
    """``tree`` (the example runtime by default) through the real builder, offline, packed for publishing."""
    return build.build(build.BuildOptions(out=out, from_dir=tree, offline=True), Progress(quiet=True))
