"""The content index of a runtime disk: what the disk holds, file by file, and the one verifier for it.

The image builder (``sdworker_images``) writes the index into every runtime disk image (at
``/.sdworker/manifest.json``, a name kept for the disks already built); the node agent (``sdworker_agent``)
reads it back after mounting the disk and checks it against ``RuntimeDisk.spec.imageDigest``. Both import
this package, so "the digest" and "verified" mean exactly one thing on both sides. The operator itself only
shares the digest's grammar (``sdworker.image_meta``). It is its own package, not part of the operator's,
because neither the builder nor the agent is the operator.

- ``index``: the format (entries, the canonical form the digest is taken over, the JSON file) — pure.
- ``walk``: the one tree walker (never follows symlinks) and file hashing, used by the builder too.
- ``verify``: reading the index off a mounted disk and comparing the tree with it.

Standard library only and no processes: the agent runs it as root against a freshly mounted disk.
"""
