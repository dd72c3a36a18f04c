"""`costwarden catalogue update|lookup|compare`: the price catalogue (streams/catalogue_update.py)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import click

from costwarden.cli.common import handle_errors
from costwarden.errors import ConfigError


@click.group()
def catalogue():
    """The price catalogue: build it from genai-prices, look a model up, compare with genai-prices."""


def _current(ctx: click.Context, out: Path | None):
    """(the current catalogue, where it was read from) and the file an update writes (or None)."""
    from costwarden.cli import settings_from
    from costwarden.streams.catalogue import PriceCatalogue

    configured = settings_from(ctx).budgets.catalogue_file
    target = out or configured
    if target is not None and Path(target).exists():
        return PriceCatalogue.from_yaml(target), str(target), target
    if configured is not None and configured != target:
        return PriceCatalogue.from_yaml(configured), str(configured), target
    return PriceCatalogue.default(), "the packaged catalogue", target


@catalogue.command()
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="the catalogue file to refresh and write (default: the configured catalogue file)")
@click.option("--overrides", "overrides", multiple=True, type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="an overrides file layered on top (repeatable, in order): negotiated or enterprise rates")
@click.option("--no-default-overrides", is_flag=True, help="leave out costwarden's own overrides.yaml")
@click.option("--write", is_flag=True, help="write the new version (without it: print the diff only)")
@click.option("--version", "version", default=None, help="version name (default: DATE.genai-prices-VERSION)")
@click.option("--effective-from", "effective_from", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="date of a price change the source gives no date for (default: today, UTC)")
@click.option("--summary", is_flag=True, help="print counts, not every changed model")
@click.pass_context
@handle_errors
def update(ctx, out, overrides, no_default_overrides, write, version, effective_from, summary):
    """Build the catalogue from the installed genai-prices snapshot and the overrides, print the diff
    against the current catalogue, and with --write save it as a new version."""
    try:
        from costwarden.streams import catalogue_update as cu
    except ModuleNotFoundError as e:  # pragma: no cover - genai-prices is a dependency
        raise ConfigError(f"costwarden catalogue update needs the genai-prices package: {e}") from None
    from costwarden.streams.catalogue import parse_catalogue

    current, where, target = _current(ctx, out)
    layers = [] if no_default_overrides else [cu.default_overrides()]
    for f in overrides:
        layers.append((parse_catalogue(Path(f).read_text(encoding="utf-8"), str(f), partial=True), str(f)))
    today = (effective_from.date() if effective_from else datetime.now(timezone.utc).date())
    u = cu.build(current.file, layers, today=today, version=version)
    click.echo(f"current: {where} (version {current.version}, {current.model_count()} models)")
    for line in u.report.lines():
        click.echo(line)
    if not summary:
        for line in u.diff:
            click.echo(line)
    c = u.counts
    click.echo(f"models: {c.get('models_before', 0)} -> {c.get('models_after', 0)} (+{c.get('models_added', 0)} added, "
               f"{c.get('models_repriced', 0)} repriced, {c.get('models_renamed', 0)} with new names, "
               f"{c.get('models_removed', 0)} removed)")
    if not u.changed:
        same = target is not None and Path(target).exists() and Path(target).read_text(encoding="utf-8") == u.text
        if write and target is not None and not same:
            Path(target).write_text(u.text, encoding="utf-8")
            click.echo(f"no price changes; wrote {target} (version {u.data['version']})")
        else:
            click.echo("no changes: nothing to write")
        return
    if not write:
        click.echo(f"dry run: add --write to save version {u.data['version']}"
                   + (f" to {target}" if target else " (and --out FILE)"))
        return
    if target is None:
        raise ConfigError("--write needs --out FILE (the packaged catalogue is not rewritten in place); "
                          "then point budgets.catalogue_file at it")
    Path(target).write_text(u.text, encoding="utf-8")
    click.echo(f"wrote {target}: version {u.data['version']}, {u.catalogue.model_count()} models")


@catalogue.command()
@click.argument("provider")
@click.argument("model")
@click.pass_context
@handle_errors
def lookup(ctx, provider, model):
    """Which catalogue entry prices MODEL under PROVIDER, and its price versions (JSON)."""
    from costwarden.components import load_catalogue
    from costwarden.cli import settings_from

    cat = load_catalogue(settings_from(ctx))
    e = cat.resolve(provider, model)
    if e is None:
        click.echo(json.dumps({"provider": provider, "model": model, "priced": False}))
        return
    mf = next(m for k, m in cat.file.providers[_provider_key(cat, e.provider)].models.items()
              if k.strip().lower() == e.key)
    click.echo(json.dumps({"provider": provider, "model": model, "priced": True, "entry": f"{e.provider}/{e.key}",
                           "source": mf.source, "catalogue_version": cat.version,
                           "prices": [v.model_dump(mode="json", exclude_none=True) for v in mf.prices]}, indent=2))


def _provider_key(cat, name: str) -> str:
    return next(k for k in cat.file.providers if k.strip().lower() == name)


@catalogue.command()
@click.option("--per-provider", default=6, show_default=True, help="models sampled per genai-prices provider")
@click.option("--at", "at", default="2026-11-15T12:00:00+00:00", show_default=True, help="request time (UTC)")
@click.option("--all", "show_all", is_flag=True, help="list equal prices too")
@click.pass_context
@handle_errors
def compare(ctx, per_provider, at, show_all):
    """Our price vs genai_prices.calc_price on a sample of models and usages, every difference with its reason."""
    from collections import Counter

    from costwarden.components import load_catalogue
    from costwarden.cli import settings_from
    from costwarden.streams import catalogue_update as cu

    cat = load_catalogue(settings_from(ctx))
    when = datetime.fromisoformat(at)
    rows = cu.compare(cat, cu.sample(cu.snapshot_providers(), per_provider), when)
    reasons = Counter(r.reason for r in rows if r.differs)
    for r in rows:
        if r.differs or show_all:
            click.echo(f"{r.provider}/{r.model} [{r.usage}] ours {r.ours} genai {r.theirs} via {r.priced_as}"
                       + (f": {r.reason}" if r.reason else ""))
    click.echo(f"{len(rows)} (model, usage) pairs, {len({(r.provider, r.model) for r in rows})} models: "
               f"{sum(not r.differs for r in rows)} equal, {sum(r.differs for r in rows)} differ")
    for reason, n in reasons.most_common():
        click.echo(f"  {n:5d}  {reason}")


COMMANDS = [catalogue]
