"""`costwarden demo`: the last complete month through the whole embedded loop, and its story."""
from __future__ import annotations

import shutil
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import click

from costwarden import human
from costwarden.cli.common import emit, handle_errors
from costwarden.money import from_nanos


def just_before(t):
    return t - timedelta(microseconds=1)


@click.command()
@click.option("--dir", "project", type=click.Path(path_type=Path, file_okay=False), default=Path("costwarden-demo"),
              show_default=True, help="the project directory the demo makes (config, budgets, sample inputs, "
                                      "data in DIR/.costwarden); run the README's commands in it")
@click.option("--month", envvar="COSTWARDEN_DEMO_MONTH", default=None, metavar="YYYY-MM",
              help="the month to simulate (default: the last complete month) [env COSTWARDEN_DEMO_MONTH]")
@click.option("--keep", is_flag=True, help="keep the data of an earlier run (ingest the month again: counted once)")
@click.option("--seed", default=42, show_default=True)
@click.pass_context
@handle_errors
def demo(ctx, project, month, keep, seed):
    """Feed a realistic synthetic month (six teams, a runaway agent) through the embedded pipeline,
    behind a gateway that honours costwarden's answers, and tell what happened."""
    import logging

    from costwarden import demo as gen
    from costwarden.alerts.notifier import LogNotifier
    from costwarden.cli import settings_from
    from costwarden.cli.remote import guard_local
    from costwarden.embedded import EmbeddedPipeline
    from costwarden.errors import ConfigError

    if month:
        try:
            start, end = gen.month_of(month)
        except ValueError:
            raise click.BadParameter(f"{month!r}: use YYYY-MM", param_hint="--month") from None
    else:
        start, end = gen.month_window(gen.now_utc())
    data_override, budgets_override, rules_override, _ = ctx.obj["overrides"]
    if project.exists() and any(project.iterdir()) and not gen.is_demo_project(project):
        raise ConfigError(f"{project} exists and is not a costwarden demo project: choose another with --dir")
    s = settings_from(ctx)
    s.data_dir = (data_override / "demo").resolve() if data_override else project / ".costwarden"
    guard_local(s)  # a server running on the demo's data: one line, exit 5 (and nothing deleted)
    if not keep and s.data_dir.exists():
        shutil.rmtree(s.data_dir)
    gen.write_project(project, end, data_dir=s.data_dir if data_override else None)
    s.budgets.budgets_file = budgets_override or project / "budgets.yaml"
    s.budgets.rules_file = rules_override or project / "rules.yaml"
    click.echo(f"costwarden demo: {start:%B %Y} ({start:%Y-%m-%d} .. {just_before(end):%Y-%m-%d}), synthetic "
               f"usage of six teams\nthrough the embedded pipeline (chDB in {s.data_dir}), behind a gateway that "
               f"asks costwarden before every call")
    logging.getLogger("costwarden.alerts.log").setLevel(logging.ERROR)  # the demo prints alerts itself
    notifier = LogNotifier()
    p = EmbeddedPipeline(s, notifier=notifier)
    t0 = time.perf_counter()
    try:
        with human.Progress("simulating", unit="payloads") as bar:
            r = gen.run(p, start, end, seed, progress=bar.advance)
    finally:
        p.close(flush_alerts=True)
    elapsed = time.perf_counter() - t0
    gen.write_project(project, end, r, data_dir=s.data_dir if data_override else None)
    tell(p, r, notifier, elapsed, project)


