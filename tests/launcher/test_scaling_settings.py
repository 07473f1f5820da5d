"""`--kafka-brokers` and `--workers` as settings: the brokers' ports, the workers' counts, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.settings import Endpoints, parse_workers
from launcher.stack.kafka_cluster import replication_for
from launcher.stack.prometheus import LocalPrometheus
from launcher.stack.workers import worker_service
from shared.settings import SettingsError


def _three_brokers(controller_port: int) -> Endpoints:
    return Endpoints(
        {"CHORUS_KAFKA_BROKERS": "3", "CHORUS_KAFKA_PORT": "9092", "CHORUS_KAFKA_CONTROLLER_PORT": str(controller_port)}
    )


def test_every_consumer_runs_once_unless_named() -> None:
    assert parse_workers(()) == {"ingest": 1, "embed": 1, "cluster": 1}
    assert parse_workers(("embed=3", "normalizer=2")) == {"ingest": 2, "embed": 3, "cluster": 1}


@pytest.mark.parametrize("entry", ["search=2", "embed", "embed=0", "embed=two", "=2"])
def test_a_bad_workers_entry_names_itself_and_the_choices(entry: str) -> None:
    with pytest.raises(SettingsError) as refused:
        parse_workers(("cluster=2", entry))
    assert repr(entry) in str(refused.value)
    assert "embed, cluster, normalizer" in str(refused.value)


def test_brokers_take_ports_two_apart_and_the_bootstrap_names_them_all() -> None:
    endpoints = _three_brokers(controller_port=9093)
    assert endpoints.kafka_ports() == [(9092, 9093), (9094, 9095), (9096, 9097)]
    assert endpoints.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert Endpoints({}).kafka_bootstrap == "127.0.0.1:9092"


def test_brokers_whose_ports_would_collide_are_refused() -> None:
    endpoints = _three_brokers(controller_port=9094)
    with pytest.raises(SettingsError, match="would share ports"):
        endpoints.kafka_ports()


def test_replication_keeps_three_copies_and_tolerates_one_missing() -> None:
    assert [replication_for(brokers) for brokers in (1, 2, 3, 5)] == [(1, 1), (2, 1), (3, 2), (3, 2)]


def test_a_worker_belongs_to_its_service() -> None:
    assert worker_service("embed-2") == "embed"
    assert worker_service("ingest-12") == "ingest"
    with pytest.raises(ValueError):
        worker_service("search-2")


def test_prometheus_scrapes_a_worker_under_its_services_label(tmp_path: Path) -> None:
    config = LocalPrometheus(tmp_path, 9090, {"embed": 8082, "embed-2": 41000}).config()
    assert '- targets: ["127.0.0.1:41000"]\n        labels: {service: embed}' in config
    assert config.count("{service: embed}") == 2
