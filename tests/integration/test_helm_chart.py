"""The Helm chart, rendered by Helm's own Go SDK (helm-python-sdk) with the default values and every
example profile, checked against the Kubernetes API schemas and against the services' settings classes.

No cluster runs here: what a cluster would add (scheduling, the kubelet's probes, a CNI enforcing the
NetworkPolicies, the Secrets the chart refers to) is not exercised; the tests stand in for those Secrets'
values. The helm test pod's health check runs for real against a gRPC health server on loopback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import helm_python as helm
import kubernetes_validate
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pydantic import BaseModel

from copilot.settings import ServiceSettings
from services.generation.settings import GenerationSettings
from services.ingest.parsing import DEFAULT_LIMITS, ParseLimits
from services.ingest.settings import IngestSettings
from services.monitor.settings import MonitorSettings
from services.retrieval.search import Mode
from services.retrieval.settings import RetrievalSettings
from tests.integration.chart import ROOT, check

COMPONENTS = ("ingest", "retrieval", "generation", "monitor", "bots")
PROFILES = ["default", *(p.name for p in sorted(check.EXAMPLES.glob("*.yaml")))]
GPU_PROFILES = {"gpu-1.yaml", "gpu-multi.yaml"}
KAFKA_CLIENTS = ("ingest", "generation", "monitor", "bots")
GPU = "nvidia.com/gpu"
# Set for the container runtime and libraries, not for a settings class.
NON_SETTINGS_ENV = {"HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}


def settings_classes() -> dict[str, type[ServiceSettings]]:
    classes: dict[str, type[ServiceSettings]] = {
        "ingest": IngestSettings,
        "retrieval": RetrievalSettings,
        "generation": GenerationSettings,
        "monitor": MonitorSettings,
    }
    try:
        from services.bots.settings import BotsSettings
    except ImportError:
        pass
    else:
        classes["bots"] = BotsSettings
    return classes


def values_of(profile: str) -> dict[str, Any] | None:
    return None if profile == "default" else check.load_values(check.EXAMPLES / profile)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Any]]:
    return {profile: check.render(values_of(profile)) for profile in PROFILES}


def find(manifests: list[Any], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [m.doc for m in manifests if m.kind == kind and (name is None or m.name == name)]


def one(manifests: list[Any], kind: str, name: str) -> dict[str, Any]:
    (doc,) = find(manifests, kind, name)
    return doc


def component(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"].get("app.kubernetes.io/component"))


def pod_specs(manifests: list[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod the release would run, with where it comes from."""
    for m in manifests:
        if m.kind in ("Deployment", "StatefulSet"):
            yield f"{m.kind}/{m.name}", m.doc["spec"]["template"]["spec"]
        elif m.kind == "Job":
            yield f"Job/{m.name}", m.doc["spec"]["template"]["spec"]
        elif m.kind == "Pod":
            yield f"Pod/{m.name}", m.doc["spec"]


def is_hook(doc: dict[str, Any]) -> bool:
    return "helm.sh/hook" in doc["metadata"].get("annotations", {})


def gpus(container: dict[str, Any]) -> int:
    resources = container.get("resources", {})
    return int(resources.get("limits", {}).get(GPU, 0))


@pytest.mark.parametrize("profile", PROFILES)
def test_helm_lint_is_clean_and_every_manifest_is_valid_kubernetes(
    rendered: dict[str, list[Any]], profile: str
) -> None:
    assert check.lint(values_of(profile)) == []
    manifests = rendered[profile]
    assert len(manifests) > 20
    errors = [error for m in manifests for error in check.validate(m)]
    assert errors == []


def test_validation_catches_a_wrong_field(rendered: dict[str, list[Any]]) -> None:
    deployment = next(m for m in rendered["default"] if m.kind == "Deployment")
    broken = json.loads(json.dumps(deployment.doc))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    errors = check.validate(check.Manifest(deployment.template, broken))
    # Once per validated Kubernetes version.
    assert len(errors) == len(check.KUBE_VERSIONS) and all("readinessprobe" in e for e in errors)


