"""Test and demo infrastructure for sdworker: a real local Kubernetes control plane with kwok nodes.

Nothing here ships in the product images. It exists so tests and the local demo run the operator
and agents against real upstream components (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok) built from Go modules by ``tools/testcluster/build.sh``.
"""
