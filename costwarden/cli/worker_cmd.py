"""Distributed mode commands: `worker`, `topics create|describe|specs`, `ingest-kafka`, `migrate`."""
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


def _print_topics(states, as_json: bool) -> None:
    """Each topic against its spec; the problems (what differs, what to do) on stderr, exit 2."""
    problems = [p for st in states for p in st.problems]
    if as_json:
        click.echo(json.dumps({"created": [st.name for st in states if st.status == "created"],
                               "topics": [st.name for st in states], "problems": problems,
                               "details": [st.as_dict() for st in states]}))
    else:
        for st in states:
            cfg = ", ".join(f"{k}={v}" for k, v in sorted(st.configs.items()))
            click.echo(f"{st.name}: {st.status} ({st.partitions} of {st.spec.partitions} partitions, "
                       f"replication {st.replication}{', ' + cfg if cfg else ''})")
        for p in problems:
            click.echo(p, err=True)
    if problems:
        sys.exit(2)  # ConfigError's code: the topics differ from the settings (nothing was changed)


@topics.command("create")
@_bootstrap
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.pass_context
@handle_errors
def topics_create(ctx, bootstrap, as_json):
    """Create the topics that do not exist yet (explicit partitions, retention, compaction).

    Existing topics are left as they are; one that differs from the settings (fewer partitions,
    another cleanup policy or retention) is reported with what to do, and the exit code is 2."""
    from costwarden.distributed.topic_admin import create_topics
    from costwarden.distributed.topics import topic_specs

    s = _settings(ctx, bootstrap)
    _print_topics(create_topics(s.kafka.bootstrap_servers, topic_specs(s.kafka), log_problems=False), as_json)


@topics.command("describe")
@_bootstrap
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="seconds to wait for the broker")
@click.pass_context
@handle_errors
def topics_describe(ctx, bootstrap, as_json, timeout):
    """Each topic as the broker has it against the settings (creates nothing); exit 2 on a difference."""
    from costwarden.distributed.topic_admin import ensure_topics
    from costwarden.distributed.topics import topic_specs

    s = _settings(ctx, bootstrap)
    _print_topics(ensure_topics(s.kafka.bootstrap_servers, topic_specs(s.kafka), create=False, timeout_s=timeout),
                  as_json)


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
    """Produce canonical events (JSON lines, FILE or -) to the raw usage topic, keyed by event_id.

    Every line is sent unchanged and validated by the workers (invalid ones dead-lettered there);
    `costwarden ingest FILE --to kafka` validates each line first and reports the rejects."""
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


def ingest_to_kafka(ctx, source: str, source_name: str, bootstrap: str | None, timeout: float, as_json: bool):
    """`costwarden ingest FILE --to kafka` (costwarden/distributed/kafka_ingest.py)."""
    from costwarden import human
    from costwarden.cli import read_lines
    from costwarden.distributed.kafka_ingest import produce_validated

    s = _settings(ctx, bootstrap)
    total = None
    if source != "-":
        with open(source, "rb") as fh:
            total = sum(1 for line in fh if line.strip())
    with human.Progress("producing", total, enabled=not as_json) as bar:
        rep = produce_validated(s, read_lines(source), source_name, timeout, progress=bar.advance)
    summary = rep.summary()
    if as_json:
        click.echo(json.dumps({**summary, "rejects": [{"line": n, "reason": r, "detail": d}
                                                      for n, r, d in rep.rejects]}))
    else:
        dead = summary["dead_lettered"]
        click.echo(f"{human.plural(rep.accepted, 'event')} produced to {rep.topic}, "
                   f"{human.plural(summary['rejected'], 'invalid line')} dead-lettered to {rep.dead_letter_topic}"
                   + (f" ({human.mapping(dead)})" if dead else ""))
        for n, reason, detail in rep.rejects:
            click.echo(f"line {n}: {reason}: {detail}", err=True)
        if summary["rejected"] > len(rep.rejects):
            click.echo(f"... and {summary['rejected'] - len(rep.rejects)} more (each on {rep.dead_letter_topic} "
                       f"with its reason)", err=True)
    if summary["rejected"] and rep.accepted == 0:
        sys.exit(3)  # nothing in the input was a valid event


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
