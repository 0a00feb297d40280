"""The Helm chart's persistent event spool (kafka.spoolPersistence), rendered by Helm's own Go SDK
(helm-python-sdk) through helm/check.py, as tests/integration/test_helm_chart.py renders the rest.

Off (the default), every component is a Deployment and the spool an emptyDir, as before. On, the components
that publish events (ingest, generation, bots) run as StatefulSets whose volumeClaimTemplates give each pod a
spool claim of its own, which follows its ordinal across deletion and rescheduling; everything that selects
their pods (Service, HPA, PDB, NetworkPolicy, ServiceMonitor) must still find them, and the components that
publish nothing (retrieval, monitor) must not change at all. No cluster runs here.
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from copilot.settings import KafkaSettings
from tests.integration.chart import ROOT, check

COMPONENTS = ("ingest", "retrieval", "generation", "monitor", "bots")
PUBLISHERS = ("ingest", "generation", "bots")
SPOOL_PATH = "/var/lib/copilot/spool"
SPOOL_MIB = 2048
# Every component on, each with what selects its pods: an HPA (ingest and retrieval autoscale by default; the
# others here), a PDB, the NetworkPolicies and, through the metrics port, the ServiceMonitor.
BASE: dict[str, Any] = {
    "bots": {"enabled": True, "existingSecret": "copilot-bots"},
    "generation": {"autoscaling": {"enabled": True}},
    "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}},
    "kafka": {"spoolSizeMiB": SPOOL_MIB},
}
PERSISTENT: dict[str, Any] = {
    **BASE,
    "kafka": {**BASE["kafka"], "spoolPersistence": {"enabled": True, "storageClassName": "fast-ssd"}},
}


def render(values: dict[str, Any] | None) -> list[Any]:
    return check.render(values)


@pytest.fixture(scope="module")
def default() -> list[Any]:
    return render(None)


@pytest.fixture(scope="module")
def off() -> list[Any]:
    return render(BASE)


@pytest.fixture(scope="module")
def on() -> list[Any]:
    return render(PERSISTENT)


def find(manifests: list[Any], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [m.doc for m in manifests if m.kind == kind and (name is None or m.name == name)]


def one(manifests: list[Any], kind: str, name: str) -> dict[str, Any]:
    (doc,) = find(manifests, kind, name)
    return doc


def component(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"].get("app.kubernetes.io/component"))


def workloads(manifests: list[Any]) -> dict[str, dict[str, Any]]:
    """Each component's Deployment or StatefulSet, by component."""
    found = [m.doc for m in manifests if m.kind in ("Deployment", "StatefulSet")]
    by_component = {component(doc): doc for doc in found}
    assert len(by_component) == len(found)
    return by_component


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and In expressions), or a Service's plain selector, against labels."""
    if not {"matchLabels", "matchExpressions"} & set(selector):
        selector = {"matchLabels": selector}
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def spool_settings(manifests: list[Any], name: str) -> KafkaSettings:
    """The spool settings NAME's service reads from its ConfigMap, through the real settings class."""
    config = one(manifests, "ConfigMap", f"copilot-{name}-env")["data"]
    prefix = f"COPILOT_{name.upper()}_KAFKA__"
    fields = {k.removeprefix(prefix).lower(): v for k, v in config.items() if k.startswith(prefix + "SPOOL_")}
    assert set(fields) == {"spool_dir", "spool_max_bytes"}, name
    return KafkaSettings.model_validate(fields)


def test_the_publishers_are_the_services_that_spool_events() -> None:
    """A service that starts publishing events must get the persistent spool too."""
    spooling = {
        path.parent.name
        for path in (ROOT / "services").glob("*/*.py")
        if "EventPublisher(" in path.read_text(encoding="utf-8")
    }
    assert spooling == set(PUBLISHERS)


def test_by_default_the_spool_is_an_emptydir_of_deployments(default: list[Any], off: list[Any]) -> None:
    """The switch is off by default: nothing renders a StatefulSet, a claim template or a headless Service."""
    for manifests in (default, off):
        assert find(manifests, "StatefulSet") == []
        assert not [s for s in find(manifests, "Service") if s["spec"].get("clusterIP") == "None"]
        for name, workload in workloads(manifests).items():
            assert workload["kind"] == "Deployment", name
            assert "volumeClaimTemplates" not in workload["spec"], name
            spec = workload["spec"]["template"]["spec"]
            (volume,) = [v for v in spec["volumes"] if v["name"] == "spool"]
            size = SPOOL_MIB if manifests is off else 1024
            assert volume == {"name": "spool", "emptyDir": {"sizeLimit": f"{size}Mi"}}, name
            (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "spool"]
            assert mount["mountPath"] == SPOOL_PATH, name
        for hpa in find(manifests, "HorizontalPodAutoscaler"):
            assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment", hpa["metadata"]["name"]
    # The default values say so too.
    values = check.load_values(check.CHART / "values.yaml")
    assert values is not None
    assert values["kafka"]["spoolPersistence"] == {"enabled": False, "storageClassName": ""}


