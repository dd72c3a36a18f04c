"""CLI of part 4: `connectors run|list`, `normalize`, `reconcile`."""
from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import datetime, timezone
from decimal import Decimal

import click

from costwarden.cli.common import emit, handle_errors, parse_period

NORMALIZE_SOURCES = ["openai-usage", "openai-costs", "openai-response", "anthropic-usage", "anthropic-cost",
                     "anthropic-message", "bedrock-log", "gemini", "litellm", "otlp", "opencost"]
PULLED = ["openai-usage", "openai-costs", "anthropic-usage", "anthropic-cost", "opencost"]


def _when(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    from costwarden.connectors.base import parse_time
    from costwarden.errors import InvalidEventError

    try:
        return parse_time(text + "T00:00:00Z" if len(text) == 10 else text, name)  # YYYY-MM-DD: midnight UTC
    except InvalidEventError as e:
        raise click.BadParameter(e.detail, param_hint=f"--{name}") from None


@click.group()
def connectors() -> None:
    """Pull usage and cost reports from providers (pollers with durable cursors)."""


@connectors.command("run")
@click.argument("name", type=click.Choice(PULLED))
@click.option("--once", is_flag=True, help="one pass up to the settle horizon, then exit")
@click.option("--from", "from_", metavar="TIME", help="poll from this time (RFC 3339 or YYYY-MM-DD), not the cursor")
@click.option("--to", "to", metavar="TIME", help="stop at this time (implies --once)")
@click.option("--json", "as_json", is_flag=True, help="print the pass summary as JSON")
@click.pass_context
@handle_errors
def run(ctx, name, once, from_, to, as_json):
    """Poll connector NAME: settled buckets go through the pipeline, cost lines to reconciliation.

    Credentials: connectors.sources.NAME.api_key / api_key_file, or OPENAI_ADMIN_KEY /
    ANTHROPIC_ADMIN_KEY / OPENCOST_TOKEN. An auth error (401/403) stops with exit code 9."""
    from costwarden.cli import open_pipeline, settings_from
    from costwarden.config import PollerSettings
    from costwarden.connectors.poll import SOURCES, Poller, run_forever

    start, end = _when(from_, "from"), _when(to, "to")
    s = settings_from(ctx)
    ps = s.connectors.sources.get(name) or PollerSettings(bucket_width="1d" if name.endswith(("costs", "cost"))
                                                         else "1h")
    p = open_pipeline(ctx, deliver=True)
    try:
        poller = Poller(SOURCES[name], p, ps)
        if once or end is not None or start is not None:
            report = poller.run_once(start, end)
            out = report.as_dict()
            if as_json:
                click.echo(json.dumps(out, indent=2, default=str))
            else:
                from costwarden import human

                for k, v in out.items():
                    text = (human.mapping(v) if isinstance(v, dict) else human.when(v) if k in ("cursor", "horizon")
                            else human.cell(k, v))
                    click.echo(f"{k.replace('_', ' ')}: {text}")
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        click.echo(f"{name}: polling every {ps.interval_s}s (Ctrl-C to stop)", err=True)
        try:
            refused = run_forever([poller], stop, ps.interval_s)
        except KeyboardInterrupt:
            refused = []
        if refused:
            raise refused[0]  # the provider refused our credentials: exit 9, as with --once
    finally:
        p.close()


@connectors.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def list_(ctx, as_json):
    """The pulled connectors, whether configured, and their cursors."""
    from costwarden.cli import open_pipeline, settings_from
    from costwarden.connectors.poll.state import PollState

    s = settings_from(ctx)
    p = open_pipeline(ctx)
    try:
        state = PollState(p.store)
        rows = [{"connector": n, "configured": "yes" if n in s.connectors.sources else "",
                 "cursor": (c.isoformat() if (c := state.cursor(n)) else "")} for n in PULLED]
    finally:
        p.close()
    emit(rows, "json" if as_json else "table", ["connector", "configured", "cursor"], title="connectors")


@click.command()
@click.option("--source", "source", required=True, type=click.Choice(NORMALIZE_SOURCES), help="the payload's format")
@click.option("--group-by", default=None, help="anthropic-usage: the report's group_by fields, comma separated")
@click.option("--occurred-at", default=None, help="anthropic-message: the message's time (RFC 3339)")
@click.option("--provider", default=None, help="gemini: gcp.gemini (default) or gcp.vertex_ai")
@click.argument("file", type=click.Path(allow_dash=True))
@handle_errors
def normalize(source, group_by, occurred_at, provider, file):
    """Print the canonical events (or cost lines) of FILE (or -) as JSON lines; rejects on stderr.
    No side effects: nothing is stored.

    Exit codes (as `price` and `ingest`): 0 when FILE held at least one valid record (rejects on
    stderr); 3 when nothing in it could be read; 2 when the file cannot be read."""
    from costwarden.connectors import normalize as run_parser

    data = sys.stdin.buffer.read() if file == "-" else open(file, "rb").read()
    opts = {}
    if group_by:
        opts["group_by"] = [g.strip() for g in group_by.split(",") if g.strip()]
    if occurred_at:
        opts["occurred_at"] = occurred_at
    if provider:
        opts["provider"] = provider
    result = run_parser(source, data, **opts)
    for ev in result.events:
        click.echo(ev.model_dump_json())
    for ln in result.cost_lines:
        click.echo(json.dumps({"kind": "provider_cost_line", **{k: (str(v) if v is not None and not isinstance(v, str)
                                                                    else v) for k, v in ln.__dict__.items()}}))
    for r in result.rejects:
        click.echo(f"rejected: {r.reason}: {r.detail}", err=True)
    click.echo(f"{len(result.events)} event(s), {len(result.cost_lines)} cost line(s), "
               f"{len(result.rejects)} reject(s)", err=True)
    if result.rejects and not (result.events or result.cost_lines):
        sys.exit(3)


@click.command()
@click.option("--period", required=True, help="2026-11, 2026-Q4, 2026-W47, 2026-11-21 or FROM..TO")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option("--threshold-pct", type=Decimal, default=None, help="drift alert threshold (default from config, 5)")
@click.option("--channel", default=None, help="alert channel (default connectors.reconcile_channel)")
@click.option("--no-alert", is_flag=True, help="print only; fire no alert")
@click.pass_context
@handle_errors
def reconcile(ctx, period, fmt, threshold_pct, channel, no_alert):
    """Computed cost vs provider-reported cost per day, provider and project/workspace, with drift.
    Rows over the threshold fire one alert to the price-catalogue owner's channel."""
    from costwarden.cli import open_pipeline, settings_from
    from costwarden.connectors.reconcile import COLUMNS, enqueue_drift_alert
    from costwarden.connectors.reconcile import reconcile as run_reconcile
    from costwarden.errors import ConfigError

    start, end = parse_period(period)
    s = settings_from(ctx)
    threshold = threshold_pct if threshold_pct is not None else s.connectors.reconcile_threshold_pct
    channel = channel or s.connectors.reconcile_channel
    if channel and channel not in s.alerts.channels and not no_alert:
        raise ConfigError(f"reconcile channel {channel!r} is not in alerts.channels")
    p = open_pipeline(ctx, deliver=bool(channel) and not no_alert)
    try:
        rows = run_reconcile(p.store, start, end, threshold)
        emit([r.as_row() for r in rows], fmt, COLUMNS, title=f"reconciliation {period} (threshold {threshold}%)",
             empty=f"nothing to reconcile for {period}: no provider cost lines stored (`costwarden connectors run "
                   f"openai-costs` or `anthropic-cost` pulls them)")
        over = sum(r.over for r in rows)
        if over and channel and not no_alert:
            key = enqueue_drift_alert(p.store, rows, period, threshold, channel, datetime.now(timezone.utc))
            click.echo(f"{over} row(s) over {threshold}%: " + (f"alert {key} sent to {channel}" if key
                                                               else "already alerted"), err=True)
        elif over:
            click.echo(f"{over} row(s) over {threshold}% (no alert channel configured)", err=True)
    finally:
        p.close(flush_alerts=True)


COMMANDS = [connectors, normalize, reconcile]