def test_values_files_pass_yamllint_and_every_value_is_documented(tmp_path: Path) -> None:
    files = [check.CHART / "values.yaml", *check.EXAMPLES.glob("*.yaml")]
    assert check.yamllint(files) == []
    assert check.value_docs(check.CHART / "values.yaml") == []
    assert check.value_docs(check.CHART / "charts" / "qdrant" / "values.yaml") == []
    undocumented = tmp_path / "values.yaml"
    undocumented.write_text((check.CHART / "values.yaml").read_text() + "extra:\n  knob: 1\n")
    assert check.value_docs(undocumented) == ["values.yaml: extra.knob has no '## @param'"]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_pod_runs_non_root_on_a_read_only_root_without_capabilities(
    rendered: dict[str, list[Any]], profile: str
) -> None:
    pods = list(pod_specs(rendered[profile]))
    assert pods
    for where, spec in pods:
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
        for container in [*spec["containers"], *spec.get("initContainers", [])]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, (where, container["name"])
            assert context["allowPrivilegeEscalation"] is False, (where, container["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (where, container["name"])
            assert "add" not in context["capabilities"], (where, container["name"])


@pytest.mark.parametrize("profile", PROFILES)
def test_services_have_native_grpc_probes_and_start_as_their_module(
    rendered: dict[str, list[Any]], profile: str
) -> None:
    values = helm.Chart.load(check.CHART).merge_values(values_of(profile))
    deployments = [d for d in find(rendered[profile], "Deployment") if component(d) in COMPONENTS]
    assert {component(d) for d in deployments} == {c for c in COMPONENTS if values[c]["enabled"]}
    for deployment in deployments:
        name = component(deployment)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}.server"]
        grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
        assert grpc_port == values[name]["port"]
        probes = {kind: container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
        for kind, probe in probes.items():
            assert probe["grpc"] == {"port": grpc_port}, (name, kind)
        # Readiness drops a pod from the Service quickly; liveness restarts only a pod stuck for longer.
        readiness, liveness = probes["readinessProbe"], probes["livenessProbe"]
        assert (
            readiness["periodSeconds"] * readiness["failureThreshold"]
            < liveness["periodSeconds"] * liveness["failureThreshold"]
        ), name
        if name == "generation":
            startup = probes["startupProbe"]
            budget = startup["periodSeconds"] * startup["failureThreshold"]
            # The model loads within the startup probe's budget, or the engine gives up first with a reason.
            assert budget > values["generation"]["engineStartTimeoutSeconds"], profile


@pytest.mark.parametrize("profile", PROFILES)
def test_gpu_requests_only_on_generation_engines_of_gpu_profiles(
    rendered: dict[str, list[Any]], profile: str
) -> None:
    requested = {
        (where, c["name"]): gpus(c)
        for where, spec in pod_specs(rendered[profile])
        for c in spec["containers"]
        if gpus(c)
    }
    if profile not in GPU_PROFILES:
        assert requested == {}
        return
    assert requested and all(n >= 1 for n in requested.values())
    assert {where for where, _ in requested} == {"Deployment/copilot-generation"}
    spec = one(rendered[profile], "Deployment", "copilot-generation")["spec"]["template"]["spec"]
    resources = spec["containers"][0]["resources"]
    assert resources["requests"][GPU] == resources["limits"][GPU]
    assert any(t["key"] == GPU for t in spec["tolerations"])
    assert spec["nodeSelector"]
    # Weights come from a volume, read-only, and nothing reaches a model hub.
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True
    env = one(rendered[profile], "ConfigMap", "copilot-generation-env")["data"]
    assert env["COPILOT_GENERATION_ENGINE"] == "vllm"
    assert env["COPILOT_GENERATION_MODEL"].startswith(mounts["models"]["mountPath"] + "/")
    assert env["HF_HUB_OFFLINE"] == "1"


def test_multi_gpu_profile_runs_one_gpu_engine_per_pod_spread_over_nodes(
    rendered: dict[str, list[Any]],
) -> None:
    deployment = one(rendered["gpu-multi.yaml"], "Deployment", "copilot-generation")
    assert deployment["spec"]["replicas"] == 4
    assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"] == {
        "matchLabels": {"app.kubernetes.io/instance": "copilot", "app.kubernetes.io/component": "generation"}
    }
    assert (
        one(rendered["gpu-multi.yaml"], "PodDisruptionBudget", "copilot-generation")["spec"]["minAvailable"]
        == 3
    )


@pytest.mark.parametrize("profile", PROFILES)
def test_network_policies_deny_by_default_and_allow_only_the_calls_each_service_makes(
    rendered: dict[str, list[Any]], profile: str
) -> None:
    manifests = rendered[profile]
    # The evaluation gate's hook policies exist only while its Job runs; its own test checks them.
    policies = {p["metadata"]["name"]: p for p in find(manifests, "NetworkPolicy") if not is_hook(p)}
    deny = policies.pop("copilot-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    selector = deny["spec"]["podSelector"]["matchLabels"]

    def selects(policy_selector: dict[str, str], labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in policy_selector.items())

    for m in manifests:
        if m.kind in ("Deployment", "Pod"):
            template = m.doc if m.kind == "Pod" else m.doc["spec"]["template"]
            labels = template["metadata"]["labels"]
            assert selects(selector, labels), m.name
            own = [p for p in policies.values() if selects(p["spec"]["podSelector"]["matchLabels"], labels)]
            assert len(own) == 1, m.name

    def callers(name: str) -> set[str]:
        """Components (by label) allowed into NAME's gRPC port."""
        rules = policies[f"copilot-{name}"]["spec"]["ingress"]
        return {
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for rule in rules
            for peer in rule.get("from", [])
            if "podSelector" in peer and "app.kubernetes.io/component" in peer["podSelector"]["matchLabels"]
        }

    def egress_ports(name: str) -> set[Any]:
        return {
            p["port"] for rule in policies[f"copilot-{name}"]["spec"]["egress"] for p in rule.get("ports", [])
        }

    assert callers("ingest") == {"test"}
    assert callers("retrieval") == {"test", "generation"}
    assert callers("monitor") == {"test"}
    assert "generation" in callers("retrieval") and "retrieval" not in callers("generation")
    for name in ("ingest", "retrieval", "generation", "monitor"):
        assert 53 in egress_ports(name), name
        assert 443 in egress_ports(name), name  # the realm's JWKS
    for name in KAFKA_CLIENTS:
        if f"copilot-{name}" in policies:
            assert {9092, 9093} & egress_ports(name), name
    # Retrieval reads the vector store and never publishes to Kafka.
    assert not {9092, 9093} & egress_ports("retrieval")
    assert 6333 in egress_ports("retrieval") and 6333 in egress_ports("ingest")
    assert 50052 in egress_ports("generation") and 50052 not in egress_ports("ingest")
    test_egress = policies["copilot-test"]["spec"]["egress"]
    assert "ingress" not in policies["copilot-test"]["spec"]
    assert {p["port"] for rule in test_egress for p in rule["ports"]} >= {53, 50051, 50052, 50053, 50054}


def test_bundled_qdrant_and_bots_when_enabled(rendered: dict[str, list[Any]]) -> None:
    assert find(rendered["default"], "StatefulSet") == []
    assert find(rendered["default"], "Deployment", "copilot-bots") == []
    trial = rendered["trial.yaml"]
    (statefulset,) = find(trial, "StatefulSet")
    (qdrant,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert qdrant["image"] == "qdrant/qdrant:v1.19.0-unprivileged"
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    service = one(trial, "Service", "copilot-qdrant")
    url = one(trial, "ConfigMap", "copilot-retrieval-env")["data"]["COPILOT_RETRIEVAL_STORE__QDRANT_URL"]
    assert url == f"http://{service['metadata']['name']}:6333"
    qdrant_policy = one(trial, "NetworkPolicy", "copilot-qdrant")
    allowed = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in qdrant_policy["spec"]["ingress"][0]["from"]
    }
    assert allowed == {"ingest", "retrieval"}
    bots = one(trial, "Deployment", "copilot-bots")["spec"]["template"]["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in bots["ports"]} == {"grpc": 50055, "http": 3000}
    secret_refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in bots["env"] if "valueFrom" in e}
    assert secret_refs["COPILOT_BOTS_SLACK__SIGNING_SECRET"]["name"] == "copilot-bots"
    bots_env = one(trial, "ConfigMap", "copilot-bots-env")["data"]
    assert bots_env["COPILOT_BOTS_KEYCLOAK__SERVER_URL"] == "https://sso.corp.example/"
    assert bots_env["COPILOT_BOTS_KEYCLOAK__REALM"] == "copilot"
    assert bots_env["COPILOT_BOTS_GENERATION_TARGET"] == "copilot-generation:50053"
    monitor_ports = one(trial, "Service", "copilot-monitor")["spec"]["ports"]
    assert {p["name"]: p["port"] for p in monitor_ports} == {"grpc": 50054, "http": 8080}


def test_changed_settings_change_the_checksum_that_rolls_the_pods() -> None:
    def checksums(values: dict[str, Any] | None) -> dict[str, str]:
        return {
            component(d): d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for d in find(check.render(values), "Deployment")
        }

    before = checksums(None)
    assert checksums(None) == before
    shared = checksums({"auth": {"audience": "copilot-prod"}})
    assert all(shared[name] != before[name] for name in before)
    ingest_only = checksums({"ingest": {"embeddingThreads": 2}})
    assert {name for name in before if ingest_only[name] != before[name]} == {"ingest"}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"ingest": {"replicaCount": "two"}}, "/ingest/replicaCount"),
        ({"retrieval": {"replicas": 2}}, "replicas"),
        ({"generation": {"engine": "tgi"}}, "/generation/engine"),
        (
            {"generation": {"modelVolume": {"kind": "pvc"}}},
            "generation.modelVolume.existingClaim is required",
        ),
        ({"bots": {"enabled": True}}, "bots.existingSecret is required"),
        # KubeRay is not supported: the services cannot join an outside Ray cluster.
        ({"generation": {"rayService": {"enabled": True}}}, "rayService"),
        (
            {"metrics": {"serviceMonitor": {"enabled": True}}},
            "metrics.serviceMonitor.enabled needs metrics.enabled",
        ),
        ({"metrics": {"enabled": True, "port": 50052}}, "metrics.port 50052 is also a port of retrieval"),
        (
            {"metrics": {"enabled": True, "port": 8080}},
            "metrics.port 8080 is also a port of monitor (50054, 8080)",
        ),
        # Non-root without capabilities: no port below 1024.
        ({"metrics": {"port": 80}}, "/metrics/port"),
        ({"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "/metrics/serviceMonitor/interval"),
        ({"kafka": {"securityProtocol": "SASL_SCRAM"}}, "/kafka/securityProtocol"),
        ({"kafka": {"securityProtocol": "SASL_SSL"}}, "kafka.sasl.mechanism is required"),
        (
            {
                "kafka": {
                    "securityProtocol": "SASL_SSL",
                    "sasl": {"mechanism": "PLAIN", "username": "copilot"},
                }
            },
            "kafka.existingSecret is required",
        ),
        ({"kafka": {"tls": {"caSecret": "kafka-ca"}}}, "kafka.tls needs kafka.securityProtocol SSL"),
        (
            {"kafka": {"securityProtocol": "SSL", "sasl": {"username": "copilot"}}},
            "kafka.existingSecret need kafka.securityProtocol SASL_SSL or SASL_PLAINTEXT, not SSL",
        ),
        ({"retrieval": {"search": {"reranker": "colbert"}}}, "/retrieval/search/reranker"),
        ({"monitor": {"reviewBaseUrl": "review.corp.example"}}, "/monitor/reviewBaseUrl"),
        ({"ingest": {"tombstoneRetentionSeconds": 0}}, "/ingest/tombstoneRetentionSeconds"),
        ({"monitor": {"alerts": {"minSeverity": "CRITICAL"}}}, "/monitor/alerts/minSeverity"),
        # vLLM gives each served model a replica asking for one GPU; llama.cpp in the image is CPU-only.
        (
            {"generation": {"engine": "vllm"}},
            "generation.engine=vllm needs GPUs: set generation.gpu.count to 1",
        ),
        (
            {"generation": {"engine": "vllm", "gpu": {"count": 2}}},
            "generation.gpu.count=2 but vLLM serves 1 model(s), one GPU each: 1 GPU(s) would sit idle",
        ),
        (
            {"generation": {"engine": "vllm", "gpu": {"count": 1}, "extraModels": ["qwen2.5-coder-0.5b"]}},
            "generation.gpu.count=1 is too few for 2 served models",
        ),
        (
            {"generation": {"gpu": {"count": 1}}},
            "generation.gpu.count=1 with generation.engine=llama_cpp: the image's llama.cpp runs on CPUs",
        ),
        (
            {"generation": {"database": {"existingSecret": "db", "readers": ["group:finance"]}}},
            "generation.database.tenant must name the tenant",
        ),
        (
            {"bots": {"enabled": True, "existingSecret": "b", "teams": {"enabled": True, "appId": "a"}}},
            "bots.teams.allowedTenantIds must name the Azure AD tenants",
        ),
        ({"monitor": {"autoscaling": {"enabled": True}}}, "monitor.autoscaling needs a shared database"),
        (
            {"bots": {"enabled": True, "existingSecret": "b", "autoscaling": {"enabled": True}}},
            "bots.autoscaling needs a shared database",
        ),
        ({"monitor": {"replicaCount": 2}}, "monitor.replicaCount=2 needs a shared database"),
        (
            {"bots": {"enabled": True, "existingSecret": "b", "replicaCount": 3}},
            "bots.replicaCount=3 needs a shared database",
        ),
        ({"evalGate": {"enabled": True}}, "evalGate.credentials.existingSecret is required"),
        ({"evalGate": {"enabled": True, "hook": "pre-install"}}, "/evalGate/hook"),
        (
            {"evalGate": {"enabled": True, "redteam": {"file": "suites/redteam.jsonl"}}},
            "/evalGate/redteam/file",
        ),
        (
            {
                "evalGate": {"enabled": True, "credentials": {"existingSecret": "u"}},
                "generation": {"enabled": False},
            },
            "evalGate needs retrieval and generation enabled",
        ),
        (
            {
                "evalGate": {
                    "enabled": True,
                    "credentials": {"existingSecret": "u"},
                    "redteam": {"documentsConfigMap": "docs"},
                },
                "ingest": {"enabled": False},
            },
            "evalGate.redteam.documentsConfigMap needs ingest enabled",
        ),
    ],
)
def test_bad_values_are_refused_with_the_reason(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        check.render(values)


def load_settings(
    manifests: list[Any],
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    secrets: dict[tuple[str, str], str] | None = None,
) -> Any:
    """NAME's settings, loaded from the environment its pod would get: its ConfigMap, its literal env
    entries, and for each secretKeyRef the value SECRETS holds under (Secret name, key); a ref SECRETS
    lacks is left unset, as an optional key missing from its Secret would be."""
    (container,) = one(manifests, "Deployment", f"copilot-{name}")["spec"]["template"]["spec"]["containers"]
    for variable in list(os.environ):
        if variable.startswith("COPILOT_"):
            monkeypatch.delenv(variable)
    for variable, value in one(manifests, "ConfigMap", f"copilot-{name}-env")["data"].items():
        monkeypatch.setenv(variable, value)
    for entry in container["env"]:
        if "value" in entry:
            monkeypatch.setenv(entry["name"], entry["value"])
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            if (ref["name"], ref["key"]) in (secrets or {}):
                monkeypatch.setenv(entry["name"], (secrets or {})[ref["name"], ref["key"]])
    return settings_classes()[name]()


@pytest.mark.parametrize("profile", PROFILES)
def test_environment_matches_the_services_settings_classes(
    rendered: dict[str, list[Any]], profile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every COPILOT_* variable the chart sets names a real field, and the settings load from them."""
    classes = settings_classes()
    for deployment in find(rendered[profile], "Deployment"):
        name = component(deployment)
        if name not in classes:
            continue
        prefix = f"COPILOT_{name.upper()}_"
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        config = one(rendered[profile], "ConfigMap", f"copilot-{name}-env")["data"]
        names = set(config) | {e["name"] for e in container["env"]}
        for variable in sorted(names - NON_SETTINGS_ENV):
            assert variable.startswith(prefix), variable
            path = variable.removeprefix(prefix).lower().split("__")
            assert field_path_exists(classes[name], path), variable
        settings = load_settings(rendered[profile], name, monkeypatch)
        assert settings.host == "0.0.0.0"
        assert settings.port == next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
        assert settings.telemetry.exporter in ("none", "otlp")
        if name in ("ingest", "retrieval"):
            assert settings.store.kind == "qdrant"  # type: ignore[attr-defined]


def field_path_exists(model: type[BaseModel], path: list[str]) -> bool:
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    nested = field.annotation
    return isinstance(nested, type) and issubclass(nested, BaseModel) and field_path_exists(nested, path[1:])


PLAINTEXT_KAFKA_SETTINGS = {
    "BOOTSTRAP_SERVERS",
    "INTERACTIONS_TOPIC",
    "DOCUMENTS_TOPIC",
    "INGEST_REQUESTS_TOPIC",
    "SPOOL_DIR",
    "SPOOL_MAX_BYTES",
}
SECURE_KAFKA = {
    "kafka": {
        "securityProtocol": "SASL_SSL",
        "sasl": {"mechanism": "SCRAM-SHA-512", "username": "copilot"},
        "existingSecret": "copilot-kafka",
        "existingSecretPasswordKey": "password",
        "tls": {"caSecret": "kafka-ca", "caSecretKey": "ca.pem", "clientSecret": "copilot-kafka-client"},
    },
    "bots": {"enabled": True, "existingSecret": "copilot-bots"},
}

# RetrievalSettings fields that retrieval.search sets.
SEARCH_FIELDS = (
    "default_mode",
    "dense_weight",
    "lexical_weight",
    "rrf_k",
    "merge_adjacent_chunks",
    "max_chunks_per_document",
    "max_audience",
    "reranker",
    "rerank_candidates",
    "rerank_threads",
)


def volume_names(spec: dict[str, Any]) -> set[str]:
    return {v["name"] for v in spec.get("volumes", [])}


@pytest.mark.parametrize("profile", ["default", "trial.yaml"])
def test_plaintext_kafka_sets_no_security_settings(rendered: dict[str, list[Any]], profile: str) -> None:
    manifests = rendered[profile]
    deployments = [d for d in find(manifests, "Deployment") if component(d) in COMPONENTS]
    assert {component(d) for d in deployments} >= {"ingest", "generation", "monitor"}
    for deployment in deployments:
        name = component(deployment)
        config = one(manifests, "ConfigMap", f"copilot-{name}-env")["data"]
        kafka_settings = {k.split("_KAFKA__")[1] for k in config if "_KAFKA__" in k}
        # Retrieval has no Kafka client, so no Kafka settings at all.
        assert kafka_settings == (PLAINTEXT_KAFKA_SETTINGS if name in KAFKA_CLIENTS else set()), name
        spec = deployment["spec"]["template"]["spec"]
        assert not [e["name"] for e in spec["containers"][0]["env"] if "KAFKA" in e["name"]], name
        assert "kafka-tls" not in volume_names(spec), name


def test_the_spool_stops_short_of_its_volumes_size_limit(rendered: dict[str, list[Any]]) -> None:
    """Kubernetes evicts a pod whose emptyDir outgrows its sizeLimit, spool and all."""
    manifests = rendered["default"]
    for deployment in find(manifests, "Deployment"):
        name = component(deployment)
        if name not in KAFKA_CLIENTS:
            continue
        config = one(manifests, "ConfigMap", f"copilot-{name}-env")["data"]
        [limit] = [int(v) for k, v in config.items() if k.endswith("_KAFKA__SPOOL_MAX_BYTES")]
        [volume] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "spool"]
        assert volume["emptyDir"]["sizeLimit"] == "1024Mi", name
        assert limit == 1024 * 1024 * 1024 * 8 // 10, name


def test_kafka_over_sasl_ssl_reaches_every_kafka_client(monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = check.render(SECURE_KAFKA)
    assert [error for m in manifests for error in check.validate(m)] == []
    for name in KAFKA_CLIENTS:
        spec = one(manifests, "Deployment", f"copilot-{name}")["spec"]["template"]["spec"]
        (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "kafka-tls"]
        assert mount["readOnly"] is True
        (volume,) = [v for v in spec["volumes"] if v["name"] == "kafka-tls"]
        files = {
            item["path"]: (source["secret"]["name"], item["key"])
            for source in volume["projected"]["sources"]
            for item in source["secret"]["items"]
        }
        assert files == {
            "ca.crt": ("kafka-ca", "ca.pem"),
            "tls.crt": ("copilot-kafka-client", "tls.crt"),
            "tls.key": ("copilot-kafka-client", "tls.key"),
        }
        settings = load_settings(manifests, name, monkeypatch, {("copilot-kafka", "password"): "s3cret"})
        directory = mount["mountPath"]
        assert settings.kafka.client_options() == {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "copilot",
            "sasl_plain_password": "s3cret",
            "ssl_cafile": f"{directory}/ca.crt",
            "ssl_certfile": f"{directory}/tls.crt",
            "ssl_keyfile": f"{directory}/tls.key",
        }, name
    retrieval = one(manifests, "Deployment", "copilot-retrieval")["spec"]["template"]["spec"]
    assert "kafka-tls" not in volume_names(retrieval)
    assert not [k for k in one(manifests, "ConfigMap", "copilot-retrieval-env")["data"] if "KAFKA" in k]


def test_kafka_over_ssl_with_the_system_cas_mounts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = check.render({"kafka": {"securityProtocol": "SSL"}})
    spec = one(manifests, "Deployment", "copilot-generation")["spec"]["template"]["spec"]
    assert "kafka-tls" not in volume_names(spec)
    settings = load_settings(manifests, "generation", monkeypatch)
    assert settings.kafka.client_options() == {"security_protocol": "SSL"}


def test_monitor_serves_the_review_page_and_keeps_sqlite_on_a_claim_by_default(
    rendered: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = rendered["default"]
    spec = one(manifests, "Deployment", "copilot-monitor")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    settings = load_settings(manifests, "monitor", monkeypatch)
    http_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    assert settings.http_host == "0.0.0.0"
    assert settings.http_port == http_port == 8080
    service_ports = one(manifests, "Service", "copilot-monitor")["spec"]["ports"]
    assert {"name": "http", "port": 8080, "targetPort": "http"}.items() <= next(
        p for p in service_ports if p["name"] == "http"
    ).items()
    # SQLite on the claim: the file lives on the mounted volume, not on the read-only root.
    assert settings.database_url.get_secret_value() == ""
    (data,) = [m for m in container["volumeMounts"] if m["name"] == "data"]
    assert Path(settings.database_target()).parent == Path(data["mountPath"])
    (volume,) = [v for v in spec["volumes"] if v["name"] == "data"]
    assert find(manifests, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert settings.alert_webhook_url is None and settings.alert_slack_webhook_url is None
    assert not [e for e in container["env"] if "ALERT" in e["name"] or "DATABASE" in e["name"]]


def test_monitor_on_postgresql_with_slack_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    alert_peer = {"ipBlock": {"cidr": "203.0.113.0/24"}}
    manifests = check.render(
        {
            "monitor": {
                "postgresql": {"existingSecret": "monitor-db"},
                "alerts": {
                    "existingSecret": "monitor-alerts",
                    "minSeverity": "MEDIUM",
                    "ratePerMinute": 6,
                    "burst": 2,
                    "dedupWindowSeconds": 60,
                },
                "reviewBaseUrl": "https://review.corp.example/",
            },
            "networkPolicy": {"egress": {"alerts": {"to": [alert_peer]}}},
        }
    )
    url = "postgresql+psycopg://monitor:pw@db.data.svc:5432/monitor"
    slack = "https://hooks.slack.com/services/T000/B000/XXXX"
    # The Secret holds only the Slack key: the generic webhook's optional ref stays unset.
    settings = load_settings(
        manifests,
        "monitor",
        monkeypatch,
        {("monitor-db", "database-url"): url, ("monitor-alerts", "slack-webhook-url"): slack},
    )
    assert settings.database_target() == url
    assert settings.alert_webhook_url is None
    assert settings.alert_slack_webhook_url is not None
    assert settings.alert_slack_webhook_url.get_secret_value() == slack
    assert settings.alert_severity().name == "MEDIUM"
    assert (settings.alert_rate_per_minute, settings.alert_burst, settings.alert_dedup_window_s) == (6, 2, 60)
    assert settings.review_base_url == "https://review.corp.example"

    spec = one(manifests, "Deployment", "copilot-monitor")["spec"]["template"]["spec"]
    env = spec["containers"][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs["COPILOT_MONITOR_ALERT_WEBHOOK_URL"]["optional"] is True
    assert refs["COPILOT_MONITOR_ALERT_SLACK_WEBHOOK_URL"]["optional"] is True
    assert "optional" not in refs["COPILOT_MONITOR_DATABASE_URL"]
    assert "COPILOT_MONITOR_DATABASE" not in one(manifests, "ConfigMap", "copilot-monitor-env")["data"]
    assert "data" not in volume_names(spec)
    assert find(manifests, "PersistentVolumeClaim") == []
    egress = one(manifests, "NetworkPolicy", "copilot-monitor")["spec"]["egress"]
    assert {"to": [alert_peer], "ports": [{"port": 443, "protocol": "TCP"}]} in egress
    assert 5432 in {p["port"] for rule in egress for p in rule.get("ports", [])}


def test_search_parsing_and_tombstone_values_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = check.render(None)
    # The chart's defaults are the services' own.
    retrieval = load_settings(defaults, "retrieval", monkeypatch)
    for field in SEARCH_FIELDS:
        assert getattr(retrieval, field) == RetrievalSettings.model_fields[field].default, field
    ingest = load_settings(defaults, "ingest", monkeypatch)
    assert ingest.parse_limits() == DEFAULT_LIMITS
    for field in ("tombstone_retention_s", "tombstone_purge_interval_s"):
        assert getattr(ingest, field) == IngestSettings.model_fields[field].default, field

    manifests = check.render(
        {
            "retrieval": {
                "search": {
                    "defaultMode": "lexical",
                    "denseWeight": 0.5,
                    "lexicalWeight": 2,
                    "rrfK": 30,
                    "mergeAdjacentChunks": False,
                    "maxChunksPerDocument": 0,
                    "maxAudience": 50,
                    "reranker": "none",
                    "rerankCandidates": 20,
                    "rerankThreads": 2,
                }
            },
            "ingest": {
                "limits": {
                    "maxUnzippedBytes": 4294967296,
                    "maxCompressionRatio": 40.5,
                    "maxSpreadsheetCells": 20000000,
                },
                "tombstoneRetentionSeconds": 172800,
                "tombstonePurgeIntervalSeconds": 600,
            },
        }
    )
    retrieval = load_settings(manifests, "retrieval", monkeypatch)
    assert [getattr(retrieval, field) for field in SEARCH_FIELDS] == [
        Mode.LEXICAL,
        0.5,
        2.0,
        30.0,
        False,
        0,
        50,
        "none",
        20,
        2,
    ]
    ingest = load_settings(manifests, "ingest", monkeypatch)
    assert ingest.parse_limits() == ParseLimits(4294967296, 40.5, 20000000)
    assert (ingest.tombstone_retention_s, ingest.tombstone_purge_interval_s) == (172800, 600)


def test_realm_export_matches_what_the_services_check() -> None:
    realm = json.loads((check.CHART / "files" / "keycloak-realm.json").read_text())
    assert realm["realm"] == "copilot"
    roles = {r["name"] for r in realm["roles"]["realm"]}
    assert roles == {"copilot-ingest", "copilot-reviewer", "copilot-auditor", "copilot-admin"}
    checked = {
        IngestSettings().ingest_role,
        MonitorSettings().reviewer_role,
        RetrievalSettings().auditor_role,
    }
    assert checked < roles
    clients = {c["clientId"]: c for c in realm["clients"]}
    mappers = {m["protocolMapper"]: m["config"] for m in clients["copilot"]["protocolMappers"]}
    defaults = helm.Chart.load(check.CHART).values
    assert mappers["oidc-audience-mapper"]["included.client.audience"] == defaults["auth"]["audience"]
    assert mappers["oidc-group-membership-mapper"]["claim.name"] == "groups"
    assert mappers["oidc-usermodel-attribute-mapper"]["claim.name"] == "tenant"
    # Users sign in through the browser or the device flow; their passwords never pass through an app.
    assert clients["copilot"]["publicClient"] is True
    assert clients["copilot"]["directAccessGrantsEnabled"] is False
    assert {g["name"] for g in realm["groups"]} >= {"finance", "engineering", "legal"}


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None)


def test_helm_test_pod_checks_every_service_and_fails_on_one_not_serving(
    rendered: dict[str, list[Any]], health_server: tuple[str, health.HealthServicer]
) -> None:
    (pod,) = find(rendered["trial.yaml"], "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["python", "-c"]
    services = {
        f"{s['metadata']['name']}:{p['port']}"
        for s in find(rendered["trial.yaml"], "Service")
        if component(s) in COMPONENTS
        for p in s["spec"]["ports"]
        if p["name"] == "grpc"
    }
    assert set(command[3:]) == services and len(services) == 5

    target, servicer = health_server
    script = command[2]
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    ok = subprocess.run([sys.executable, "-c", script, target], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert f"{target}: SERVING" in ok.stdout
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    failed = subprocess.run(
        [sys.executable, "-c", script, target], capture_output=True, text=True, timeout=60
    )
    assert failed.returncode == 1
    assert f"not serving: {target}" in failed.stderr


def test_services_that_embed_read_the_onnx_export_baked_into_the_image(
    rendered: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The root filesystem is read-only: the embedder's ONNX export must come from the image's directory
    (the Dockerfile bakes it there; tests/integration/test_dockerfile.py checks that side)."""
    for profile in PROFILES:
        manifests = rendered[profile]
        for deployment in find(manifests, "Deployment"):
            name = component(deployment)
            config = one(manifests, "ConfigMap", f"copilot-{name}-env")["data"]
            variable = f"COPILOT_{name.upper()}_EMBEDDING_CACHE_DIR"
            if name == "bots":  # the bots embed nothing
                assert variable not in config
                continue
            assert config[variable] == "/opt/copilot/embedding", (profile, name)
    for name in ("ingest", "retrieval", "generation", "monitor"):
        settings = load_settings(rendered["default"], name, monkeypatch)
        assert settings.embedding_cache_dir == Path("/opt/copilot/embedding"), name


EVAL_GATE = {
    "evalGate": {
        "enabled": True,
        "variants": ["candidate"],
        "tags": ["ci"],
        "credentials": {"existingSecret": "copilot-eval-users"},
        "keycloak": {"existingSecret": "copilot-eval-client"},
        "redteam": {"documentsConfigMap": "copilot-eval-redteam-docs"},
    }
}


def pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    return dict(doc["spec"]["template"]["metadata"]["labels"])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and In expressions) against a pod's labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_eval_gate_is_off_by_default(rendered: dict[str, list[Any]]) -> None:
    for profile in ("default", "gpu-1.yaml", "trial.yaml"):
        assert find(rendered[profile], "Job") == []
        assert not [p for p in find(rendered[profile], "NetworkPolicy") if is_hook(p)]


def test_eval_gate_job_runs_the_golden_set_and_the_red_team_under_the_network_policies(
    rendered: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from copilot.cli import build_parser
    from services.evaluation.settings import EvalSettings

    manifests = rendered["gpu-multi.yaml"]  # the example profile that turns the gate on
    job = one(manifests, "Job", "copilot-eval-gate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-upgrade"
    assert job["spec"]["backoffLimit"] == 0
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}

    # The command is one `copilot eval` accepts, with the red team, the baseline and the candidate.
    assert container["command"][0] == "copilot"
    args = build_parser().parse_args(container["command"][1:])
    assert args.command == "eval"
    assert args.redteam == Path("/etc/copilot/redteam/redteam.jsonl")
    assert args.set == Path("/etc/copilot/eval/golden.jsonl")
    assert args.variants == Path("/etc/copilot/eval/variants.yaml")
    assert args.baseline == Path("/etc/copilot/eval/baseline.json")
    assert args.variant == ["candidate"]
    assert args.out == Path("/reports") and "/reports" in mounts
    # Each file it reads is mounted from the ConfigMap.
    for path in (args.set, args.variants, args.baseline):
        assert mounts[str(path.parent)]["name"] == "eval"
    assert mounts[str(args.redteam)]["subPath"] == "redteam.jsonl"
    # The sample suite's planted documents resolve inside the documents' mount, next to the suite.
    documents = next(m for m in container["volumeMounts"] if m["name"] == "redteam-documents")
    for line in (ROOT / "sample" / "eval" / "redteam.jsonl").read_text().splitlines():
        plant = json.loads(line).get("plant") if line.strip() else None
        if plant:
            planted = args.redteam.parent / plant["file"]
            assert planted.parent == Path(documents["mountPath"]), plant
            assert (ROOT / "sample" / "eval" / plant["file"]).is_file()

    # Its environment loads into the evaluation's settings and names the services' gRPC ports.
    for variable in list(os.environ):
        if variable.startswith("COPILOT_"):
            monkeypatch.delenv(variable)
    for entry in container["env"]:
        if "value" in entry:
            monkeypatch.setenv(entry["name"], entry["value"])
        else:
            assert entry["valueFrom"]["secretKeyRef"] == {
                "name": "copilot-eval-client",
                "key": "client-secret",
            }
            monkeypatch.setenv(entry["name"], "s3cret")
    settings = EvalSettings()
    grpc_ports = {
        component(s): f"{s['metadata']['name']}:{p['port']}"
        for s in find(manifests, "Service")
        for p in s["spec"]["ports"]
        if p["name"] == "grpc"
    }
    targets = {
        "ingest": settings.ingest_target,
        "retrieval": settings.retrieval_target,
        "generation": settings.generation_target,
        "monitor": settings.monitor_target,
    }
    assert targets == {name: grpc_ports[name] for name in targets}
    assert settings.issuer == "https://sso.corp.example/realms/copilot"
    assert settings.client_secret is not None and settings.client_secret.get_secret_value() == "s3cret"
    assert settings.embedding_cache_dir == Path("/opt/copilot/embedding")
    assert settings.credentials_file is not None
    assert mounts[str(settings.credentials_file.parent)]["name"] == "users"
    assert settings.answer_timeout_s == 600

    # The default-deny policy covers the gate's pod; hook policies, made before the Job, let it out to
    # DNS, the realm and the services' gRPC ports, and let it into those services (and nowhere else).
    policies = {p["metadata"]["name"]: p for p in find(manifests, "NetworkPolicy")}
    labels = pod_labels(job)
    assert selects(policies["copilot-default-deny"]["spec"]["podSelector"], labels)
    own = policies["copilot-eval-gate"]
    targets_policy = policies["copilot-eval-gate-targets"]
    for policy in (own, targets_policy):
        assert policy["metadata"]["annotations"]["helm.sh/hook"] == annotations["helm.sh/hook"]
        assert int(policy["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
            annotations["helm.sh/hook-weight"]
        )
    assert selects(own["spec"]["podSelector"], labels)
    assert "ingress" not in own["spec"]
    egress = {(p["port"], p["protocol"]) for rule in own["spec"]["egress"] for p in rule["ports"]}
    assert {
        (53, "UDP"),
        (443, "TCP"),
        (50051, "TCP"),
        (50052, "TCP"),
        (50053, "TCP"),
        (50054, "TCP"),
    } <= egress
    for deployment in find(manifests, "Deployment"):
        called = component(deployment) in targets
        assert selects(targets_policy["spec"]["podSelector"], pod_labels(deployment)) == called, component(
            deployment
        )
    (rule,) = targets_policy["spec"]["ingress"]
    assert [selects(peer["podSelector"], labels) for peer in rule["from"]] == [True]
    assert rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]


def test_eval_gate_without_network_policies_or_red_team_documents() -> None:
    manifests = check.render(
        {
            "evalGate": {"enabled": True, "hook": "post-upgrade", "credentials": {"existingSecret": "u"}},
            "networkPolicy": {"enabled": False},
            "monitor": {"enabled": False},
        }
    )
    assert [error for m in manifests for error in check.validate(m)] == []
    assert find(manifests, "NetworkPolicy") == []
    job = one(manifests, "Job", "copilot-eval-gate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "COPILOT_EVAL_MONITOR_TARGET" not in env and "COPILOT_EVAL_CLIENT_SECRET" not in env
    assert "--baseline" in container["command"] and "--redteam" in container["command"]
    assert "redteam-documents" not in volume_names(job["spec"]["template"]["spec"])


@pytest.mark.parametrize("profile", PROFILES)
def test_hpas_scale_their_deployments_and_only_where_autoscaling_is_on(
    rendered: dict[str, list[Any]], profile: str
) -> None:
    values = helm.Chart.load(check.CHART).merge_values(values_of(profile))
    manifests = rendered[profile]
    hpas = {component(h): h for h in find(manifests, "HorizontalPodAutoscaler")}
    scaled = {c for c in COMPONENTS if values[c]["enabled"] and values[c]["autoscaling"]["enabled"]}
    assert set(hpas) == scaled
    for name, hpa in hpas.items():
        autoscaling = values[name]["autoscaling"]
        deployment = one(manifests, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        assert component(deployment) == name
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        # The HPA owns the replica count: a fixed one in the Deployment would fight it on every upgrade.
        assert "replicas" not in deployment["spec"], name
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
            autoscaling["minReplicas"],
            autoscaling["maxReplicas"],
        )
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert (
            metric["resource"]["target"]["averageUtilization"]
            == autoscaling["targetCPUUtilizationPercentage"]
        )
    for deployment in find(manifests, "Deployment"):
        if component(deployment) not in scaled:
            assert deployment["spec"]["replicas"] == values[component(deployment)]["replicaCount"]


def test_monitor_autoscales_only_on_postgresql(rendered: dict[str, list[Any]]) -> None:
    hpa = one(rendered["gpu-multi.yaml"], "HorizontalPodAutoscaler", "copilot-monitor")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    assert find(rendered["default"], "HorizontalPodAutoscaler", "copilot-monitor") == []


def test_extra_env_and_env_from_reach_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = check.render(
        {
            "ingest": {
                "extraEnv": [{"name": "COPILOT_INGEST_MAX_RECEIVE_MESSAGE_BYTES", "value": "134217728"}],
                "extraEnvFrom": [{"secretRef": {"name": "ingest-extra"}}],
            }
        }
    )
    (container,) = one(manifests, "Deployment", "copilot-ingest")["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [
        {"configMapRef": {"name": "copilot-ingest-env"}},
        {"secretRef": {"name": "ingest-extra"}},
    ]
    assert {"name": "COPILOT_INGEST_MAX_RECEIVE_MESSAGE_BYTES", "value": "134217728"} in container["env"]
    assert load_settings(manifests, "ingest", monkeypatch).max_receive_message_bytes == 134217728
    # Only the component they were given to.
    (retrieval,) = one(manifests, "Deployment", "copilot-retrieval")["spec"]["template"]["spec"]["containers"]
    assert retrieval["envFrom"] == [{"configMapRef": {"name": "copilot-retrieval-env"}}]


@pytest.mark.parametrize(
    "values, secret",
    [
        (
            {"vectorStore": {"existingSecret": "qdrant", "existingSecretKey": "api-key"}},
            ("qdrant", "api-key"),
        ),
        (
            {"qdrant": {"enabled": True, "apiKey": {"existingSecret": "trial-qdrant", "key": "k"}}},
            ("trial-qdrant", "k"),
        ),
    ],
)
def test_qdrant_api_key_reaches_the_store_settings(
    values: dict[str, Any], secret: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = check.render(values)
    for name in ("ingest", "retrieval"):
        settings = load_settings(manifests, name, monkeypatch, {secret: "qdrant-key"})
        assert settings.store.qdrant_api_key is not None, name
        assert settings.store.qdrant_api_key.get_secret_value() == "qdrant-key"
    # The services that never talk to Qdrant get no key.
    for name in ("generation", "monitor"):
        (container,) = one(manifests, "Deployment", f"copilot-{name}")["spec"]["template"]["spec"][
            "containers"
        ]
        assert not [e for e in container["env"] if "QDRANT" in e["name"]], name


def test_keycloak_issuer_audience_and_jwks_reach_every_service(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = {
        "issuer": "https://login.corp.example/realms/acme",
        "audience": "acme-copilot",
        "jwksUrl": "https://login.corp.example/realms/acme/protocol/openid-connect/certs",
    }
    manifests = check.render({"auth": auth, "bots": {"enabled": True, "existingSecret": "b"}})
    for name in settings_classes():
        settings = load_settings(manifests, name, monkeypatch)
        assert (settings.auth.issuer, settings.auth.audience, settings.auth.jwks_url) == (
            auth["issuer"],
            auth["audience"],
            auth["jwksUrl"],
        ), name
    bots = one(manifests, "ConfigMap", "copilot-bots-env")["data"]
    assert bots["COPILOT_BOTS_KEYCLOAK__SERVER_URL"] == "https://login.corp.example/"
    assert bots["COPILOT_BOTS_KEYCLOAK__REALM"] == "acme"
    assert bots["COPILOT_BOTS_KEYCLOAK__AUDIENCE"] == "acme-copilot"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_deployment_runs_as_a_rendered_service_account(
    rendered: dict[str, list[Any]], profile: str
) -> None:
    accounts = {a["metadata"]["name"] for a in find(rendered[profile], "ServiceAccount")}
    for deployment in find(rendered[profile], "Deployment"):
        name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        assert name in accounts, (deployment["metadata"]["name"], name)


def test_an_existing_service_account_is_used_and_not_created() -> None:
    manifests = check.render({"retrieval": {"serviceAccount": {"create": False, "name": "platform-sa"}}})
    spec = one(manifests, "Deployment", "copilot-retrieval")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "platform-sa"
    assert find(manifests, "ServiceAccount", "copilot-retrieval") == []
    assert find(manifests, "ServiceAccount", "platform-sa") == []


@pytest.mark.parametrize("profile", PROFILES)
def test_every_container_requests_cpu_and_memory_and_limits_memory(
    rendered: dict[str, list[Any]], profile: str
) -> None:
    containers = [
        (where, c)
        for where, spec in pod_specs(rendered[profile])
        for c in [*spec["containers"], *spec.get("initContainers", [])]
    ]
    assert containers
    for where, container in containers:
        resources = container.get("resources", {})
        assert {"cpu", "memory"} <= set(resources.get("requests", {})), (where, container["name"])
        assert "memory" in resources.get("limits", {}), (where, container["name"])


def test_validated_kubernetes_versions_cover_what_chart_yaml_claims() -> None:
    chart = check.CHART / "Chart.yaml"
    assert check.kube_version_problems(chart) == []
    assert (
        check.KUBE_VERSIONS[0] == "1.27.0" and check.KUBE_VERSIONS[-1] == kubernetes_validate.latest_version()
    )
    # Helm's lint does not hold the versions to kubeVersion; this check does, both ways.
    assert check.kube_version_problems(chart, ("1.26.0", "1.27.0")) == [
        "Kubernetes 1.26.0 is older than Chart.yaml's kubeVersion >=1.27.0-0"
    ]
    assert check.kube_version_problems(chart, ("1.30.0",)) == [
        "Chart.yaml's kubeVersion >=1.27.0-0 admits 1.27.0, not validated"
    ]


def test_validation_runs_against_every_version(rendered: dict[str, list[Any]]) -> None:
    """A field newer than the oldest version is an error there, not everywhere."""
    deployment = next(m for m in rendered["default"] if m.kind == "Deployment")
    doc = json.loads(json.dumps(deployment.doc))
    # Pod-level resources arrived in Kubernetes 1.32 (alpha) and are in the newest schemas.
    doc["spec"]["template"]["spec"]["resources"] = {"requests": {"cpu": "1"}}
    errors = check.validate(check.Manifest(deployment.template, doc))
    assert [e.split(": ")[1] for e in errors] == ["Kubernetes 1.27.0", "Kubernetes 1.30.0"]


METRICS_PORT = 9464
# The ServiceMonitor fields the chart may set (Prometheus Operator API, monitoring.coreos.com/v1), standing
# in for the CRD schema kubernetes-validate lacks (helm/check.py skips that kind).
SERVICE_MONITOR_SPEC_FIELDS = {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels"}
SERVICE_MONITOR_ENDPOINT_FIELDS = {"port", "path", "scheme", "interval", "scrapeTimeout"}
PROMETHEUS_DURATION = re.compile(
    r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$"
)


def test_metrics_are_off_by_default(rendered: dict[str, list[Any]]) -> None:
    for profile in ("default", "gpu-1.yaml", "trial.yaml"):
        manifests = rendered[profile]
        assert find(manifests, "ServiceMonitor") == []
        for m in manifests:
            if m.kind == "ConfigMap":
                assert not [k for k in m.doc.get("data", {}) if "PROMETHEUS" in k], (profile, m.name)
            elif m.kind == "Service":
                assert "metrics" not in {p["name"] for p in m.doc["spec"]["ports"]}, (profile, m.name)
            elif m.kind == "NetworkPolicy" and not is_hook(m.doc):
                rules = m.doc["spec"].get("ingress", [])
                assert "metrics" not in {p["port"] for r in rules for p in r.get("ports", [])}, m.name


def test_metrics_port_reaches_every_services_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = check.render({"metrics": {"enabled": True}, "bots": {"enabled": True, "existingSecret": "b"}})
    assert [error for m in manifests for error in check.validate(m)] == []
    for name in COMPONENTS:
        settings = load_settings(manifests, name, monkeypatch)
        # The settings' default host is loopback, where Prometheus could not reach the endpoint.
        assert (settings.telemetry.prometheus_port, settings.telemetry.prometheus_host) == (
            METRICS_PORT,
            "0.0.0.0",
        ), name
        assert settings.telemetry.exporter == "none", name  # scraping needs no OTLP collector
        (container,) = one(manifests, "Deployment", f"copilot-{name}")["spec"]["template"]["spec"][
            "containers"
        ]
        assert {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"} in container["ports"]
        service_ports = {p["name"]: p for p in one(manifests, "Service", f"copilot-{name}")["spec"]["ports"]}
        assert (service_ports["metrics"]["port"], service_ports["metrics"]["targetPort"]) == (
            METRICS_PORT,
            "metrics",
        )
    # Metrics without a ServiceMonitor: for a Prometheus that finds its targets another way.
    assert find(manifests, "ServiceMonitor") == []


def test_service_monitor_selects_every_services_metrics_port(rendered: dict[str, list[Any]]) -> None:
    manifests = rendered["gpu-multi.yaml"]  # the example profile that turns the ServiceMonitor on
    values = check.load_values(check.EXAMPLES / "gpu-multi.yaml")
    assert values is not None
    (monitor,) = find(manifests, "ServiceMonitor")
    assert (monitor["apiVersion"], monitor["metadata"]["name"]) == ("monitoring.coreos.com/v1", "copilot")
    # The label the operator's Prometheus selects ServiceMonitors by.
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    spec = monitor["spec"]
    assert set(spec) <= SERVICE_MONITOR_SPEC_FIELDS
    assert spec["namespaceSelector"] == {"matchNames": [check.NAMESPACE]}
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= SERVICE_MONITOR_ENDPOINT_FIELDS
    assert (endpoint["port"], endpoint["path"], endpoint["scheme"]) == ("metrics", "/metrics", "http")
    assert endpoint["interval"] == values["metrics"]["serviceMonitor"]["interval"]
    assert PROMETHEUS_DURATION.match(endpoint["interval"])
    selected = {
        component(s): s
        for s in find(manifests, "Service")
        if selects(spec["selector"], s["metadata"]["labels"])
    }
    enabled = {name for name in COMPONENTS if find(manifests, "Deployment", f"copilot-{name}")}
    assert set(selected) == enabled == {"ingest", "retrieval", "generation", "monitor"}
    for name, service in selected.items():
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert ports[endpoint["port"]]["targetPort"] == "metrics", name
        # ... which is the container port the service's settings listen on.
        (container,) = one(manifests, "Deployment", f"copilot-{name}")["spec"]["template"]["spec"][
            "containers"
        ]
        (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"]
        env = one(manifests, "ConfigMap", f"copilot-{name}-env")["data"]
        assert env[f"COPILOT_{name.upper()}_TELEMETRY__PROMETHEUS_PORT"] == str(port), name
    # With every component and the bundled Qdrant: each component's Service, and not Qdrant's.
    trial_values = check.load_values(check.EXAMPLES / "trial.yaml")
    assert trial_values is not None
    trial = check.render({**trial_values, "metrics": values["metrics"]})
    (trial_monitor,) = find(trial, "ServiceMonitor")
    scraped = {
        s["metadata"]["name"]
        for s in find(trial, "Service")
        if selects(trial_monitor["spec"]["selector"], s["metadata"]["labels"])
    }
    assert scraped == {f"copilot-{name}" for name in COMPONENTS}


def admitted(policy: dict[str, Any], namespace: dict[str, str], pod: dict[str, str], port: str) -> bool:
    """Whether POLICY lets a pod with labels POD, in a namespace with labels NAMESPACE (not the release's),
    in on the named PORT."""
    for rule in policy["spec"].get("ingress", []):
        if port not in {p["port"] for p in rule.get("ports", [])}:
            continue
        if "from" not in rule:
            return True
        for peer in rule["from"]:
            # A peer without a namespaceSelector means the policy's own namespace, which this pod is not in.
            in_namespace = "namespaceSelector" in peer and selects(peer["namespaceSelector"], namespace)
            if in_namespace and selects(peer.get("podSelector", {}), pod):
                return True
    return False


def test_network_policies_admit_the_scrapers_to_the_metrics_port_only(rendered: dict[str, list[Any]]) -> None:
    manifests = rendered["gpu-multi.yaml"]
    prometheus = {"app.kubernetes.io/name": "prometheus"}
    observability = {"kubernetes.io/metadata.name": "observability"}
    for name in ("ingest", "retrieval", "generation", "monitor"):
        policy = one(manifests, "NetworkPolicy", f"copilot-{name}")
        assert admitted(policy, observability, prometheus, "metrics"), name
        assert not admitted(policy, observability, prometheus, "grpc"), name
        # Another pod of that namespace, or Prometheus elsewhere, is not a scraper.
        assert not admitted(policy, observability, {"app.kubernetes.io/name": "grafana"}, "metrics"), name
        assert not admitted(policy, {"kubernetes.io/metadata.name": "default"}, prometheus, "metrics"), name
    # Empty scrapers: any pod may scrape, as bots.http.from works.
    open_metrics = check.render({"metrics": {"enabled": True, "scrapers": []}})
    for name in ("ingest", "retrieval", "generation", "monitor"):
        policy = one(open_metrics, "NetworkPolicy", f"copilot-{name}")
        assert admitted(policy, {"kubernetes.io/metadata.name": "default"}, {"app": "anything"}, "metrics"), (
            name
        )
        assert not admitted(
            policy, {"kubernetes.io/metadata.name": "default"}, {"app": "anything"}, "grpc"
        ), name


def test_the_monitor_maps_roles_to_groups_as_retrieval_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retrieval lets a role's holders read as its groups; the monitor's ACL check must count the same
    groups, or every passage granted that way would be flagged as a leak."""
    mapping = {"auditor": ["finance", "legal"]}
    manifests = check.render({"retrieval": {"roleGroups": mapping}})
    assert load_settings(manifests, "retrieval", monkeypatch).role_groups == mapping
    assert load_settings(manifests, "monitor", monkeypatch).role_groups == mapping
