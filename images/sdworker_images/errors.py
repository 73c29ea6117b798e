"""The exceptions the image builder raises for problems a user can fix, so the CLI can print them plainly.

Every message names the problem and where it is (``runtime.yaml: models[0].sha256: required``); anything
else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class BuildError(Exception):
    """A build or publish step cannot go on; the message says why and what to change."""


class SpecError(BuildError):
    """``runtime.yaml`` is not a valid runtime spec."""
