"""Presenting a budget simulation: text for people, JSON for tools (exact decimal strings)."""
from __future__ import annotations

from typing import Callable

from costwarden.finance.simulate import Simulation
from costwarden.human import plural, usd_nanos
from costwarden.money import from_nanos


def as_json(sim: Simulation) -> dict:
    return {
        "from": sim.start.isoformat(), "to": sim.end.isoformat(), "events": sim.events,
        "spend_usd": str(from_nanos(sim.spend_nanos)), "refused_usd": str(from_nanos(sim.refused_nanos)),
        "budgets": [{
            "budget": o.budget_id, "amount_usd": str(from_nanos(o.amount_nanos)),
            "charged_usd": str(from_nanos(o.charged_nanos)),
            "fired": [{"at": f.at.isoformat(), "period": f.period, "threshold": f.threshold, "kind": f.kind,
                       "spend_usd": str(from_nanos(f.spend_nanos)),
                       "forecast_usd": str(from_nanos(f.forecast_nanos))} for f in o.fired],
            "tripped": [{"at": t.at.isoformat(), "workflow": t.workflow, "state": t.state,
                         "rate_per_min": None if t.rate_per_min is None else str(t.rate_per_min),
                         "until": t.expires_at.isoformat() if t.expires_at else None, "reason": t.reason}
                        for t in o.tripped],
            "refused_usd": str(from_nanos(o.refused_nanos)),
            "refused_by_block_usd": str(from_nanos(o.refused_block_nanos)),
            "refused_by_throttle_usd": str(from_nanos(o.refused_throttle_nanos)),
            "refused_events": o.refused_events,
            "refused_by_workflow": {k: str(from_nanos(v)) for k, v in o.refused_by_workflow.items()},
        } for o in sim.budgets.values()],
    }


def print_text(sim: Simulation, echo: Callable[[str], None]) -> None:
    echo(f"replayed {sim.events:,} stored events {sim.start:%Y-%m-%d %H:%M} .. {sim.end:%Y-%m-%d %H:%M} UTC "
         f"(spend {usd_nanos(sim.spend_nanos)}); in memory only: nothing written, sent or changed")
    for o in sim.budgets.values():
        echo(f"\n{o.budget_id} (amount {usd_nanos(o.amount_nanos)}): charged {usd_nanos(o.charged_nanos)}, "
             f"{plural(len(o.fired), 'threshold')} fired, {plural(len(o.tripped), 'control')} tripped, "
             f"refused {usd_nanos(o.refused_nanos)} in {o.refused_events:,} events")
        for f in o.fired:
            echo(f"  {f.at:%Y-%m-%d %H:%M:%S} {f.period} {f.kind} {f.threshold} fired at spend "
                 f"{usd_nanos(f.spend_nanos)}" + (f" (forecast {usd_nanos(f.forecast_nanos)})"
                                                 if f.kind == "forecast" else ""))
        for t in o.tripped:
            rate = f" to {t.rate_per_min}/min" if t.rate_per_min is not None else ""
            until = f" until {t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else ""
            echo(f"  {t.at:%Y-%m-%d %H:%M:%S} {t.state} {t.workflow}{rate}{until}")
        if o.refused_nanos:
            echo(f"  refused: by block {usd_nanos(o.refused_block_nanos)}, by throttle "
                 f"{usd_nanos(o.refused_throttle_nanos)}; "
                 + ", ".join(f"{w} {usd_nanos(v)}" for w, v in o.refused_by_workflow.most_common()))
    echo(f"\ntotal refused {usd_nanos(sim.refused_nanos)} of {usd_nanos(sim.spend_nanos)}")
