"""Finance commands: `report-finance`, `export focus`, `reprice`, `budgets simulate`, `budgets forecast`."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from costwarden import human
from costwarden.cli.budgets_cmd import budgets
from costwarden.cli.common import _jsonable, emit, handle_errors, parse_period
from costwarden.money import from_nanos


def _store(ctx: click.Context):
    from costwarden.cli import settings_from
    from costwarden.store import migrate, open_store

    from costwarden.cli.remote import guard_local

    s = settings_from(ctx.find_root())
    guard_local(s)  # a running server holds the data directory: one line, exit 5
    s.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(s.store.url.get_secret_value(), str(s.data_dir), s.store.database)
    migrate(store)
    return s, store


def _range(a: str, b: str) -> tuple[datetime, datetime]:
    return parse_period(a)[0], parse_period(b)[1]


def _progress(label: str, total: int | None, enabled: bool):
    from costwarden.human import Progress

    return Progress(label, total, enabled=enabled)


@click.command("report-finance")
@click.option("--by", default="team", show_default=True,
              help="team, workflow, cost_center, env, provider, model (comma separated)")
@click.option("--period", default=None,
              help="2026-11, 2026-Q4, 2026-W47, 2026-11-21 or FROM..TO (UTC); default: the current month")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet", "html"]), default="table")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="file (required for parquet and html)")
@click.option("--no-compare", is_flag=True, help="leave out the previous period's cost and the change")
@click.pass_context
@handle_errors
def report_finance(ctx, by, period, fmt, out, no_compare):
    """Showback/chargeback with unit costs and period-over-period change; or the HTML report
    (budgets from --budgets or the configured budgets file)."""
    from costwarden.finance.export import to_csv, to_parquet
    from costwarden.finance.reports import finance_report
    from costwarden.reports import nothing_for

    period = period or f"{datetime.now(timezone.utc):%Y-%m}"
    start, end = parse_period(period)
    if fmt in ("parquet", "html") and out is None:
        raise click.UsageError(f"--format {fmt} needs --out FILE")
    s, store = _store(ctx)
    dims = [d.strip() for d in by.split(",") if d.strip()]
    rows, cols = finance_report(store, dims, start, end, compare=not no_compare)
    if not (rows and rows[-1]["cost_nanos"] or rows and rows[-1]["requests"]):
        click.echo(nothing_for(store, s.data_dir, period), err=True)
    if fmt == "html":
        from costwarden.embedded import load_budget_file
        from costwarden.finance.html import build

        now = min(end, datetime.now(timezone.utc))
        budgets = load_budget_file(s)
        out.write_text(build(store, budgets, start, end, now, f"AI spend {period}"))
        click.echo(f"wrote {out}" + ("" if budgets.budgets else " (no budgets: pass --budgets FILE to show them)"))
        return
    if fmt == "parquet":
        to_parquet(rows, cols, out)
        click.echo(f"wrote {len(rows)} rows to {out}")
    elif out is not None:
        out.write_text(to_csv(rows, cols) if fmt == "csv" else
                       json.dumps([{c: _jsonable(r.get(c)) for c in cols} for r in rows], indent=2))
        click.echo(f"wrote {len(rows)} rows to {out}")
    elif fmt == "table":  # for people: no column that says nothing, and no zeros standing for "no data"
        from costwarden.reports import stored_days

        span = stored_days(store)
        if not no_compare and (span is None or span[0] >= start.date()):
            for r in rows:
                r["previous_cost_usd"], r["change_pct"] = "no earlier data", None
        cols = [c for c in cols if c in dims or c in ("requests", "cost_usd") or any(r.get(c) for r in rows)]
        emit(rows, fmt, cols, title=f"spend {period} by {by}")
    else:
        emit(rows, fmt, cols, title=f"spend {period} by {by}")


@click.group()
def export():
    """Export stored usage for FinOps tools."""


@export.command("focus")
@click.option("--period", required=True, help="2026-11, 2026-Q4, ... or FROM..TO")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="file (default: stdout for csv)")
@click.option("--account-id", default="costwarden", show_default=True, help="BillingAccountId")
@click.option("--account-name", default="costwarden", show_default=True, help="BillingAccountName")
@click.pass_context
@handle_errors
def focus(ctx, period, fmt, out, account_id, account_name):
    """FinOps FOCUS 1.2 rows (one per day and charge identity), CSV or Parquet."""
    from costwarden.finance.focus import focus_rows, write_focus

    start, end = parse_period(period)
    _, store = _store(ctx)
    rows = focus_rows(store, start, end, account_id, account_name)
    if fmt == "parquet" and out is None:
        out = Path(f"focus-{period.replace('..', '_')}.parquet")
    write_focus(rows, fmt, out if out is not None else sys.stdout)
    if out is not None:
        total = sum(r["BilledCost"] for r in rows)
        click.echo(f"wrote {len(rows):,} FOCUS rows to {out}, BilledCost total {human.usd(total)} (exact ${total})",
                   err=True)


@click.command()
@click.option("--from", "from_", required=True, help="first day (2026-08-01) or period")
@click.option("--to", "to", required=True, help="last day, inclusive (2026-10-31) or period")
@click.option("--catalogue", "catalogue_file", type=click.Path(path_type=Path, exists=True), default=None,
              help="price catalogue YAML (default: --catalogue of the root command, else the packaged one)")
@click.option("--dry-run", is_flag=True, help="show what would change, write nothing")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def reprice(ctx, from_, to, catalogue_file, dry_run, as_json):
    """Recompute stored events' cost with the catalogue in force at each event's time; switch raw
    events and rollups per month partition atomically; print what changed by model and team."""
    from costwarden.components import load_catalogue
    from costwarden.finance.reprice import reprice as run

    start, end = _range(from_, to)
    s, store = _store(ctx)
    if catalogue_file:
        s.budgets.catalogue_file = catalogue_file
    cat = load_catalogue(s)
    total = store.query("SELECT count() AS n FROM {db}.usage_events WHERE occurred_at >= "
                        f"{_ts(start)} AND occurred_at < {_ts(end)}")[0]["n"]
    with _progress("re-pricing", total, not as_json) as bar:
        res = run(store, cat, start, end, dry_run=dry_run, progress=bar.advance)
    rows = [{"model": m, "team": t, "events": c.events, "old_usd": from_nanos(c.old_nanos),
             "new_usd": from_nanos(c.new_nanos), "delta_usd": from_nanos(c.new_nanos - c.old_nanos)}
            for (m, t), c in sorted(res.by_model_team.items(), key=lambda kv: -abs(kv[1].new_nanos - kv[1].old_nanos))]
    summary = {"catalogue": cat.version, "scanned": res.scanned, "changed": res.changed,
               "delta_usd": str(from_nanos(res.new_nanos - res.old_nanos)), "partitions": res.partitions,
               "dry_run": dry_run}
    if as_json:
        click.echo(json.dumps(summary | {"changes": [{k: str(v) if not isinstance(v, int) else v
                                                      for k, v in r.items()} for r in rows]}, indent=2))
        return
    emit(rows, "table", list(rows[0]) if rows else ["model"], title="changes by model and team",
         empty="no stored event changes price with this catalogue")
    verb = "would switch" if dry_run else "switched"
    click.echo(f"catalogue {cat.version}: {res.scanned:,} events scanned, {res.changed:,} re-priced, "
               f"change {human.usd_nanos(res.new_nanos - res.old_nanos)}; {verb} partitions "
               f"{', '.join(map(str, res.partitions)) or 'none'}")


def _ts(d: datetime) -> str:
    from costwarden.store.queries import ts

    return ts(d)


@budgets.command("simulate")
@click.argument("file", type=click.Path(path_type=Path, exists=True))
@click.option("--from", "from_", required=True, help="first day (2026-08-01) or period")
@click.option("--to", "to", required=True, help="last day, inclusive (2026-10-31) or period")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
@handle_errors
def simulate(ctx, file, from_, to, fmt):
    """Replay stored usage against a proposed budgets FILE: thresholds fired, throttles and blocks
    tripped, spend refused. In memory only: nothing is written, sent, or changed in live controls."""
    from costwarden.budgets.loader import load_budgets
    from costwarden.finance.simulate import simulate as run
    from costwarden.finance.simulate_view import as_json, print_text

    bf = load_budgets(file)
    start, end = _range(from_, to)
    _, store = _store(ctx)
    with _progress("replaying", None, fmt != "json") as bar:
        sim = run(store, bf, start, end, progress=bar.advance)
    if fmt == "json":
        click.echo(json.dumps(as_json(sim), indent=2))
    else:
        print_text(sim, click.echo)


@budgets.command("forecast")
@click.option("--at", "at", default=None, help="forecast as of this ISO time (default now; an offset is honoured, "
                                                "none means UTC)")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
@handle_errors
def forecast(ctx, at, fmt):
    """Projected spend at period end per budget, the method used, and when it runs out."""
    from costwarden.embedded import load_budget_file
    from costwarden.finance.burn import budget_forecasts

    from costwarden.cli.budgets_cmd import parse_at

    when = parse_at(at) if at else datetime.now(timezone.utc)
    s, store = _store(ctx)
    rows = budget_forecasts(store, load_budget_file(s), when)
    for r in rows:
        for k in ("spend", "amount", "forecast", "linear_forecast"):
            r[f"{k}_usd"] = from_nanos(r[f"{k}_nanos"])
    emit(rows, fmt, ["budget", "period", "spend_usd", "amount_usd", "forecast_usd", "linear_forecast_usd",
                     "exhausted_at", "method"], title=f"budget forecasts as of {human.when(when)}",
         empty="no calendar budgets: pass --budgets FILE (before the command) or set budgets.budgets_file")


COMMANDS = [report_finance, export, reprice]