def tell(p, r, notifier, elapsed: float, project: Path) -> None:
    """The month's story: what was spent, who went over, which alerts fired, the runaway agent."""
    from costwarden.reports import spend_report

    start, end, rep = r.start, r.end, r.report
    label = f"{start:%Y-%m}"
    dead = dict(rep.dead)
    click.echo(f"\n{human.count(r.payloads)} payloads in {elapsed:.1f} s ({r.payloads / elapsed:,.0f}/s, "
               f"{human.plural(r.batches, 'commit')}): {human.count(rep.accepted)} events priced and stored, "
               f"{human.count(rep.duplicates)} re-deliveries counted once, {human.count(sum(dead.values()))} "
               f"invalid payloads dead-lettered with the reason ({human.mapping(dead)})")
    models, _ = spend_report(p.store, ["provider", "model"], start, end)
    for m in models:
        if m["unpriced_events"] and m["provider"] != "TOTAL":
            charged = (f"charged {human.usd(m['cost_usd'])} by the pricing.unpriced policy" if m["cost_nanos"]
                       else "charged $0.00 (no pricing.unpriced policy applied)")
            click.echo(f"unpriced: {human.count(m['unpriced_events'])} events of {m['provider']}/{m['model']}, a "
                       f"model not in the price catalogue: flagged in every report, {charged}")

    rows, _ = spend_report(p.store, ["team"], start, end)
    emit(rows, "table", ["team", "requests", "cost_usd", "cost_per_request_usd", "unpriced_events"],
         title=f"spend by team, {label}")
    click.echo("(cost / request counts model calls only: platform's GPU hours have no requests)")
    rows, _ = spend_report(p.store, ["team", "workflow"], start, end)
    emit([x for x in rows if x["team"] != "TOTAL"][:8], "table", ["team", "workflow", "requests", "cost_usd"],
         title="top workflows")

    at = just_before(end)
    status = p.status(at)
    for s in status:
        s["spend_usd"], s["amount_usd"], s["forecast_usd"] = (from_nanos(s["spend_nanos"]),
                                                              from_nanos(s["amount_nanos"]),
                                                              from_nanos(s["forecast_nanos"]))
    emit(status, "table", ["budget", "period", "spend_usd", "amount_usd", "pct_used", "forecast_usd", "state"],
         title=f"budgets at the end of {label} ({human.when(at)})")
    over = [s for s in status if s["state"] == "over"]
    click.echo(("over budget in " + label + ": " + "; ".join(
        f"{s['budget']} {human.pct(s['pct_used'])} ({human.usd(s['spend_usd'])} of {human.usd(s['amount_usd'])})"
        for s in over)) if over else f"no budget ended {label} over its amount")

    sigs = sorted(rep.signals, key=lambda x: x.at)
    channels = {x.key: _channels(x) for x in sigs}
    n_notes = sum(len(c) for c in channels.values())
    multi = next((x for x in sigs if len(channels[x.key]) > 1), None)
    click.echo(f"\nalerts: {human.plural(len(sigs), 'budget signal')} (a threshold crossed or a spike, each once "
               f"per period), {human.plural(n_notes, 'notification')}: a signal notifies every channel its "
               f"threshold names" + (f" ({multi.budget.id} at {multi.threshold}: {' and '.join(channels[multi.key])})"
                                     if multi else ""))
    for x in sigs:
        click.echo(f"  {human.when(x.at)}  {x.budget.id:<17} {_what(x):<22} spend {human.usd_nanos(x.spend_nanos):>10}"
                   f"  -> {', '.join(channels[x.key]) or 'no channel'}")
    delivered = len(notifier.sent)
    click.echo(f"  ({human.plural(delivered, 'notification')} delivered; no alert channel is configured, so they "
               f"went to the log: name Apprise URLs under alerts.channels in costwarden.yaml)")

    runaway(p, r, sigs, channels)
    sample = next((b for _, _, b in notifier.sent if "blocked" in b), None)
    if sample:
        click.echo("\nthe alert on-call received when the kill switch tripped:\n  " + sample.replace("\n", "\n  "))

    total = sum(x["cost_nanos"] for x in models if x["provider"] != "TOTAL")
    click.echo(f"\ntotal {label}: {human.usd_nanos(total)} (exact ${from_nanos(total)}). "
               f"The demo left a project in {project}/ (costwarden.yaml, budgets.yaml, rules.yaml, sample inputs, "
               f"data in .costwarden/); the README's commands work in it:\n"
               f"  cd {project}\n"
               f"  costwarden report --by team,workflow --period {label}\n"
               f"  costwarden budgets status --period {label}\n"
               f"  costwarden controls audit")


