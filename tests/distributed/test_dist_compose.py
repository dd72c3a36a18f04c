"""docker-compose.yml describes a deployable system: valid Compose structure, the official
images, health checks, start-up order, and set-up steps that create every configured topic (with
its partitions, retention and compaction) and every table of the migrations."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from costwarden.config import KafkaSettings
from costwarden.distributed.topics import topic_specs
from costwarden.store.migrate import migration_files

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def test_services_images_and_health_checks(compose):
    services = compose["services"]
    assert {"kafka", "kafka-init", "clickhouse", "clickhouse-init", "worker", "api"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    for name in ("kafka", "clickhouse", "worker", "api"):
        hc = services[name]["healthcheck"]
        assert hc["test"][0] in ("CMD", "CMD-SHELL") and hc["interval"] and hc["retries"], name
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["worker"]["command"] == ["costwarden", "worker"]
    assert services["api"]["command"][:2] == ["costwarden", "api"]
    assert {"kafka-data", "clickhouse-data"} <= set(compose["volumes"])
    assert services["kafka"]["volumes"] and services["clickhouse"]["volumes"]


def test_start_up_order(compose):
    s = compose["services"]
    assert s["kafka-init"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert s["clickhouse-init"]["depends_on"] == {"clickhouse": {"condition": "service_healthy"}}
    for name in ("worker", "api"):
        assert s[name]["depends_on"] == {"kafka-init": {"condition": "service_completed_successfully"},
                                         "clickhouse-init": {"condition": "service_completed_successfully"}}


def test_configuration_is_environment_and_matches_the_servers(compose):
    s = compose["services"]
    env = s["worker"]["environment"]
    assert env["COSTWARDEN_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["COSTWARDEN_STORE__URL"].endswith("@clickhouse:8123")
    assert "${CLICKHOUSE_PASSWORD" in env["COSTWARDEN_STORE__URL"]  # the secret is not in the file
    assert s["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert int(env["COSTWARDEN_KAFKA__PARTITIONS"]) == KafkaSettings().partitions


def test_every_configured_topic_is_created_with_its_partitions_and_retention(compose):
    script = compose["services"]["kafka-init"]["command"][0]
    created = {}
    for cmd in script.split("&&"):
        if "--create" in cmd:
            created[re.search(r"--topic (\S+)", cmd)[1]] = cmd
    specs = topic_specs(KafkaSettings())
    assert set(created) == {sp.name for sp in specs}
    for sp in specs:
        assert " ".join(sp.kafka_topics_args()) in created[sp.name]
    controls = created[KafkaSettings().topic_controls]
    assert "cleanup.policy=compact" in controls


def test_every_table_is_created_by_the_set_up_step(compose, tmp_path, monkeypatch):
    """clickhouse-init runs `costwarden migrate`; running that command creates every table."""
    from costwarden.cli import cli
    from costwarden.store import open_store

    cmd = compose["services"]["clickhouse-init"]["command"]
    assert cmd == ["costwarden", "migrate"]
    tables = set()
    for _, _, text in migration_files():
        tables |= set(re.findall(r"CREATE (?:TABLE|MATERIALIZED VIEW) IF NOT EXISTS \{db\}\.(\w+)", text))
    from costwarden.store import chdb_store
    data_dir = next(iter(chdb_store._SESSIONS), None)
    root = data_dir[: -len("/chdb")] if data_dir else str(tmp_path)
    monkeypatch.setenv("COSTWARDEN_STORE__DATABASE", "compose_check")
    result = CliRunner().invoke(cli, ["--data-dir", root, *cmd[1:]], obj={})
    assert result.exit_code == 0, result.output
    store = open_store("chdb", root, "compose_check")
    have = {r["name"] for r in store.query("SELECT name FROM system.tables WHERE database = 'compose_check'")}
    store.command("DROP DATABASE IF EXISTS compose_check")
    assert tables and tables <= have
