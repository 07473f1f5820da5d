"""deploy/k8s renders, validates against the Kubernetes schemas and agrees with the code it deploys."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from launcher.settings import SERVICE_SETTINGS, StackSettings
from launcher.topics import ALL_TOPICS
from shared.kafka import TopicConfig
from shared.settings import CommonSettings, describe, load
from tests.conftest import REPO_ROOT
from tests.deploy.commands import chorus_or_python_commands, problem
from tests.deploy.kustomize import build
from tests.deploy.operator_schemas import check_custom_resource

K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("small", "production")
KUBERNETES_VERSION = "1.32.0"  # the oldest minor the manifests promise to run on
CORE_GROUPS = {"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2"}
KNOWN_SETTINGS = {
    row[0] for cls in (CommonSettings, StackSettings, *SERVICE_SETTINGS.values()) for row in describe(cls)
}
# Each consumer group and the topic it reads, as the services' agents name them.
GROUPS = {
    "embed": [("chorus-embed", "chorus.docs")],
    "cluster": [("chorus-cluster", "chorus.embedded")],
    "ingest": [
        ("chorus-ingest-events", "chorus.raw.events"),
        ("chorus-ingest-streamchat", "chorus.raw.streamchat"),
        ("chorus-ingest-tavus", "chorus.raw.tavus"),
    ],
}
Resources = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> Resources:
    resources = build(K8S / "overlays" / request.param)
    keyed = {(r["kind"], r["metadata"]["name"]): r for r in resources}
    assert len(keyed) == len(resources), "two resources share a kind and name"
    return keyed


def of_kind(resources: Resources, kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for (k, name), r in resources.items() if k == kind}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_subset_renders_what_kubectl_kustomize_renders(overlay: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the other tests use the subset alone")
    result = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    theirs = {(r["kind"], r["metadata"]["name"]): r for r in yaml.safe_load_all(result.stdout)}
    mine = {(r["kind"], r["metadata"]["name"]): r for r in build(K8S / "overlays" / overlay)}
    assert mine == theirs


def test_core_resources_match_the_kubernetes_schemas(rendered: Resources) -> None:
    core = [r for r in rendered.values() if r["apiVersion"] in CORE_GROUPS]
    assert {r["kind"] for r in core} == {
        "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "Job", "HorizontalPodAutoscaler",
    }  # fmt: skip
    for resource in core:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_schemas_reject_a_wrong_field() -> None:
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_custom_resources_match_their_operators_fields(rendered: Resources) -> None:
    custom = [r for r in rendered.values() if r["apiVersion"] not in CORE_GROUPS]
    assert {r["kind"] for r in custom} == {
        "Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "ScaledObject", "ServiceMonitor", "PrometheusRule",
    }  # fmt: skip
    assert [(r["kind"], r["metadata"]["name"], check_custom_resource(r)) for r in custom] == [
        (r["kind"], r["metadata"]["name"], []) for r in custom
    ]


@pytest.mark.parametrize("service", list(SERVICE_SETTINGS))
def test_each_service_is_probed_on_its_port_with_resources_and_a_budget(rendered: Resources, service: str) -> None:
    deployment = rendered["Deployment", service]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    port = load(SERVICE_SETTINGS[service], {k: v for k, v in env.items() if v is not None}).port
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["command"] == ["python", "-m", f"services.{service}"]
    budget = rendered["PodDisruptionBudget", service]["spec"]
    assert budget["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert rendered["Service", service]["spec"]["ports"][0]["port"] == port


def test_every_command_names_a_real_module_or_chorus_command(rendered: Resources) -> None:
    containers = [
        c
        for r in rendered.values()
        if r["kind"] in ("Deployment", "Job")
        for c in r["spec"]["template"]["spec"]["containers"]
    ]
    commands = [command for c in containers for command in chorus_or_python_commands(c["command"])]
    assert len(commands) == 6  # four services; migrate and topics
    assert [problem(command) for command in commands] == [None] * 6
    bootstrap = rendered["Job", "chorus-bootstrap"]["spec"]["template"]["spec"]["containers"][0]
    assert [c[:2] for c in chorus_or_python_commands(bootstrap["command"])] == [
        ["chorus", "migrate"],
        ["chorus", "topics"],
    ]


def test_every_chorus_variable_is_a_setting(rendered: Resources) -> None:
    names = {k for k in rendered["ConfigMap", "chorus-config"]["data"]} | {
        item["name"]
        for r in rendered.values()
        if r["kind"] in ("Deployment", "Job")
        for c in r["spec"]["template"]["spec"]["containers"]
        for item in c.get("env", [])
        if item["name"].startswith("CHORUS_")
    }
    assert names - KNOWN_SETTINGS == set()


def test_partitions_bound_the_consumers_and_agree_everywhere(rendered: Resources) -> None:
    config = rendered["ConfigMap", "chorus-config"]["data"]
    partitions = int(config["CHORUS_TOPIC_PARTITIONS"])
    assert load(CommonSettings, config).topic_replication_factor == 3
    topics = of_kind(rendered, "KafkaTopic")
    assert {t["spec"]["topicName"] for t in topics.values()} == {topic.name for topic in ALL_TOPICS}
    assert {t["spec"]["partitions"] for t in topics.values()} == {partitions}
    assert {t["spec"]["replicas"] for t in topics.values()} == {3}
    # Retention as `chorus topics` would create the topic from the same settings.
    topic_config = TopicConfig.of(load(CommonSettings, config))
    for topic in ALL_TOPICS:
        (resource,) = [t for t in topics.values() if t["spec"]["topicName"] == topic.name]
        expected = topic_config.new_topic(topic, "").topic_configs["retention.ms"]
        assert str(resource["spec"]["config"]["retention.ms"]) == expected
        assert resource["spec"]["config"]["min.insync.replicas"] == 2
    scaled = of_kind(rendered, "ScaledObject")
    assert set(scaled) == set(GROUPS)
    for service, scaler in scaled.items():
        spec = scaler["spec"]
        assert spec["scaleTargetRef"]["name"] == service and ("Deployment", service) in rendered
        assert spec["maxReplicaCount"] == partitions
        triggers = [(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in spec["triggers"]]
        assert triggers == GROUPS[service]
        assert {t["metadata"]["allowIdleConsumers"] for t in spec["triggers"]} == {"false"}
        assert {t["metadata"]["bootstrapServers"] for t in spec["triggers"]} == {config["CHORUS_KAFKA_BOOTSTRAP"]}


def test_the_consumer_groups_are_the_ones_the_services_join() -> None:
    for service, groups in GROUPS.items():
        source = "".join(path.read_text() for path in (REPO_ROOT / "services" / service).glob("*.py"))
        assert [group for group, _ in groups if f'"{group}"' not in source] == []


def test_kafka_is_three_kraft_brokers_that_survive_losing_one(rendered: Resources) -> None:
    (kafka,) = of_kind(rendered, "Kafka").values()
    (pool,) = of_kind(rendered, "KafkaNodePool").values()
    assert kafka["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
    assert pool["spec"]["replicas"] == 3 and set(pool["spec"]["roles"]) == {"broker", "controller"}
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    broker = kafka["spec"]["kafka"]["config"]
    assert broker["default.replication.factor"] == 3 and broker["min.insync.replicas"] == 2
    bootstrap = rendered["ConfigMap", "chorus-config"]["data"]["CHORUS_KAFKA_BOOTSTRAP"]
    assert bootstrap == f"{kafka['metadata']['name']}-kafka-bootstrap:9092"


def test_search_reads_from_the_replicas_and_writes_go_to_the_primary(rendered: Resources) -> None:
    (cluster,) = of_kind(rendered, "Cluster").values()
    name = cluster["metadata"]["name"]
    assert cluster["spec"]["instances"] >= 2, "a read-only service needs a replica"
    assert "pgvector" in cluster["spec"]["imageName"]
    for service in SERVICE_SETTINGS:
        (container,) = rendered["Deployment", service]["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item.get("value", "") for item in container["env"]}
        assert f"@{name}-rw:5432/chorus" in env["CHORUS_DATABASE_URL"]
        assert ("CHORUS_SEARCH_DATABASE_URL" in env) == (service == "search")
    (search,) = rendered["Deployment", "search"]["spec"]["template"]["spec"]["containers"]
    urls = {item["name"]: item["value"] for item in search["env"] if "value" in item}
    assert f"@{name}-ro:5432/chorus" in urls["CHORUS_SEARCH_DATABASE_URL"]
    hpa = rendered["HorizontalPodAutoscaler", "search"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "search" and hpa["minReplicas"] >= 2


def test_the_rules_and_the_dashboard_are_the_ones_in_deploy(rendered: Resources) -> None:
    alerts = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    assert rendered["PrometheusRule", "chorus"]["spec"] == alerts, (
        "deploy/k8s/base/monitoring.yaml's PrometheusRule must hold deploy/prometheus/alerts.yml: copy it again"
    )
    dashboard = rendered["ConfigMap", "chorus-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    text = (REPO_ROOT / "deploy" / "grafana" / "dashboards" / "chorus.json").read_text()
    assert json.loads(dashboard["data"]["chorus.json"]) == json.loads(text)
    # The alerts select job="chorus"; the ServiceMonitor takes job from a label every Service carries.
    monitor = rendered["ServiceMonitor", "chorus"]["spec"]
    assert any('job="chorus"' in rule["expr"] for group in alerts["groups"] for rule in group["rules"])
    for service in SERVICE_SETTINGS:
        labels = rendered["Service", service]["metadata"]["labels"]
        assert labels[monitor["jobLabel"]] == "chorus"
        assert monitor["selector"]["matchLabels"].items() <= labels.items()


def test_the_image_the_manifests_run_is_the_dockerfiles(rendered: Resources) -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    uid = re.findall(r"^USER (\d+)$", dockerfile, re.MULTILINE)[-1]
    for r in rendered.values():
        if r["kind"] in ("Deployment", "Job"):
            assert str(r["spec"]["template"]["spec"]["securityContext"]["runAsUser"]) == uid


def test_every_manifest_file_is_used() -> None:
    used = {Path(p).name for p in yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["resources"]}
    assert {p.name for p in (K8S / "base").glob("*.yaml")} - {"kustomization.yaml"} == used - {"grafana"}


@pytest.mark.parametrize(
    ("kind", "change", "expected"),
    [
        ("Kafka", lambda s: s["kafka"].update(listener=[]), "spec.kafka.listener: not a field"),
        ("KafkaNodePool", lambda s: s.update(roles=["broker", "zookeeper"]), "spec.roles[1]: 'zookeeper'"),
        ("KafkaTopic", lambda s: s.update(partitions="6"), "spec.partitions: expected"),
        ("Cluster", lambda s: s.pop("instances"), "spec.instances: required"),
        ("Cluster", lambda s: s["bootstrap"]["initdb"].update(databse="x"), "spec.bootstrap.initdb.databse"),
        ("ScaledObject", lambda s: s["triggers"][0]["metadata"].pop("consumerGroup"), "consumerGroup: required"),
        ("ScaledObject", lambda s: s["triggers"][0]["metadata"].update(lagThreshold=5), "lagThreshold: expected"),
        ("ServiceMonitor", lambda s: s["endpoints"][0].update(interval="often"), "interval: 'often'"),
        ("PrometheusRule", lambda s: s["groups"][0]["rules"][0].pop("expr"), "expr: required"),
    ],
)
def test_the_operator_schemas_reject_what_their_operators_would_ignore_or_refuse(
    kind: str, change: Any, expected: str
) -> None:
    resources = build(K8S / "overlays" / "small")
    resource = copy.deepcopy(next(r for r in resources if r["kind"] == kind))
    assert check_custom_resource(resource) == []
    change(resource["spec"])
    assert any(expected in problem for problem in check_custom_resource(resource)), check_custom_resource(resource)


def test_a_kind_outside_the_operators_apis_is_refused() -> None:
    resource = {"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaCluster", "metadata": {"name": "x"}}
    unknown = "kafka.strimzi.io/v1beta2 KafkaCluster: not a kind of its operator's API"
    assert check_custom_resource(resource) == [unknown]
    topic = next(r for r in build(K8S / "overlays" / "small") if r["kind"] == "KafkaTopic")
    unlabelled = {**topic, "metadata": {"name": topic["metadata"]["name"]}}
    assert check_custom_resource(unlabelled) == ["metadata.labels: strimzi.io/cluster is required"]


def _keda_problems(resources: list[dict[str, Any]]) -> list[str]:
    prefix = REPO_ROOT / ".venv" / "keda"
    assert (prefix / "node_modules" / "@kubernetes-models" / "keda").is_dir(), "`make install` installs KEDA's models"
    node = shutil.which("node")
    assert node, "node is missing: `make system-deps` installs it"
    result = subprocess.run(
        [node, str(REPO_ROOT / "tests" / "deploy" / "keda" / "validate.mjs"), str(prefix)],
        input=json.dumps(resources),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    problems: list[str] = json.loads(result.stdout)
    return problems


def test_the_scaled_objects_match_kedas_published_models(rendered: Resources) -> None:
    scaled = list(of_kind(rendered, "ScaledObject").values())
    assert len(scaled) == 3
    assert _keda_problems(scaled) == []
    broken = copy.deepcopy(scaled[0])
    broken["spec"]["maxReplicaCount"] = "six"
    expected = f"ScaledObject {broken['metadata']['name']}: data/spec/maxReplicaCount must be integer"
    assert _keda_problems([broken]) == [expected]
