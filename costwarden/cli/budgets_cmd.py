"""`costwarden budgets validate|status`."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click

from costwarden.cli.common import emit, handle_errors
from costwarden.money import from_micros


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


@budgets.command()
@click.option("--at", "at", default=None, help="evaluate at this UTC time (default now)")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
@handle_errors
def status(ctx, at, fmt):
    """Spend, % used, forecast and state of every budget in its current period."""
    from costwarden.cli import open_pipeline
    from costwarden.cli.remote import RemoteError, api_for

    when = datetime.fromisoformat(at).replace(tzinfo=timezone.utc) if at else datetime.now(timezone.utc)
    api = api_for(ctx, "status")
    if api is not None:
        from costwarden.cli import via_api

        if at:
            raise RemoteError(f"{api.info.describe()} holds {api.settings.data_dir}: its API reports budgets now; "
                              f"`--at` has no API path (omit it, or stop the server)", 10)
        rows = via_api.budget_status(api)
    else:
        p = open_pipeline(ctx.find_root())
        rows = p.status(when)
        for r in rows:
            r["spend_usd"] = from_micros(r["spend_micros"])
            r["amount_usd"] = from_micros(r["amount_micros"])
            r["forecast_usd"] = from_micros(r["forecast_micros"])
    emit(rows, fmt, ["budget", "period", "spend_usd", "amount_usd", "pct_used", "forecast_usd", "state"],
         title="budget status")
