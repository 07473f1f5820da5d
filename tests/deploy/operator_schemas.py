"""The fields of the operators' custom resources that deploy/k8s uses, as their documentation gives them.

No registry here carries Strimzi's, CloudNativePG's or the Prometheus Operator's CRDs, so this is a
small schema of our own: the kinds each API group has, required fields, allowed values, and objects
closed to fields the documentation does not list (a misspelt field is silently ignored by an operator,
so it must fail here). References: strimzi.io/docs/operators/latest/configuring (Kafka,
KafkaNodePool, KafkaTopic schema reference), cloudnative-pg.io/documentation/current/cloudnative-pg.v1
(Cluster API reference), keda.sh/docs/latest/reference/scaledobject-spec and scalers/apache-kafka,
prometheus-operator.dev/docs/api-reference/api (ServiceMonitor, PrometheusRule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

Schema = Any  # a type, a frozenset of allowed values, Obj, ListOf, MapOf or Pattern


@dataclass(frozen=True)
class Obj:
    required: dict[str, Schema] = field(default_factory=dict)
    optional: dict[str, Schema] = field(default_factory=dict)


@dataclass(frozen=True)
class ListOf:
    item: Schema
    min_items: int = 0


@dataclass(frozen=True)
class MapOf:
    value: Schema


@dataclass(frozen=True)
class Pattern:
    regex: str


ANY = object
QUANTITY = Pattern(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
RESOURCES = Obj(optional={"requests": MapOf(QUANTITY), "limits": MapOf(QUANTITY)})
# Kubernetes resource names; Strimzi topic names may also hold dots, as Kafka's do.
NAME = Pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
SCALAR = (str, int, float, bool)

STRIMZI_LISTENER = Obj(
    required={
        "name": Pattern(r"^[a-z0-9]{1,11}$"),
        "port": int,
        "type": frozenset({"internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"}),
        "tls": bool,
    },
    optional={"authentication": dict, "configuration": dict, "networkPolicyPeers": list},
)
STRIMZI_VOLUME = Obj(
    required={"type": frozenset({"persistent-claim", "ephemeral"})},
    optional={
        "id": int,
        "size": QUANTITY,
        "class": str,
        "deleteClaim": bool,
        "kraftMetadata": frozenset({"shared"}),
        "sizeLimit": QUANTITY,
    },
)
SPECS: dict[tuple[str, str], Obj] = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): Obj(
        required={
            "kafka": Obj(
                required={"listeners": ListOf(STRIMZI_LISTENER, 1)},
                optional={
                    "version": Pattern(r"^\d+\.\d+\.\d+$"),
                    "metadataVersion": Pattern(r"^\d+\.\d+-IV\d+$"),
                    "config": MapOf(SCALAR),
                    "authorization": dict,
                    "rack": dict,
                    "template": dict,
                    "logging": dict,
                    "metricsConfig": dict,
                    "jvmOptions": dict,
                    "resources": RESOURCES,
                },
            )
        },
        optional={
            "entityOperator": Obj(optional={"topicOperator": dict, "userOperator": dict, "template": dict}),
            "cruiseControl": dict,
            "kafkaExporter": dict,
            "clusterCa": dict,
            "clientsCa": dict,
            "maintenanceTimeWindows": ListOf(str),
        },
    ),
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): Obj(
        required={
            "replicas": int,
            "roles": ListOf(frozenset({"controller", "broker"}), 1),
            "storage": Obj(
                required={"type": frozenset({"jbod", "persistent-claim", "ephemeral"})},
                optional={"volumes": ListOf(STRIMZI_VOLUME, 1), "size": QUANTITY, "deleteClaim": bool},
            ),
        },
        optional={"resources": RESOURCES, "jvmOptions": dict, "template": dict},
    ),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): Obj(
        optional={"topicName": NAME, "partitions": int, "replicas": int, "config": MapOf(SCALAR)}
    ),
    ("postgresql.cnpg.io/v1", "Cluster"): Obj(
        required={"instances": int, "storage": Obj(optional={"size": QUANTITY, "storageClass": str})},
        optional={
            "imageName": str,
            "postgresUID": int,
            "postgresGID": int,
            "enableSuperuserAccess": bool,
            "superuserSecret": Obj(required={"name": str}),
            "bootstrap": Obj(
                optional={
                    "initdb": Obj(
                        optional={
                            "database": str,
                            "owner": str,
                            "secret": Obj(required={"name": str}),
                            "postInitSQL": ListOf(str),
                            "postInitApplicationSQL": ListOf(str),
                            "encoding": str,
                            "localeCollate": str,
                            "localeCType": str,
                        }
                    ),
                    "recovery": dict,
                    "pg_basebackup": dict,
                }
            ),
            "managed": Obj(
                optional={
                    "roles": ListOf(
                        Obj(
                            required={"name": str},
                            optional={
                                "ensure": frozenset({"present", "absent"}),
                                "login": bool,
                                "superuser": bool,
                                "inherit": bool,
                                "inRoles": ListOf(str),
                                "connectionLimit": int,
                                "passwordSecret": Obj(required={"name": str}),
                            },
                        )
                    ),
                    "services": dict,
                }
            ),
            "postgresql": Obj(
                optional={"parameters": MapOf(str), "pg_hba": ListOf(str), "shared_preload_libraries": ListOf(str)}
            ),
            "resources": RESOURCES,
            "monitoring": Obj(optional={"enablePodMonitor": bool, "customQueriesConfigMap": list}),
            "affinity": dict,
            "backup": dict,
            "minSyncReplicas": int,
            "maxSyncReplicas": int,
            "primaryUpdateStrategy": frozenset({"unsupervised", "supervised"}),
        },
    ),
    ("keda.sh/v1alpha1", "ScaledObject"): Obj(
        required={
            "scaleTargetRef": Obj(
                required={"name": str}, optional={"apiVersion": str, "kind": str, "envSourceContainerName": str}
            ),
            "triggers": ListOf(
                Obj(required={"type": str, "metadata": MapOf(str)}, optional={"name": str, "authenticationRef": dict}),
                1,
            ),
        },
        optional={
            "pollingInterval": int,
            "cooldownPeriod": int,
            "initialCooldownPeriod": int,
            "idleReplicaCount": int,
            "minReplicaCount": int,
            "maxReplicaCount": int,
            "advanced": dict,
            "fallback": dict,
        },
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): Obj(
        required={
            "selector": Obj(optional={"matchLabels": MapOf(str), "matchExpressions": list}),
            "endpoints": ListOf(
                Obj(
                    optional={
                        "port": str,
                        "path": str,
                        "interval": Pattern(r"^\d+[smh]$"),
                        "scheme": frozenset({"http", "https"}),
                    }
                ),
                1,
            ),
        },
        optional={"jobLabel": str, "namespaceSelector": dict, "targetLabels": ListOf(str)},
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): Obj(
        required={
            "groups": ListOf(
                Obj(
                    required={
                        "name": str,
                        "rules": ListOf(
                            Obj(
                                required={"expr": str},
                                optional={
                                    "alert": str,
                                    "record": str,
                                    "for": Pattern(r"^\d+[smh]$"),
                                    "labels": MapOf(str),
                                    "annotations": MapOf(str),
                                },
                            ),
                            1,
                        ),
                    },
                    optional={"interval": str},
                ),
                1,
            )
        }
    ),
}
# What KEDA's Kafka scaler reads from a trigger's metadata; it needs the first two.
KAFKA_TRIGGER = Obj(
    required={"bootstrapServers": str, "consumerGroup": str},
    optional={
        "topic": str,
        "lagThreshold": Pattern(r"^\d+$"),
        "activationLagThreshold": Pattern(r"^\d+$"),
        "offsetResetPolicy": frozenset({"earliest", "latest"}),
        "allowIdleConsumers": frozenset({"true", "false"}),
        "excludePersistentLag": frozenset({"true", "false"}),
        "limitToPartitionsWithLag": frozenset({"true", "false"}),
        "scaleToZeroOnInvalidOffset": frozenset({"true", "false"}),
    },
)
# Operators find their resources by these labels; without them the resource is never reconciled.
REQUIRED_LABELS = {"KafkaNodePool": "strimzi.io/cluster", "KafkaTopic": "strimzi.io/cluster"}


def check(value: Any, schema: Schema, path: str) -> list[str]:
    """Every way `value` departs from `schema`, each with the path of the field."""
    if isinstance(schema, Obj):
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        problems = [f"{path}.{name}: required" for name in schema.required if name not in value]
        allowed = {**schema.required, **schema.optional}
        for name, item in value.items():
            if name not in allowed:
                problems.append(f"{path}.{name}: not a field of this resource")
            else:
                problems.extend(check(item, allowed[name], f"{path}.{name}"))
        return problems
    if isinstance(schema, ListOf):
        if not isinstance(value, list) or len(value) < schema.min_items:
            return [f"{path}: expected a list of at least {schema.min_items}"]
        return [p for index, item in enumerate(value) for p in check(item, schema.item, f"{path}[{index}]")]
    if isinstance(schema, MapOf):
        if not isinstance(value, dict):
            return [f"{path}: expected a map"]
        return [p for key, item in value.items() for p in check(item, schema.value, f"{path}.{key}")]
    if isinstance(schema, Pattern):
        ok = isinstance(value, (str, int)) and not isinstance(value, bool) and re.match(schema.regex, str(value))
        return [] if ok else [f"{path}: {value!r} does not match {schema.regex}"]
    if isinstance(schema, frozenset):
        return [] if value in schema else [f"{path}: {value!r} is not one of {sorted(schema)}"]
    if schema is ANY:
        return []
    expected = schema if isinstance(schema, tuple) else (schema,)
    if isinstance(value, bool) and bool not in expected:
        return [f"{path}: expected {schema}, got a boolean"]
    return [] if isinstance(value, expected) else [f"{path}: expected {schema}, got {type(value).__name__}"]


def check_custom_resource(resource: dict[str, Any]) -> list[str]:
    """Problems of one custom resource; an API group or kind the schema does not know is one."""
    key = (resource.get("apiVersion", ""), resource.get("kind", ""))
    if key not in SPECS:
        return [f"{key[0]} {key[1]}: not a kind of its operator's API"]
    name = resource.get("metadata", {}).get("name", "")
    problems = check(name, NAME, "metadata.name") + check(resource.get("spec"), SPECS[key], "spec")
    label = REQUIRED_LABELS.get(key[1])
    if label and label not in resource["metadata"].get("labels", {}):
        problems.append(f"metadata.labels: {label} is required")
    if key[1] == "ScaledObject":
        for index, trigger in enumerate(resource["spec"].get("triggers", [])):
            if trigger.get("type") == "kafka":
                problems.extend(check(trigger.get("metadata"), KAFKA_TRIGGER, f"spec.triggers[{index}].metadata"))
    return problems
