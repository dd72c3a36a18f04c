"""`costwarden demo`: a synthetic month through the whole embedded loop, and what happened."""
from __future__ import annotations

import shutil
import sys
import time

import click

from costwarden.cli.common import emit, handle_errors
from costwarden.money import fmt_usd, from_micros


@click.command()
@click.option("--keep", is_flag=True, help="keep the demo data directory from an earlier run")
@click.option("--seed", default=42, show_default=True)
@click.pass_context
@handle_errors
def demo(ctx, keep, seed):
    """Feed a realistic synthetic month (with a runaway agent) through the embedded pipeline."""
    from rich.progress import Progress

    from costwarden import demo as gen
    from costwarden.alerts.notifier import LogNotifier
    from costwarden.cli import settings_from
    from costwarden.embedded import EmbeddedPipeline
    from costwarden.reports import spend_report

    s = settings_from(ctx)
    s.data_dir = s.data_dir / "demo"
    from costwarden.cli.remote import guard_local

    guard_local(s)  # a server running on the demo directory: one line, exit 5 (and nothing deleted)
    if not keep and s.data_dir.exists():
        shutil.rmtree(s.data_dir)
    s.budgets.budgets_file = s.budgets.budgets_file or gen.demo_file("demo-budgets.yaml")
    s.budgets.rules_file = s.budgets.rules_file or gen.demo_file("demo-rules.yaml")
    start, end = gen.month_window(gen.now_utc())
    click.echo(f"costwarden demo: synthetic usage {start:%Y-%m-%d} .. {end:%Y-%m-%d %H:%M} UTC "
               f"through the embedded pipeline (chDB in {s.data_dir})")
    import logging

    logging.getLogger("costwarden.alerts.log").setLevel(logging.ERROR)  # the demo prints alerts itself
    notifier = LogNotifier()
    p = EmbeddedPipeline(s, notifier=notifier)
    t0 = time.perf_counter()
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("ingesting", total=None)
        report = p.ingest(gen.events(start, end, seed), "demo", progress=lambda n: bar.advance(task, n))
    elapsed = time.perf_counter() - t0
    p.close(flush_alerts=True)
    m = p.processor.metrics
    click.echo(f"\n{m.events_in:,} payloads in {elapsed:.1f}s ({m.events_in / elapsed:,.0f}/s): "
               f"{report.accepted:,} events priced and stored, {report.duplicates:,} re-deliveries counted once, "
               f"{sum(report.dead.values()):,} dead-lettered {dict(report.dead)}")
    if m.unpriced:
        click.echo(f"unpriced (cost 0, flagged): {dict(m.unpriced)}")
    rows, cols = spend_report(p.store, ["team"], start, end)
    emit(rows, "table", ["team", "requests", "cost_usd", "cost_per_request_usd", "unpriced_events"],
         title="spend by team (ClickHouse rollups)")
    rows, cols = spend_report(p.store, ["team", "workflow"], start, end)
    emit(rows[:8], "table", ["team", "workflow", "requests", "cost_usd"], title="top workflows")
    status = p.status(end)
    for r in status:
        r["spend"] = fmt_usd(r["spend_micros"])
        r["budget_amount"] = fmt_usd(r["amount_micros"])
        r["forecast"] = fmt_usd(r["forecast_micros"])
    emit(status, "table", ["budget", "period", "spend", "budget_amount", "pct_used", "forecast", "state"],
         title=f"budgets at {end:%Y-%m-%d %H:%M}")
    click.echo(f"\n{len(report.signals)} budget signals, each alerted once:")
    for sig in report.signals:
        click.echo(f"  {sig.at:%m-%d %H:%M} {sig.key}  spend {fmt_usd(sig.spend_micros)}")
    click.echo(f"{len(notifier.sent)} notifications delivered (no channel configured: printed to the log)")
    click.echo("\ncontrol changes:")
    for c in report.changes:
        a = c.after
        click.echo(f"  {c.at:%m-%d %H:%M:%S} {a.workflow} -> {a.state.value}"
                   f"{' ' + str(a.rate_per_min) + '/min' if a.rate_per_min else ''} ({a.reason})")
    blocks = [c for c in report.changes if c.after.state.value == "block"]
    for c in blocks[:1]:
        when = c.at
        for wf in (c.after.workflow, "rag-answer"):
            d = p.check(wf, when)
            click.echo(f"gateway check({wf!r}) at {when:%m-%d %H:%M:%S} -> {d.action.value}"
                       f"{': ' + d.reason if d.reason else ''}")
        d = p.check(c.after.workflow, end)
        click.echo(f"gateway check({c.after.workflow!r}) now -> {d.action.value} (the daily period rolled over)")
    sample = next((b for _, _, b in notifier.sent if "blocked" in b), None)
    if sample:
        click.echo("\nthe alert on-call received when the kill switch tripped:\n  " + sample.replace("\n", "\n  "))
    click.echo(f"\ntotal {fmt_usd(report.cost_micros)} (exact: ${from_micros(report.cost_micros)}). "
               f"Explore it:\n  costwarden --data-dir {s.data_dir} report --by workflow --period {start:%Y-%m}\n"
               f"  costwarden --data-dir {s.data_dir} controls audit")
