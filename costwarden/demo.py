"""A realistic synthetic month of AI usage, with a runaway agent, for `costwarden demo` and tests.

Deterministic for a given (start, end, seed). Six teams' workflows call real models at daily
rhythms; the gateway re-delivers ~1% of events (duplicates), a few payloads are invalid
(dead letters), one model is unknown to the catalogue (unpriced), one API key is mapped by no rule
(unallocated), and `research/agent-loop` goes into a loop two days before the end: a burst of
large claude-opus-4.5 calls that a spike rule and a daily hard budget must stop.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from importlib import resources
from typing import Iterator


@dataclass(frozen=True)
class Workload:
    workflow: str
    key: str
    provider: str
    model: str
    per_hour: float  # mean calls per hour at the daily peak
    inp: int
    cache_read: int
    output: int
    reasoning: int = 0
    tier: str = "standard"
    tagged: bool = True  # the gateway tags team/workflow; False: only the key identifies it


WORKLOADS = [
    Workload("rag-answer", "key_search_prod", "anthropic", "claude-sonnet-4-20250514", 30, 2500, 9000, 450),
    Workload("query-rewrite", "key_search_prod", "openai", "gpt-4.1-mini-2025-04-14", 60, 600, 0, 80),
    Workload("ticket-triage", "key_support_prod", "openai", "gpt-4o-mini", 80, 1200, 1024, 60),
    Workload("reply-draft", "key_support_prod", "anthropic", "claude-haiku-4-5", 25, 3000, 4000, 700),
    Workload("email-gen", "key_growth_batch", "openai", "gpt-4.1-2025-04-14", 20, 1800, 0, 900, tier="batch"),
    Workload("eval-runner", "key_research", "gcp.gemini", "gemini-2.5-pro", 6, 120_000, 0, 2000, 1500),
    Workload("agent-loop", "key_research", "anthropic", "claude-opus-4-5", 2, 20_000, 30_000, 1500),
    Workload("notebook", "key_legacy_unmapped", "openai", "gpt-4o", 4, 2000, 0, 500, tagged=False),
    Workload("prototype", "key_growth_batch", "openai", "mystery-model-x", 1, 1000, 0, 200),
]
TEAM_OF_KEY = {"key_search_prod": "search", "key_support_prod": "support", "key_growth_batch": "growth",
               "key_research": "research"}


def _diurnal(hour: int, weekday: int) -> float:
    base = 0.25 + 0.75 * max(0.0, 1 - abs(hour - 14) / 9)
    return base * (0.45 if weekday >= 5 else 1.0)


def month_window(now: datetime) -> tuple[datetime, datetime]:
    """The current calendar month up to now (the previous whole month in the first week)."""
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if (now - start).days < 7:
        prev_end = start
        start = (start - timedelta(days=1)).replace(day=1)
        return start, prev_end
    return start, now


def events(start: datetime, end: datetime, seed: int = 42, runaway: bool = True) -> Iterator[bytes]:
    rng = random.Random(seed)
    n = 0
    hour = start.replace(minute=0, second=0, microsecond=0)
    loop_start = (end - timedelta(days=2)).replace(hour=2, minute=0, second=0, microsecond=0)
    loop_end = loop_start + timedelta(hours=3)
    while hour < end:
        batch: list[tuple[datetime, dict]] = []
        factor = _diurnal(hour.hour, hour.weekday())
        for w in WORKLOADS:
            calls = _poisson(rng, w.per_hour * factor)
            if runaway and w.workflow == "agent-loop" and loop_start <= hour < loop_end:
                calls = rng.randint(1500, 1800)  # ~27 calls a minute, every one of them large
            for _ in range(calls):
                at = hour + timedelta(seconds=rng.randrange(3600), milliseconds=rng.randrange(1000))
                if at >= end:
                    continue
                n += 1
                batch.append((at, _event(rng, w, at, f"demo-{start:%Y%m}-{n:07d}")))
        batch.sort(key=lambda t: t[0])
        for at, ev in batch:
            line = json.dumps(ev).encode()
            yield line
            r = rng.random()
            if r < 0.01:
                yield line  # the gateway re-delivered it
            elif r < 0.0125:
                yield _invalid(rng, ev)
        if hour.hour == 3:  # nightly GPU fine-tuning job on the platform team's own H100s
            n += 1
            yield json.dumps(_gpu_event(rng, hour, f"demo-{start:%Y%m}-{n:07d}")).encode()
        hour += timedelta(hours=1)


def _poisson(rng: random.Random, lam: float) -> int:
    # Normal approximation is good enough for a demo and much faster than summing exponentials.
    if lam <= 0:
        return 0
    if lam < 30:
        k, p, limit = 0, 1.0, pow(2.718281828459045, -lam)
        while True:
            p *= rng.random()
            if p <= limit:
                return k
            k += 1
    return max(0, int(rng.gauss(lam, lam ** 0.5) + 0.5))


def _jitter(rng: random.Random, x: int) -> int:
    return max(0, int(x * rng.uniform(0.5, 1.5)))


def _event(rng: random.Random, w: Workload, at: datetime, event_id: str) -> dict:
    tags = {"team": TEAM_OF_KEY.get(w.key, ""), "workflow": w.workflow, "env": "prod"} if w.tagged else {}
    tags = {k: v for k, v in tags.items() if v}
    if w.workflow in ("agent-loop", "prototype"):
        tags.pop("team", None)  # left to the attribution rules (key -> team)
    out = _jitter(rng, w.output)
    reasoning = min(out, _jitter(rng, w.reasoning))
    inp = _jitter(rng, w.inp)
    if w.workflow == "eval-runner" and rng.random() < 0.3:
        inp = rng.randint(210_000, 400_000)  # long-context requests: the higher gemini-2.5-pro tier
    return {
        "event_id": event_id, "occurred_at": at.isoformat(), "source": "gateway", "provider": w.provider,
        "model": w.model, "operation": "chat", "requests": 1, "service_tier": w.tier,
        "tokens": {"input": inp, "cache_read": _jitter(rng, w.cache_read), "output": out + reasoning,
                   "reasoning": reasoning},
        "attribution": {"api_key_id": w.key, "trace_id": f"{rng.getrandbits(64):016x}", "tags": tags},
    }


def _gpu_event(rng: random.Random, hour: datetime, event_id: str) -> dict:
    hours = Decimal(rng.randint(6, 8)) * Decimal("8") + Decimal(rng.randint(0, 59)) / Decimal(60)
    return {"event_id": event_id, "occurred_at": hour.isoformat(), "source": "opencost", "provider": "self_hosted",
            "model": "", "operation": "fine-tune", "requests": 0,
            "compute": {"gpu_hours": str(hours.quantize(Decimal("0.0001"))), "gpu_type": "h100"},
            "attribution": {"tags": {"team": "platform", "workflow": "nightly-finetune", "env": "prod"}}}


def _invalid(rng: random.Random, ev: dict) -> bytes:
    bad = dict(ev)
    bad["event_id"] = ev["event_id"] + "-bad"
    if rng.random() < 0.5:
        bad["tokens"] = dict(ev["tokens"], input=-5)  # a negative count from a buggy SDK
    else:
        bad["messages"] = [{"role": "user", "content": "..."}]  # prompt content must never be stored
    return json.dumps(bad).encode()


def demo_file(name: str) -> str:
    return str(resources.files("costwarden").joinpath("defaults", name))


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
