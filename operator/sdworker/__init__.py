"""sdworker: a Kubernetes operator that gets Stable Diffusion WebUI serving in seconds on fresh GPU nodes.

The package is split by how much of the world each part may touch: ``api`` (the CRD types, names and
validation, shared with the node agent) and ``domain`` (pure decisions: placement, rendering, status) import
only the standard library; the handlers that talk to Kubernetes and the cloud live beside them and call in.
"""
