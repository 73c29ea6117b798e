"""The sdworker API as Python: constants, names, typed resources, parsing and conditions.

Shared by the operator and the node agent, so it stays pure and small: the standard library only, no
Kubernetes or cloud clients, no I/O. ``sdworker.domain`` builds on it; it never imports ``domain``.
"""
