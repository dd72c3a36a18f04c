"""`costwarden controls list|release|extend|audit` (every change audited: who, when, why).

With `costwarden serve` running on the data directory, each goes through its API (cli/remote.py)."""
from __future__ import annotations

from datetime import datetime, timezone

import click

from costwarden.cli import via_api
from costwarden.cli.common import emit, handle_errors
from costwarden.cli.remote import api_for
from costwarden.store.queries import AUDIT_SQL


@click.group()
def controls():
    """Throttles and kill switches per workflow."""


@controls.command("list")
@click.option("--all", "show_all", is_flag=True, help="include expired and released controls")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def list_(ctx, show_all, as_json):
    """Current controls."""
    from costwarden.cli import open_pipeline

    api = api_for(ctx, "status")
    rows = via_api.controls(api, show_all) if api is not None else _local_controls(open_pipeline(ctx.find_root()),
                                                                                    show_all)
    emit(rows, "json" if as_json else "table",
         ["workflow", "state", "rate_per_min", "budget", "reason", "set_by", "set_at", "expires_at", "active"],
         title="controls", empty="no throttle or block has ever been set" if show_all else
         "no active throttle or block (`costwarden controls list --all` shows expired and released ones)")


def _local_controls(p, show_all: bool) -> list[dict]:
    now = datetime.now(timezone.utc)
    rows = []
    for c in p.controls.all():
        active = c.active(now) and c.state.value != "allow"
        if not show_all and not active:
            continue
        rows.append({"workflow": c.workflow, "state": c.state.value, "rate_per_min": c.rate_per_min,
                     "budget": c.budget_id, "reason": c.reason, "set_by": c.set_by, "set_at": c.set_at,
                     "expires_at": c.expires_at, "active": active})
    return rows


@controls.command()
@click.argument("workflow")
@click.option("--reason", required=True, help="why (kept in the audit trail)")
@click.option("--by", "by", required=True, help="who is releasing (kept in the audit trail)")
@click.pass_context
@handle_errors
def release(ctx, workflow, reason, by):
    """Release a throttle or block; holds until the budget's period ends."""
    from costwarden.cli import open_pipeline

    api = api_for(ctx, "admin")
    if api is not None:
        r = via_api.release(api, workflow, reason, by)
        click.echo(f"released {workflow} (was {r['from']}); audited as {r['by']}: {reason}")
        return
    p = open_pipeline(ctx.find_root())
    change = p.change_control(lambda book: book.release(workflow, reason=reason, by=by))
    click.echo(f"released {workflow} (was {change.before.state.value}); audited as {by}: {reason}")


@controls.command()
@click.argument("workflow")
@click.option("--until", default=None, help="ISO time (UTC) to keep it until; omit to keep until released")
@click.option("--reason", required=True)
@click.option("--by", "by", required=True)
@click.pass_context
@handle_errors
def extend(ctx, workflow, until, reason, by):
    """Keep a throttle or block past its period end."""
    from costwarden.cli import open_pipeline

    when = datetime.fromisoformat(until).replace(tzinfo=timezone.utc) if until else None
    api = api_for(ctx, "admin")
    if api is not None:
        r = via_api.extend(api, workflow, when, reason, by)
        click.echo(f"kept {workflow} {r['state']} until {when or 'released'}; audited as {r['by']}")
        return
    p = open_pipeline(ctx.find_root())
    change = p.change_control(lambda book: book.extend(workflow, until=when, reason=reason, by=by))
    click.echo(f"kept {workflow} {change.after.state.value} until {when or 'released'}; audited as {by}")


@controls.command()
@click.option("--workflow", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def audit(ctx, workflow, as_json):
    """Every control change: who, when, why."""
    from costwarden.cli import open_pipeline

    api = api_for(ctx, "status")
    if api is not None:
        rows = via_api.audit(api, workflow)
    else:
        p = open_pipeline(ctx.find_root())
        rows = [r for r in p.store.query(AUDIT_SQL) if workflow is None or r["workflow"] == workflow]
    emit(rows, "json" if as_json else "table",
         ["at", "workflow", "from_state", "to_state", "rate_per_min", "budget_id", "actor", "actor_kind", "reason"],
         title="control audit", empty="no control changes recorded" + (f" for {workflow}" if workflow else ""))
