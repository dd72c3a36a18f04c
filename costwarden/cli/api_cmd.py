"""`costwarden serve` (embedded pipeline + API in one process), `costwarden api`, `costwarden tokens`."""
from __future__ import annotations

import json

import click

from costwarden.cli.common import emit, handle_errors
from costwarden.errors import ConfigError
from costwarden.store import tokens as token_rows


def _serve(ctx, host, port, deliver: bool) -> None:
    from costwarden.api import ApiServer, EmbeddedRuntime, create_app
    from costwarden.cli import settings_from

    s = settings_from(ctx.find_root())
    rt = EmbeddedRuntime.open(s, deliver=deliver)
    app = create_app(rt)
    srv = ApiServer(app, host=host or s.api.host, port=port if port is not None else s.api.port,
                    log_level="info")
    click.echo(f"costwarden API on {srv.url} (embedded pipeline, chDB in {s.data_dir}); "
               f"OpenAPI at {srv.url}/openapi.json", err=True)
    try:
        srv.serve_forever()
    finally:
        rt.close()


@click.command()
@click.option("--host", default=None, help="bind address (default api.host, 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (default api.port, 8787)")
@click.option("--no-alerts", is_flag=True, help="do not deliver alerts from this process")
@click.pass_context
@handle_errors
def serve(ctx, host, port, no_alerts):
    """Run everything in one process: the embedded pipeline and the HTTP API."""
    _serve(ctx, host, port, deliver=not no_alerts)


@click.command("api")
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.option("--mode", type=click.Choice(["embedded", "distributed"]), default="embedded",
              help="embedded: this process runs the pipeline; distributed: decisions from the controls topic")
@click.pass_context
@handle_errors
def api(ctx, host, port, mode):
    """Run the HTTP API service.

    \b
    embedded:    this process runs the pipeline on its own store (as `costwarden serve`).
    distributed: no pipeline; events go to Kafka (kafka.topic_raw), decisions follow the compacted
                 controls topic, status/audit read the ClickHouse store (store.url). Run as many
                 replicas as you like next to `costwarden worker`.
    """
    if mode == "distributed":
        _serve_distributed(ctx, host, port)
        return
    _serve(ctx, host, port, deliver=False)


def _serve_distributed(ctx, host, port) -> None:
    from costwarden.api import ApiServer, create_app
    from costwarden.api.distributed import DistributedRuntime
    from costwarden.cli import settings_from

    s = settings_from(ctx.find_root())
    url = s.store.url.get_secret_value() if s.store.url else ""
    if not url.startswith(("http://", "https://")):
        raise ConfigError("distributed API mode needs a ClickHouse server: set store.url "
                          "(COSTWARDEN_STORE__URL=http://host:8123), the one the workers use")
    rt = DistributedRuntime.open(s)
    app = create_app(rt)
    srv = ApiServer(app, host=host or s.api.host, port=port if port is not None else s.api.port,
                    log_level="info")
    click.echo(f"costwarden API on {srv.url} (distributed: Kafka {s.kafka.bootstrap_servers}, controls "
               f"topic {s.kafka.topic_controls}); OpenAPI at {srv.url}/openapi.json", err=True)
    try:
        srv.serve_forever()
    finally:
        rt.close()


@click.group()
def tokens():
    """API bearer tokens (only their sha256 is stored)."""


@tokens.command("create")
@click.option("--name", required=True, help="who uses it: shown as 'who' in the audit trail")
@click.option("--role", required=True, type=click.Choice(["gateway", "viewer", "finance", "admin"]))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def create(ctx, name, role, as_json):
    """Create a token and print it ONCE (it cannot be shown again)."""
    from costwarden.api.auth import create_token
    from costwarden.cli import open_pipeline

    p = open_pipeline(ctx.find_root())
    token = create_token(p.store, name, role)
    if as_json:
        click.echo(json.dumps({"name": name, "role": role, "token": token}))
    else:
        click.echo(token)
        click.echo(f"token for {name} ({role}); store it now: only its sha256 is kept", err=True)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def list_(ctx, as_json):
    """Token names, roles and hash prefixes (never the tokens)."""
    from costwarden.cli import open_pipeline

    p = open_pipeline(ctx.find_root())
    rows = token_rows.listing(p.store)
    for r in rows:
        r["sha256_prefix"] = r.pop("token_sha256")[:12]
    emit(rows, "json" if as_json else "table", ["name", "role", "sha256_prefix", "created_at", "revoked"],
         title="API tokens")


@tokens.command("revoke")
@click.argument("sha256_prefix")
@click.pass_context
@handle_errors
def revoke(ctx, sha256_prefix):
    """Revoke the token whose sha256 starts with SHA256_PREFIX (see `tokens list`)."""
    from costwarden.cli import open_pipeline

    p = open_pipeline(ctx.find_root())
    rows = token_rows.matching(p.store, sha256_prefix)
    if len(rows) != 1:
        raise ConfigError(f"{len(rows)} active tokens match {sha256_prefix!r}; give a longer prefix")
    row = token_rows.revoke(p.store, rows[0])
    click.echo(f"revoked {row['name']} ({row['role']})")


COMMANDS = [serve, api, tokens]