def test_with_spool_persistence_publishers_are_statefulsets_with_a_spool_claim_each(on: list[Any]) -> None:
    by_component = workloads(on)
    assert {name for name, w in by_component.items() if w["kind"] == "StatefulSet"} == set(PUBLISHERS)
    for name in PUBLISHERS:
        statefulset = one(on, "StatefulSet", f"copilot-{name}")
        spec = statefulset["spec"]
        (claim,) = spec["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "spool", name
        assert claim["spec"] == {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "fast-ssd",
            "resources": {"requests": {"storage": f"{SPOOL_MIB}Mi"}},
        }, name
        # Claim templates cannot change once the StatefulSet exists: no label that a chart upgrade changes.
        assert claim["metadata"]["labels"] == spec["selector"]["matchLabels"], name
        pod = spec["template"]["spec"]
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "spool"]
        assert mount["mountPath"] == SPOOL_PATH and not mount.get("readOnly"), name
        # The claim is the spool volume: no emptyDir of that name would shadow it.
        assert "spool" not in {v["name"] for v in pod["volumes"]}, name
        # Roll-outs replace pods one at a time; claims stay after a scale-down and the StatefulSet's deletion.
        assert spec["updateStrategy"] == {"type": "RollingUpdate"}, name
        assert "strategy" not in spec, name
        assert spec["podManagementPolicy"] == "Parallel", name
        retention = spec["persistentVolumeClaimRetentionPolicy"]
        assert retention == {"whenDeleted": "Retain", "whenScaled": "Retain"}, name
        # The non-root user may write a freshly provisioned volume: the kubelet gives it the pod's fsGroup.
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["fsGroup"] == security["runAsGroup"] == 10001, name
        # The service spools where the claim is mounted, and stops at 80% of the claim's size.
        settings = spool_settings(on, name)
        assert str(settings.spool_dir) == SPOOL_PATH, name
        assert settings.spool_max_bytes == SPOOL_MIB * 1024 * 1024 * 8 // 10, name
    # A StatefulSet's name plus its revision hash must fit a label value: 52 characters at most.
    assert all(len(name) <= 52 for name in (f"copilot-{p}" for p in PUBLISHERS))


def test_each_statefulset_is_governed_by_a_headless_service_that_is_not_scraped(on: list[Any]) -> None:
    (monitor,) = find(on, "ServiceMonitor")
    scraped = [
        s
        for s in find(on, "Service")
        if selects(monitor["spec"]["selector"], s["metadata"]["labels"])
        and "metrics" in {p["name"] for p in s["spec"]["ports"]}
    ]
    # One scraped Service per component, the component's own: each pod is scraped once.
    assert sorted(s["metadata"]["name"] for s in scraped) == sorted(f"copilot-{c}" for c in COMPONENTS)
    for name in PUBLISHERS:
        statefulset = one(on, "StatefulSet", f"copilot-{name}")
        headless = one(on, "Service", statefulset["spec"]["serviceName"])
        assert headless["metadata"]["name"] == f"copilot-{name}-headless"
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]
        assert [p["name"] for p in headless["spec"]["ports"]] == ["grpc"]
        # Callers still reach the component's own (ClusterIP) Service, which the helm test checks.
        service = one(on, "Service", f"copilot-{name}")
        assert service["spec"].get("clusterIP") != "None" and service["spec"]["type"] == "ClusterIP"
    headless = {component(s) for s in find(on, "Service") if s["spec"].get("clusterIP") == "None"}
    assert headless == set(PUBLISHERS)


def test_with_spool_persistence_every_selector_still_finds_the_pods(on: list[Any], off: list[Any]) -> None:
    by_component = workloads(on)
    assert set(by_component) == set(COMPONENTS)
    for name, workload in by_component.items():
        labels = pod_labels(workload)
        assert selects(workload["spec"]["selector"], labels), name
        # The pods carry the same labels as the Deployment's did.
        assert labels == pod_labels(workloads(off)[name]), name
        service = one(on, "Service", f"copilot-{name}")
        assert selects(service["spec"]["selector"], labels), name
        pdb = one(on, "PodDisruptionBudget", f"copilot-{name}")
        assert selects(pdb["spec"]["selector"], labels), name
        policy = one(on, "NetworkPolicy", f"copilot-{name}")
        assert selects(policy["spec"]["podSelector"], labels), name
        # The policies of the others still admit, or reach, this component's pods by the same labels.
        assert one(on, "NetworkPolicy", f"copilot-{name}") == one(off, "NetworkPolicy", f"copilot-{name}")
    # Every HPA scales a workload that exists, of the right kind.
    hpas = find(on, "HorizontalPodAutoscaler")
    assert {component(h) for h in hpas} == {"ingest", "retrieval", "generation"}
    for hpa in hpas:
        target = hpa["spec"]["scaleTargetRef"]
        (workload,) = find(on, target["kind"], target["name"])
        assert (target["apiVersion"], workload["kind"]) == ("apps/v1", by_component[component(hpa)]["kind"])
        assert "replicas" not in workload["spec"], target["name"]  # the HPA owns the count
    # The cluster-wide policies (default deny, the helm test's) are the same.
    assert [p for p in find(on, "NetworkPolicy")] == [p for p in find(off, "NetworkPolicy")]
    assert find(on, "PodDisruptionBudget") == find(off, "PodDisruptionBudget")
    assert find(on, "ServiceMonitor") == find(off, "ServiceMonitor")
    assert find(on, "Pod") == find(off, "Pod")  # the helm test calls the Services


