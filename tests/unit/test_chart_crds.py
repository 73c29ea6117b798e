"""The chart's CRDs and dashboard are generated from their sources and must not drift from them.

Helm installs charts/sdworker/crds/ before the templates and never deletes it; a CRD changed in crds/ (or
the operator's Grafana dashboard changed) without ``python charts/sdworker/scripts/generate.py`` would
ship the old one. These tests fail then.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "charts" / "sdworker" / "scripts" / "generate.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_generate", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chart_crds_and_dashboard_match_their_sources() -> None:
    sync = _load()
    assert sync.drift() == [], "chart files are stale: run python charts/sdworker/scripts/generate.py"


def test_chart_crds_are_the_source_objects_plus_kopf_peering() -> None:
    target = REPO / "charts" / "sdworker" / "crds"
    source = {p.name: yaml.safe_load(p.read_text()) for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: yaml.safe_load(p.read_text()) for p in target.glob("*.yaml")}
    assert {n: chart[n] for n in source} == source
    peering = chart["kopf.dev_clusterkopfpeerings.yaml"]
    assert (peering["spec"]["group"], peering["spec"]["scope"], peering["spec"]["names"]["kind"]) == (
        "kopf.dev",
        "Cluster",
        "ClusterKopfPeering",
    )


def test_the_check_names_a_drifted_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sync = _load()
    target = tmp_path / "crds"
    shutil.copytree(sync.TARGET, target)
    monkeypatch.setattr(sync, "TARGET", target)
    (target / "sdworker.dev_sdworkers.yaml").write_text("# edited by hand\n")
    (target / "stray.yaml").write_text("{}\n")
    dashboard = tmp_path / "dashboards" / "sdworker.json"
    monkeypatch.setattr(sync, "DASHBOARD", dashboard)  # missing: reported, then written
    assert sync.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "crds/sdworker.dev_sdworkers.yaml is out of date" in err
    assert "stray.yaml" in err
    assert "dashboards/sdworker.json is out of date" in err
    assert sync.main([]) == 0
    assert sync.drift() == []
    assert not (target / "stray.yaml").exists()
    assert dashboard.read_text() == sync.DASHBOARD_SOURCE.read_text()
