"""Names are valid where they are used, for any input, stable, and distinct for distinct inputs."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdworker.api import naming
from sdworker.api.constants import MOUNT_ROOT

RFC1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")

IMAGES = st.one_of(
    st.text(max_size=300),
    st.from_regex(
        r"projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/global/images/(family/)?[a-z]([-a-z0-9]{0,61}[a-z0-9])?",
        fullmatch=True,
    ),
)
NODES = st.one_of(
    st.text(max_size=300),
    st.from_regex(
        r"[a-z0-9]([-a-z0-9]{0,60}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,60}[a-z0-9])?){0,3}", fullmatch=True
    ),
)
RUNTIME_IDS = IMAGES.map(naming.runtime_id)


def is_rfc1035(name: str, limit: int = 63) -> bool:
    return len(name) <= limit and RFC1035.fullmatch(name) is not None


@given(IMAGES)
def test_runtime_id_is_a_short_rfc1035_label(image: str) -> None:
    rid = naming.runtime_id(image)
    assert is_rfc1035(rid, naming.RUNTIME_ID_MAX)
    assert rid == naming.runtime_id(image)


@given(IMAGES, IMAGES)
def test_runtime_ids_differ_for_different_images(a: str, b: str) -> None:
    if a != b:
        assert naming.runtime_id(a) != naming.runtime_id(b)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("projects/sdworker-demo/global/images/sd-runtime-v3", "sd-runtime-v3-"),
        ("projects/sdworker-demo/global/images/family/sd-runtime", "sd-runtime-"),
        ("projects/p/global/images/" + "a" * 63, "a" * 31 + "-"),
        ("projects/p/global/images/9-lives", "lives-"),
        ("", "rt-"),
    ],
)
def test_runtime_id_keeps_the_image_name_readable(image: str, expected: str) -> None:
    rid = naming.runtime_id(image)
    assert rid.startswith(expected)
    assert re.fullmatch(r"[0-9a-f]{8}", rid.rsplit("-", 1)[1])


def test_family_and_image_of_the_same_name_get_different_ids() -> None:
    assert naming.runtime_id("projects/p1234/global/images/family/sd") != naming.runtime_id(
        "projects/p1234/global/images/sd"
    )


@given(NODES, RUNTIME_IDS)
def test_runtimedisk_name_is_a_dns_subdomain(node: str, rid: str) -> None:
    name = naming.runtimedisk_name(node, rid)
    assert len(name) <= 253
    assert SUBDOMAIN.fullmatch(name)


def test_runtimedisk_name_is_readable_for_ordinary_nodes() -> None:
    assert (
        naming.runtimedisk_name("gke-c-gpu-pool-1a2b-xyz", "sd-1234abcd")
        == "gke-c-gpu-pool-1a2b-xyz-sd-1234abcd"
    )


def test_runtimedisk_name_of_long_nodes_stays_unique() -> None:
    a, b = "n" * 250 + "a", "n" * 250 + "b"
    assert naming.runtimedisk_name(a, "sd-1234abcd") != naming.runtimedisk_name(b, "sd-1234abcd")


@given(NODES, RUNTIME_IDS)
def test_disk_and_device_names_are_gce_names(node: str, rid: str) -> None:
    assert is_rfc1035(naming.disk_name(node, rid))
    assert naming.disk_name(node, rid).startswith("sdw-")
    assert is_rfc1035(naming.device_name(rid))


@given(NODES, NODES, RUNTIME_IDS)
def test_disk_names_differ_per_node(a: str, b: str, rid: str) -> None:
    if a != b:
        assert naming.disk_name(a, rid) != naming.disk_name(b, rid)


@given(st.text(max_size=80), RUNTIME_IDS, st.integers(0, naming.POOL_INDEX_LIMIT - 1), st.text(max_size=80))
def test_pool_and_shared_disk_names_are_gce_names(zone: str, rid: str, index: int, cluster: str) -> None:
    assert is_rfc1035(naming.pool_disk_name(zone, rid, index, cluster=cluster))
    assert is_rfc1035(naming.shared_disk_name(zone, rid, cluster=cluster))


def test_pool_disks_are_distinct_per_index_zone_and_cluster() -> None:
    names = {
        naming.pool_disk_name(zone, "sd-1234abcd", i, cluster=cluster)
        for zone in ("us-central1-a", "us-central1-b")
        for cluster in ("", "prod")
        for i in range(20)
    }
    assert len(names) == 2 * 2 * 20


@pytest.mark.parametrize("index", [-1, naming.POOL_INDEX_LIMIT])
def test_pool_index_out_of_range_is_refused(index: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        naming.pool_disk_name("us-central1-a", "sd-1234abcd", index)


@given(RUNTIME_IDS)
def test_mount_path_and_label_for_runtime_ids(rid: str) -> None:
    assert naming.mount_path(rid) == f"{MOUNT_ROOT}/{rid}"
    prefix, _, name = naming.runtime_ready_label(rid).partition("/")
    assert prefix == "sdworker.dev"
    assert len(name) <= 63
    assert LABEL_NAME.fullmatch(name)


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "Upper", "-x"])
def test_mount_path_refuses_ids_that_escape_the_root(bad: str) -> None:
    with pytest.raises(ValueError, match="RFC 1035"):
        naming.mount_path(bad)


def test_mount_path_honours_another_root() -> None:
    assert naming.mount_path("sd-1234abcd", root="/tmp/mnt/") == "/tmp/mnt/sd-1234abcd"


@given(st.text(max_size=300))
def test_child_name_is_a_service_name(name: str) -> None:
    assert is_rfc1035(naming.child_name(name))


@pytest.mark.parametrize(
    ("name", "unchanged"),
    [("sd-webui", True), ("a" * 63, True), ("a" * 64, False), ("sd.webui", False), ("1sd", False)],
)
def test_child_name_keeps_valid_names(name: str, unchanged: bool) -> None:
    assert (naming.child_name(name) == name) is unchanged


LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
# The longest node name Kubernetes allows: a DNS subdomain of 253 characters (labels of at most 63).
LONG_NODE = ".".join(["a" * 63, "b" * 63, "c" * 63, "gpu-" + "d" * 57])


def test_long_node_name_is_253_characters() -> None:
    assert len(LONG_NODE) == 253
    assert SUBDOMAIN.fullmatch(LONG_NODE)


@given(NODES)
def test_node_label_value_is_a_valid_label_value(node: str) -> None:
    value = naming.node_label_value(node)
    assert len(value) <= 63
    assert LABEL_VALUE.fullmatch(value), value
    assert naming.node_label_value(node) == value


def test_node_label_value_keeps_short_names_and_hashes_long_ones() -> None:
    assert naming.node_label_value("gke-pool-1-abc12") == "gke-pool-1-abc12"
    assert naming.node_label_value("n" * 63) == "n" * 63
    value = naming.node_label_value(LONG_NODE)
    assert len(value) == 63
    assert value.startswith("a" * 40)
    assert value.endswith("-" + naming.short_hash(LONG_NODE))
    # Two long names that share their first 200 characters still get two values.
    other = LONG_NODE[:-1] + "e"
    assert naming.node_label_value(other) != value
