"""Pure decisions of the operator: which runtimes each node needs, what SD workload to run, what status says.

Handlers parse the world into ``sdworker.api`` types, call in here, and carry out the result. Nothing here
performs I/O or imports kopf, Kubernetes or cloud clients, so every decision is testable as a table.
"""
