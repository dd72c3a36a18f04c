"""costwarden command line: `costwarden --help`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from costwarden.cli.common import emit, handle_errors, parse_period
from costwarden.config import load_settings
from costwarden.money import from_nanos


@click.group()
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="data directory (default ./.costwarden)")
@click.option("--budgets", "budgets_file", type=click.Path(path_type=Path, exists=True), default=None,
              help="budgets YAML")
@click.option("--rules", "rules_file", type=click.Path(path_type=Path, exists=True), default=None,
              help="attribution rules YAML")
@click.option("--catalogue", "catalogue_file", type=click.Path(path_type=Path, exists=True), default=None,
              help="price catalogue YAML (default: the packaged list prices)")
@click.pass_context
def cli(ctx: click.Context, data_dir, budgets_file, rules_file, catalogue_file) -> None:
    """costwarden: cost governance and budgets for AI workloads."""
    ctx.ensure_object(dict)
    ctx.obj["overrides"] = (data_dir, budgets_file, rules_file, catalogue_file)


def settings_from(ctx: click.Context):
    data_dir, budgets_file, rules_file, catalogue_file = ctx.obj["overrides"]
    s = load_settings()
    if data_dir:
        s.data_dir = data_dir
    if budgets_file:
        s.budgets.budgets_file = budgets_file
    if rules_file:
        s.budgets.rules_file = rules_file
    if catalogue_file:
        s.budgets.catalogue_file = catalogue_file
    return s


def open_pipeline(ctx: click.Context, deliver: bool = False, **kw):
    from costwarden.cli.remote import guard_local
    from costwarden.embedded import EmbeddedPipeline

    s = settings_from(ctx)
    guard_local(s)  # a running server holds the data directory: one line, exit 5
    return EmbeddedPipeline(s, deliver=deliver, **kw)


def read_lines(source: str):
    fh = sys.stdin.buffer if source == "-" else open(source, "rb")
    with fh:
        for line in fh:
            if line.strip():
                yield line.rstrip(b"\r\n")


FILE_INPUT_EXITS = """Exit codes (the same for `price`, `ingest` and `normalize`): 0 when the input held at least
    one valid event (invalid lines are reported on stderr, and `ingest` dead-letters them with the
    reason); 3 when nothing in it was valid; 2 when the file cannot be read."""


@cli.command(epilog=FILE_INPUT_EXITS)
@click.argument("source")
@click.option("--source-name", default="ingest", help="source label for dead letters")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@click.option("--to", "to", type=click.Choice(["pipeline", "kafka"]), default="pipeline", show_default=True,
              help="pipeline: the embedded pipeline (or a running server); kafka: validated here, then "
                   "produced to the raw topic of the distributed mode (invalid lines to the dead-letter topic)")
@click.option("--bootstrap", default=None, help="with --to kafka: Kafka bootstrap servers (default: settings kafka)")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="with --to kafka: seconds to wait for the broker (to connect, and for acknowledgements)")
@click.pass_context
@handle_errors
def ingest(ctx, source, source_name, as_json, to, bootstrap, timeout):
    """Ingest canonical events (JSON lines, FILE or -) through the whole embedded pipeline.

    With `costwarden serve` running on the data directory: POSTed to its /v1/events in batches.
    With `--to kafka`: each line validated as the API validates it, valid events produced to the
    raw topic keyed by event_id (acks=all, idempotent), invalid ones to the dead-letter topic with
    the reason; exit 1 when the broker is unreachable or did not acknowledge every record."""
    from costwarden.human import Progress
    from costwarden.cli.remote import api_for

    if to == "kafka":
        from costwarden.cli.worker_cmd import ingest_to_kafka

        return ingest_to_kafka(ctx, source, source_name, bootstrap, timeout, as_json)

    api = api_for(ctx, "usage")
    if api is not None:
        from costwarden.cli.via_api import ingest as ingest_via

        summary = ingest_via(api, read_lines(source))
        _print_summary(summary, as_json)
        if summary["dead_lettered"] and summary["accepted"] == 0 and summary["duplicates"] == 0:
            sys.exit(3)
        return
    total = None
    if source != "-":
        with open(source, "rb") as fh:
            total = sum(1 for line in fh if line.strip())
    p = open_pipeline(ctx, deliver=True)
    try:
        with Progress("ingesting", total, enabled=not as_json) as bar:
            report = p.ingest(read_lines(source), source_name, progress=bar.advance)
        unpriced = dict(p.processor.metrics.unpriced)
    finally:
        p.close()
    summary = {"accepted": report.accepted, "duplicates": report.duplicates, "dead_lettered": dict(report.dead),
               "cost_usd": str(from_nanos(report.cost_nanos)), "unpriced": unpriced,
               "signals": [s.key for s in report.signals],
               "control_changes": [f"{c.after.workflow}:{c.after.state.value}" for c in report.changes]}
    _print_summary(summary, as_json)
    if report.dead and report.accepted == 0 and report.duplicates == 0:
        sys.exit(3)  # nothing in the input was a valid event


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    from costwarden import human

    dead = summary["dead_lettered"]
    click.echo(f"{human.plural(summary['accepted'], 'event')} stored, "
               f"{human.plural(summary['duplicates'], 're-delivery', 're-deliveries')} counted once, "
               f"{human.count(sum(dead.values()))} dead-lettered" + (f" ({human.mapping(dead)})" if dead else ""))
    click.echo(f"cost: {human.usd(summary['cost_usd'])} (exact ${summary['cost_usd']})")
    unpriced = summary.get("unpriced") or {}
    if unpriced:
        click.echo(f"unpriced: {human.plural(sum(unpriced.values()), 'event')} of a model not in the price catalogue "
                   f"({human.mapping(unpriced)}), flagged in reports and charged by the pricing.unpriced policy")
    sig = summary["signals"]
    if sig is not None:  # None: through a server, whose alerts say it
        click.echo(f"budget signals: {', '.join(sig) if sig else 'none'}")
    ch = summary["control_changes"]
    click.echo(f"control changes: {', '.join(ch) if ch else 'none'}")
    if dead:
        click.echo(f"{human.plural(sum(dead.values()), 'invalid line')} dead-lettered with the reason "
                   f"({human.mapping(dead)})", err=True)


@cli.command(epilog=FILE_INPUT_EXITS)
@click.argument("source")
@click.pass_context
@handle_errors
def price(ctx, source):
    """Price canonical events (FILE or -): priced, attributed rows out as JSON lines; no side effects."""
    from datetime import datetime, timezone

    from costwarden.components import load_attributor, load_catalogue
    from costwarden.errors import InvalidEventError
    from costwarden.events import parse_event
    from costwarden.streams.rollup import event_row

    s = settings_from(ctx)
    lines = read_lines(source)
    cat, attr = load_catalogue(s), load_attributor(s)
    bad = good = unpriced = 0
    for n, line in enumerate(lines, 1):
        try:
            ev = parse_event(line, s.limits.limits())
        except InvalidEventError as e:
            bad += 1
            click.echo(f"line {n}: {e}", err=True)
            continue
        good += 1
        pr = cat.price(ev)
        unpriced += bool(pr.unpriced)
        row = event_row(ev, pr, attr.attribute(ev), datetime.now(timezone.utc))
        row["cost_usd"] = str(from_nanos(row["cost_nanos"]))
        click.echo(json.dumps(row, default=str))
    if unpriced:
        click.echo(f"{unpriced} event(s) of a model not in the price catalogue: flagged `\"unpriced\": 1`, "
                   f"charged by the pricing.unpriced policy", err=True)
    if bad:
        click.echo(f"{good} event(s) priced, {bad} invalid line(s)", err=True)
    elif not good:
        click.echo(f"no events in {source}", err=True)
    if bad and not good:
        sys.exit(3)  # nothing in the input was a valid event


def _this_month() -> str:
    from datetime import datetime, timezone

    return f"{datetime.now(timezone.utc):%Y-%m}"


@cli.command()
@click.option("--by", "by", default="team", show_default=True,
              help="team, workflow, cost_center, env, provider, model (comma separated)")
@click.option("--period", default=None,
              help="2026-11, 2026-Q4, 2026-W47, 2026-11-21 or FROM..TO (UTC); default: the current month")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
@handle_errors
def report(ctx, by, period, fmt):
    """Spend by team / workflow / model ... for a period (default: the current month, UTC), from
    the ClickHouse rollups. Money is exact in CSV and JSON; the table rounds it for reading."""
    from costwarden.cli.remote import api_for
    from costwarden.reports import nothing_for, spend_report

    period = period or _this_month()
    start, end = parse_period(period)
    group = [d.strip() for d in by.split(",") if d.strip()]
    api = api_for(ctx, "status")
    if api is not None:
        from costwarden.cli.via_api import report as report_via

        rows, columns = report_via(api, group, period)
        empty = f"no usage stored for {period} (asked {api.info.url})"
    else:
        p = open_pipeline(ctx)
        rows, columns = spend_report(p.store, group, start, end)
        empty = nothing_for(p.store, p.settings.data_dir, period) if not rows else None
    emit(rows, fmt, columns, title=f"spend {period} by {by}", empty=empty)


from costwarden.cli.budgets_cmd import budgets  # noqa: E402
from costwarden.cli.controls_cmd import controls  # noqa: E402
from costwarden.cli.demo_cmd import demo  # noqa: E402

cli.add_command(budgets)
cli.add_command(controls)
cli.add_command(demo)

# Commands of the other parts register themselves here: each module defines `COMMANDS`, a list of
# click commands/groups to add (or attaches subcommands to an existing group on import).
import importlib  # noqa: E402

for _name in ("worker_cmd", "api_cmd", "connectors_cmd", "finance_cmd", "catalogue_cmd"):
    try:
        _mod = importlib.import_module(f"costwarden.cli.{_name}")
    except ModuleNotFoundError as _e:
        if _e.name != f"costwarden.cli.{_name}":
            raise
        continue
    for _cmd in getattr(_mod, "COMMANDS", []):
        cli.add_command(_cmd)


@cli.command()
@click.argument("what", type=click.Choice(["event", "budgets"]))
def schema(what):
    """Print the JSON Schema of the canonical usage event or of the budgets file."""
    if what == "event":
        from costwarden.events import event_json_schema

        click.echo(json.dumps(event_json_schema(), indent=2))
    else:
        from costwarden.budgets.loader import budget_json_schema

        click.echo(json.dumps(budget_json_schema(), indent=2))


def main() -> None:
    try:
        cli(obj={})
    except Exception as e:  # a command without handle_errors: chDB's lock error is still one line
        from costwarden.cli.common import LOCKED_EXIT
        from costwarden.cli.remote import lock_error_line

        line = lock_error_line(e)
        if line is None:
            raise
        click.echo(f"error: {line}", err=True)
        sys.exit(LOCKED_EXIT)
