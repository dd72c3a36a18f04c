"""`costwarden budgets validate|status`."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click

from costwarden import human
from costwarden.cli.common import emit, handle_errors
from costwarden.money import from_nanos


@click.group()
def budgets():
    """Budgets as code: validate files, show status."""


@budgets.command()
@click.argument("file", type=click.Path(path_type=Path, exists=True))
@handle_errors
def validate(file):
    """Check a budgets file; exits non-zero listing file, line and field of every error."""
    from costwarden.budgets.loader import load_budgets

    bf = load_budgets(file)
    click.echo(f"{file}: ok, {len(bf.budgets)} budgets")


def parse_at(text: str) -> datetime:
    """An ISO instant; its UTC offset is kept (none given: UTC). A bare date is its midnight."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: use an ISO time such as 2026-11-29T23:30:00-05:00",
                                 param_hint="--at") from None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t


@budgets.command()
@click.option("--at", "at", default=None, metavar="TIME",
              help="as of this instant (ISO 8601; an offset such as -05:00 is honoured, none means UTC): "
                   "each budget's period containing it, spend up to it")
@click.option("--period", default=None, metavar="PERIOD",
              help="as of the end of this period (2026-11, 2026-Q4, 2026-11-21 ...; now if it has not ended)")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
@handle_errors
def status(ctx, at, period, fmt):
    """Spend, % used, forecast and state of every budget in its current period; with --at or
    --period, as of that instant: spend up to it, forecast from the days before it."""
    from costwarden.cli import open_pipeline
    from costwarden.cli.common import parse_period
    from costwarden.cli.remote import RemoteError, api_for
    from costwarden.reports import budget_status_as_of, just_before

    if at and period:
        raise click.UsageError("give --at or --period, not both")
    now = datetime.now(timezone.utc)
    when = parse_at(at) if at else None
    if period:
        when = min(just_before(parse_period(period)[1]), now)
    api = api_for(ctx, "status")
    if api is not None:
        from costwarden.cli import via_api

        if when is not None:
            raise RemoteError(f"{api.info.describe()} holds {api.settings.data_dir}: its API reports budgets now; "
                              f"`--at` and `--period` have no API path (omit them, or stop the server)", 10)
        rows = via_api.budget_status(api)
    else:
        p = open_pipeline(ctx.find_root())
        rows = budget_status_as_of(p.store, p.budgets, when) if when is not None else p.status(now)
        for r in rows:
            r["spend_usd"] = from_nanos(r["spend_nanos"])
            r["amount_usd"] = from_nanos(r["amount_nanos"])
            r["forecast_usd"] = from_nanos(r["forecast_nanos"])
    emit(rows, fmt, ["budget", "period", "spend_usd", "amount_usd", "pct_used", "forecast_usd", "state"],
         title=f"budget status as of {human.when(when or now)}",
         empty="no budgets: pass --budgets FILE (before the command) or set budgets.budgets_file in costwarden.yaml")