def runaway(p, r, sigs, channels) -> None:
    """The runaway agent: spike alert, throttle, block, the person who kept it, the gateway's refusals."""
    from costwarden import demo as gen
    from costwarden.reports import spend_report

    loop_start, loop_end = gen.runaway_window(r.end)
    day0 = loop_start.replace(hour=0)
    day1 = day0 + timedelta(days=1)
    gw = r.gateway.refused
    steps = [(x.at, (f"spike: spending over {x.threshold.removeprefix('spike x')}x its usual rate "
                     f"({human.usd_nanos(x.spend_nanos)} so far that day)" if x.kind == "spike" else
                     f"{x.kind} spend {human.usd_nanos(x.spend_nanos)}: {x.threshold} of its "
                     f"{human.usd_nanos(x.amount_nanos)} daily budget") + f" -> alert to {', '.join(channels[x.key])}")
             for x in sigs if x.budget.id == "agent-loop-daily"]
    for c in r.report.changes:
        a = c.after
        if a.workflow != "agent-loop":
            continue
        what = (f"throttled to {a.rate_per_min.normalize()} calls a minute" if a.state.value == "throttle"
                else "blocked: the kill switch" if a.state.value == "block" else a.state.value)
        steps.append((c.at, f"{what} ({a.reason})"))
    if r.kept is not None:
        steps.append((r.kept.at, f"{r.kept.actor} kept the block until released: \"{r.kept.reason}\" (audited)"))
    steps.sort(key=lambda t: t[0])
    click.echo(f"\nthe runaway agent: research/agent-loop looped from {human.when(loop_start)} to "
               f"{loop_end:%H:%M} (about 28 large claude-opus-4-5 calls a minute)")
    for t, text in steps:
        click.echo(f"  {t:%Y-%m-%d %H:%M:%S}  {text}")
    if not gw.calls:
        click.echo("  the gateway refused no call")
        return
    rows, _ = spend_report(p.store, ["workflow"], day0, day1)
    spent = next((x["cost_nanos"] for x in rows if x["workflow"] == "agent-loop"), 0)
    calls_day, saved_day = gw.by_day.get(day0.date(), (0, 0))
    click.echo(f"  the gateway asked before every call and honoured the answers: {human.count(gw.calls)} calls "
               f"refused ({human.count(gw.throttled)} over the throttle's rate, {human.count(gw.blocked)} while "
               f"blocked)")
    click.echo(f"  agent-loop on {day0:%Y-%m-%d}: {human.usd_nanos(spent)} spent with costwarden, "
               f"{human.usd_nanos(spent + saved_day)} without it: {human.usd_nanos(saved_day)} saved")
    team = next((b for b in p.budgets.budgets if b.id == "team-research"), None)
    if team is not None:
        st = next(x for x in p.status(just_before(r.end)) if x["budget"] == "team-research")
        without = st["spend_nanos"] + gw.nanos
        click.echo(f"  research's month: {human.usd_nanos(st['spend_nanos'])} ({human.pct(st['pct_used'])} of "
                   f"{human.usd_nanos(st['amount_nanos'])}); without costwarden {human.usd_nanos(without)} "
                   f"({human.pct(Decimal(without) * 100 / st['amount_nanos'])})"
                   + (": over budget" if without >= st["amount_nanos"] else ""))
    later = gw.nanos - saved_day
    if later:
        click.echo(f"  and {human.count(gw.calls - calls_day)} more calls ({human.usd_nanos(later)}) refused while "
                   f"the block was kept, to the month's end")
    now = gen.now_utc()
    for wf in ("agent-loop", "rag-answer"):
        d = p.check(wf, now)
        click.echo(f"  gateway check({wf!r}) now -> {d.action.value}" + (f": {d.reason}" if d.reason else ""))
    if p.check("agent-loop", now).action.value == "block":
        click.echo("  to release it: costwarden controls release agent-loop --reason \"fixed the loop\" "
                   "--by ann@example.com")


def _channels(sig) -> list[str]:
    out: list[str] = []
    for a in sig.actions:
        for ch in getattr(a, "notify", None) or []:
            if ch not in out:
                out.append(ch)
    return out


def _what(sig) -> str:
    """`actual >= 80%`, `forecast >= 100%`, `spike (5x)`."""
    if sig.kind == "spike":
        return f"spike ({sig.threshold.removeprefix('spike x')}x baseline)"
    return f"{sig.kind} >= {sig.threshold}"
