"""The cloud layer: the only package that imports ``google.cloud``.

``provider.CloudProvider`` is the seam the controller uses; ``gce.GceCloud`` implements it over
google-cloud-compute. ``errors`` is the one table that turns cloud failures into retry decisions and
condition reasons. It never imports the Kubernetes layer.
"""
