"""webui v1.10.1 modules/gitpython_hack.py: ``import git`` at module level (imported by extensions.py).

GitPython runs ``git version`` when imported (git/__init__.py refresh()); with no git executable it raises
ImportError unless GIT_PYTHON_REFRESH=quiet (or warn). The pod's base image has no git.
"""

import git


class Repo(git.Repo):  # type: ignore[misc]
    """gitpython_hack.Repo: a git.Repo without persistent cat-file processes (unused at start-up)."""
