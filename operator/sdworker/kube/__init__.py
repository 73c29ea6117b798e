"""Kubernetes I/O for the operator: the only package that talks to the API server for writes.

It never imports the cloud layer or the decisions; the controller composes them.
"""