def test_with_spool_persistence_retrieval_and_monitor_are_unchanged(on: list[Any], off: list[Any]) -> None:
    def of(manifests: list[Any], name: str) -> list[tuple[str, str, Any]]:
        docs = [(m.kind, m.name, m.doc) for m in manifests if component(m.doc) == name]
        return sorted(docs, key=lambda d: (d[0], d[1]))

    for name in ("retrieval", "monitor"):
        assert of(on, name) == of(off, name), name
        assert one(on, "Deployment", f"copilot-{name}")["kind"] == "Deployment"
        spec = one(on, "Deployment", f"copilot-{name}")["spec"]["template"]["spec"]
        (volume,) = [v for v in spec["volumes"] if v["name"] == "spool"]
        assert "emptyDir" in volume, name
    # The monitor's own state claim is untouched: the chart's PVC, a Recreate roll-out.
    assert one(on, "Deployment", "copilot-monitor")["spec"]["strategy"] == {"type": "Recreate"}
    claim = "copilot-monitor-data"
    assert one(on, "PersistentVolumeClaim", claim) == one(off, "PersistentVolumeClaim", claim)


def test_the_bots_keep_their_state_claim_as_a_statefulset(on: list[Any]) -> None:
    """The bots' SQLite state stays on its one chart-made claim; the StatefulSet deletes each pod before its
    successor starts, as the Deployment's Recreate did."""
    spec = one(on, "StatefulSet", "copilot-bots")["spec"]
    pod = spec["template"]["spec"]
    (data,) = [v for v in pod["volumes"] if v["name"] == "data"]
    assert data == {"name": "data", "persistentVolumeClaim": {"claimName": "copilot-bots-data"}}
    assert one(on, "PersistentVolumeClaim", "copilot-bots-data")
    assert spec["replicas"] == 1
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert (mounts["spool"], mounts["data"]) == (SPOOL_PATH, "/var/lib/copilot/bots")


def test_with_spool_persistence_lint_is_clean_and_every_manifest_is_valid_kubernetes(on: list[Any]) -> None:
    assert check.lint(PERSISTENT) == []
    assert [error for m in on for error in check.validate(m)] == []


def test_the_storage_class_may_be_left_to_the_cluster_default_and_the_size_follows_spool_size() -> None:
    manifests = render({"kafka": {"spoolSizeMiB": 512, "spoolPersistence": {"enabled": True}}})
    for name in ("ingest", "generation"):  # bots are off by default
        (claim,) = one(manifests, "StatefulSet", f"copilot-{name}")["spec"]["volumeClaimTemplates"]
        assert "storageClassName" not in claim["spec"], name
        assert claim["spec"]["resources"]["requests"]["storage"] == "512Mi", name
        assert spool_settings(manifests, name).spool_max_bytes == 512 * 1024 * 1024 * 8 // 10, name
    assert find(manifests, "StatefulSet", "copilot-bots") == []
    assert find(manifests, "Service", "copilot-bots-headless") == []


def test_the_notes_point_at_the_spool_claims() -> None:
    def notes(values: dict[str, Any] | None) -> str:
        chart = helm.Chart.load(check.CHART)
        rendered = chart.render(values, name=check.RELEASE, namespace=check.NAMESPACE, is_install=True)
        (text,) = [text for template, text in rendered.items() if template.endswith("NOTES.txt")]
        return str(text)

    text = notes(PERSISTENT)
    assert "kafka.spoolPersistence" in text and "get pvc -l app.kubernetes.io/instance=copilot" in text
    assert "spoolPersistence" not in notes(None)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"kafka": {"spoolPersistence": {"enabled": True}}, "podSecurityContext": {"fsGroup": None}},
            "kafka.spoolPersistence needs podSecurityContext.fsGroup",
        ),
        (
            {"kafka": {"spoolPersistence": {"enabled": True}}, "fullnameOverride": "x" * 45},
            "longer than 52 characters",
        ),
        ({"kafka": {"spoolPersistence": {"enabled": "yes"}}}, "spoolPersistence"),
        ({"kafka": {"spoolPersistence": {"storageClass": "fast"}}}, "storageClass"),
    ],
)
def test_settings_that_would_not_work_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render(values)
