"""`costwarden serve` (embedded pipeline + API in one process), `costwarden api`, `costwarden tokens`."""
from __future__ import annotations

import json

import click

from costwarden.cli.common import emit, handle_errors
from costwarden.errors import ConfigError
from costwarden.store import tokens as token_rows


def _serve(ctx, host, port, deliver: bool) -> None:
    """The embedded pipeline + API. While it listens, DATA_DIR/serve.json (and serve.token, an admin
    token of its own) tell the CLI on this machine to go through the API (cli/remote.py)."""
    from costwarden.api import ApiServer, EmbeddedRuntime, create_app
    from costwarden.api.auth import local_token, revoke_token
    from costwarden.cli import settings_from
    from costwarden.cli.remote import client_url, guard_local, remove_serve_files, write_serve_files

    s = settings_from(ctx.find_root())
    guard_local(s, "costwarden serve")
    rt = EmbeddedRuntime.open(s, deliver=deliver)
    try:
        token = rt.thread.call(lambda: local_token(rt.store)) if s.api.local_token else None
        app = create_app(rt)
        srv = ApiServer(app, host=host or s.api.host, port=port if port is not None else s.api.port,
                        log_level="info")

        def listening(srv) -> None:
            url = client_url(srv.host, srv.port)
            write_serve_files(s.data_dir, url, token)
            click.echo(f"costwarden API on {url} (embedded pipeline, chDB in {s.data_dir}); OpenAPI at "
                       f"{url}/openapi.json; the CLI on this data directory goes through it", err=True)
        _stop_cleanly_on_sigterm()
        try:
            srv.serve_forever(on_started=listening)
        finally:
            remove_serve_files(s.data_dir)
            if token is not None:
                try:
                    rt.thread.call(lambda: revoke_token(rt.store, token), timeout=10)
                except Exception as e:  # revoked at the next start anyway
                    click.echo(f"note: the local token stays valid until the next start ({type(e).__name__})",
                               err=True)
    finally:
        rt.close()


def _stop_cleanly_on_sigterm() -> None:
    """uvicorn shuts down gracefully on SIGTERM, then raises SIGTERM again with the handler it found:
    the default one would end the process before the runtime closes (alerts flushed, serve.json
    removed). This one ends it through the `finally` blocks, exit code 0."""
    import signal

    def stop(signum, frame):
        raise SystemExit(0)
    try:
        signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: the caller stops the server itself
        pass


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


def _person() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "cli"


_BY = click.option("--by", "by", default=None, help="who does it (audit trail; default: your login name)")
_REASON = click.option("--reason", default="", help="why (audit trail)")


@tokens.command("create")
@click.option("--name", required=True, help="who uses it: shown as 'who' in the audit trail")
@click.option("--role", required=True, type=click.Choice(["gateway", "viewer", "finance", "admin"]))
@_BY
@_REASON
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def create(ctx, name, role, by, reason, as_json):
    """Create a token and print it ONCE (it cannot be shown again). Audited.

    With `costwarden serve` running on the data directory: through its API (an admin token)."""
    from costwarden.api.auth import create_token, token_hash
    from costwarden.cli import open_pipeline, via_api
    from costwarden.cli.remote import api_for

    by = by or _person()
    api = api_for(ctx, "admin")
    if api is not None:
        token = via_api.token_create(api, name, role, by, reason)
    else:
        p = open_pipeline(ctx.find_root())
        token = create_token(p.store, name, role)
        token_rows.audit(p.store, "create", {"token_sha256": token_hash(token), "name": name, "role": role},
                         by, reason)
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
    from costwarden.cli import open_pipeline, via_api
    from costwarden.cli.remote import api_for

    api = api_for(ctx, "admin")
    if api is not None:
        rows = via_api.token_list(api)
    else:
        rows = token_rows.listing(open_pipeline(ctx.find_root()).store)
        for r in rows:
            r["sha256_prefix"] = r.pop("token_sha256")[:token_rows.PREFIX_LEN]
    emit(rows, "json" if as_json else "table", ["name", "role", "sha256_prefix", "created_at", "revoked"],
         title="API tokens")


@tokens.command("revoke")
@click.argument("sha256_prefix")
@_BY
@_REASON
@click.pass_context
@handle_errors
def revoke(ctx, sha256_prefix, by, reason):
    """Revoke the token whose sha256 starts with SHA256_PREFIX (see `tokens list`). Audited.

    With `costwarden serve` running on the data directory: through its API (an admin token); a
    revoked token is refused by every API replica within api.token_refresh_s."""
    import re

    from costwarden.cli import open_pipeline, via_api
    from costwarden.cli.remote import api_for

    prefix = sha256_prefix.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{4,64}", prefix):
        raise ConfigError(f"{sha256_prefix!r}: give at least 4 hex characters of the token's sha256 "
                          f"(`costwarden tokens list`)")
    by = by or _person()
    api = api_for(ctx, "admin")
    if api is not None:
        row = via_api.token_revoke(api, prefix, by, reason)
    else:
        p = open_pipeline(ctx.find_root())
        rows = token_rows.matching(p.store, prefix)
        if len(rows) != 1:
            raise ConfigError(f"{len(rows)} active tokens match {sha256_prefix!r}; give a longer prefix")
        row = token_rows.revoke(p.store, rows[0])
        token_rows.audit(p.store, "revoke", row, by, reason)
    click.echo(f"revoked {row['name']} ({row['role']})")


COMMANDS = [serve, api, tokens]
