"""Distributed mode commands: `worker`, `topics create|list-specs`, `ingest-kafka`, `migrate`."""
from __future__ import annotations

import json
import sys

import click

from costwarden.cli.common import handle_errors


def _settings(ctx: click.Context, bootstrap: str | None = None):
    from costwarden.cli import settings_from

    s = settings_from(ctx)
    if bootstrap:
        s.kafka.bootstrap_servers = bootstrap
    return s


_bootstrap = click.option("--bootstrap", default=None, help="Kafka bootstrap servers (default: settings kafka)")


@click.command()
@_bootstrap
@click.option("--metrics-port", type=int, default=None, help="Prometheus /metrics port (default: settings; 0: any)")
@click.option("--loglevel", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
@click.pass_context
@handle_errors
def worker(ctx, bootstrap, metrics_port, loglevel):
    """Run a distributed worker: Faust agents over Kafka storing into ClickHouse (until SIGTERM).

    Creates missing topics and applies migrations first. Start more workers with the same
    settings to share the partitions (kafka.app_id is the consumer group)."""
    from costwarden.distributed.app import run_worker

    run_worker(_settings(ctx, bootstrap), metrics_port, loglevel)


@click.group()
def topics():
    """Kafka topics of the distributed runtime."""


@topics.command("create")
@_bootstrap
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.pass_context
@handle_errors
def topics_create(ctx, bootstrap, as_json):
    """Create the topics that do not exist yet (explicit partitions, retention, compaction)."""
    from costwarden.distributed.topics import create_topics, topic_specs

    s = _settings(ctx, bootstrap)
    specs = topic_specs(s.kafka)
    created = create_topics(s.kafka.bootstrap_servers, specs)
    if as_json:
        click.echo(json.dumps({"created": created, "topics": [sp.name for sp in specs]}))
    else:
        for sp in specs:
            state = "created" if sp.name in created else "exists"
            click.echo(f"{sp.name}: {state} ({sp.partitions} partitions, {sp.config.get('cleanup.policy')})")


@topics.command("specs")
@click.pass_context
@handle_errors
def topics_specs(ctx):
    """Print each topic's `kafka-topics.sh` arguments (for deployments that create topics themselves)."""
    from costwarden.distributed.topics import topic_specs

    for sp in topic_specs(_settings(ctx).kafka):
        click.echo(" ".join(sp.kafka_topics_args()))


@click.command("ingest-kafka")
@click.argument("source")
@_bootstrap
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@click.pass_context
@handle_errors
def ingest_kafka(ctx, source, bootstrap, as_json):
    """Produce canonical events (JSON lines, FILE or -) to the raw usage topic, keyed by event_id."""
    from costwarden.cli import read_lines
    from costwarden.distributed.producer import produce

    s = _settings(ctx, bootstrap)
    report = produce(s.kafka.bootstrap_servers, s.kafka.topic_raw, read_lines(source))
    summary = {"sent": report.sent, "without_event_id": report.unkeyed, "topic": s.kafka.topic_raw}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for key, v in summary.items():
            click.echo(f"{key}: {v}")
    if report.sent == 0:
        sys.exit(3)


@click.command()
@click.pass_context
@handle_errors
def migrate(ctx):
    """Apply the store's migrations (idempotent) and print what was applied."""
    from costwarden.store import migrate as run, open_store

    from costwarden.cli.remote import guard_local

    s = _settings(ctx)
    guard_local(s)  # a running server holds the data directory: one line, exit 5
    s.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(s.store.url.get_secret_value(), str(s.data_dir), s.store.database)
    applied = run(store)
    click.echo(f"database {s.store.database}: applied {', '.join(applied) if applied else 'nothing (up to date)'}")


COMMANDS = [worker, topics, ingest_kafka, migrate]
