"""sdworker_images: builds and publishes the runtime disk image that sdworker attaches to every GPU node.

The runtime (a venv with PyTorch, stable-diffusion-webui, extensions and model files) is described by a
declarative ``runtime.yaml`` or taken from an existing directory, written into an ext4 filesystem image
that is byte-for-byte reproducible from its inputs, packed the way GCE imports disk images, and published as
a GCE image whose labels carry the content digest the node agent verifies after mounting. The reference
project shipped only a copied image with no recipe; this package is the recipe.
"""

from __future__ import annotations

from typing import Final

BUILDER_NAME: Final = "sdworker-images"
__version__: Final = "0.1.0"
