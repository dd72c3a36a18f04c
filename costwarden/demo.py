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
    """The last complete calendar month before `now` (UTC): the demo tells the story of a month
    that has ended, so its budgets are read at that month's end."""
    end = now.astimezone(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (end - timedelta(days=1)).replace(day=1), end


def month_of(text: str) -> tuple[datetime, datetime]:
    """'2026-11' -> that month's [start, end) in UTC."""
    y, m = (int(x) for x in text.strip().split("-"))
    if not 1 <= m <= 12:
        raise ValueError(f"no month {m}")
    start = datetime(y, m, 1, tzinfo=timezone.utc)
    return start, datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=timezone.utc)


def runaway_window(end: datetime) -> tuple[datetime, datetime]:
    """When `research/agent-loop` loops: 02:00 to 05:00 UTC two days before the end."""
    loop_start = (end - timedelta(days=2)).replace(hour=2, minute=0, second=0, microsecond=0)
    return loop_start, loop_start + timedelta(hours=3)


def events(start: datetime, end: datetime, seed: int = 42, runaway: bool = True) -> Iterator[bytes]:
    rng = random.Random(seed)
    n = 0
    hour = start.replace(minute=0, second=0, microsecond=0)
    loop_start, loop_end = runaway_window(end)
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


# --- the gateway in front of the calls, and the run ---------------------------------------------

ONCALL = "ann@example.com"
BURST_PER_MIN = 20  # calls in one simulated minute: traffic is bursting, commit every minute
THROTTLE_COMMIT_MIN = 5  # while a throttle holds: commit every 5 simulated minutes


@dataclass
class Refusals:
    """Calls the gateway refused, and what they would have cost."""

    throttled: int = 0  # over a throttle's rate
    blocked: int = 0
    throttled_nanos: int = 0
    blocked_nanos: int = 0
    by_day: dict = None  # date -> (calls, nanos)

    def __post_init__(self) -> None:
        self.by_day = {}

    @property
    def calls(self) -> int:
        return self.throttled + self.blocked

    @property
    def nanos(self) -> int:
        return self.throttled_nanos + self.blocked_nanos


class Gateway:
    """What a gateway (LiteLLM proxy, the SDK guard) does before each model call: asks costwarden
    "may this workflow spend now?" and honours the answer. allow: the call goes out; throttle: at
    most `rate_per_min` calls a minute go out; block: none. A refused call never happens, so its
    usage is never reported: it is priced here only to say what it would have cost."""

    def __init__(self, check, price) -> None:
        self.check = check      # (workflow, at) -> Decision
        self.price = price      # payload bytes -> cost in nano-dollars (None: not a valid event)
        self.refused = Refusals()
        self._minute: dict[str, tuple[datetime, int]] = {}
        self._last_refused = ""

    def admit(self, ev: dict, line: bytes, at: datetime) -> bool:
        eid = str(ev.get("event_id", ""))
        if self._last_refused and eid in (self._last_refused, self._last_refused + "-bad"):
            return False  # a re-delivery (or a garbled copy) of a call that never happened
        wf = ((ev.get("attribution") or {}).get("tags") or {}).get("workflow")
        if not wf:
            return True
        d = self.check(wf, at)
        state = d.action.value
        if state == "allow":
            return True
        if state == "throttle":
            minute = at.replace(second=0, microsecond=0)
            m, n = self._minute.get(wf, (minute, 0))
            n = n if m == minute else 0
            if n < int(d.rate_per_min or 0):
                self._minute[wf] = (minute, n + 1)
                return True
        cost = self.price(line)
        if cost is None:
            return True  # not a call but a garbled usage report: the pipeline dead-letters it
        r = self.refused
        if state == "throttle":
            r.throttled += 1
            r.throttled_nanos += cost
        else:
            r.blocked += 1
            r.blocked_nanos += cost
        calls, nanos = r.by_day.get(at.date(), (0, 0))
        r.by_day[at.date()] = (calls + 1, nanos + cost)
        self._last_refused = eid
        return False


@dataclass
class DemoRun:
    start: datetime
    end: datetime
    report: object  # BatchReport
    gateway: Gateway
    payloads: int
    batches: int
    kept: object | None  # the on-call person's ControlChange (block kept until released), if any
    provider_report: dict  # an Anthropic usage report of the demo's last days (for `normalize`)


def _at(ev: dict, fallback: datetime) -> datetime:
    try:
        t = datetime.fromisoformat(str(ev["occurred_at"]))
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    except (KeyError, ValueError):
        return fallback


def run(pipeline, start: datetime, end: datetime, seed: int = 42, progress=None) -> DemoRun:
    """The month through `pipeline` behind a Gateway. The live pipeline commits a batch about
    every second; simulated time runs far faster, so the demo commits every `batch_size` events,
    every simulated minute while traffic bursts and every few simulated minutes while a throttle
    holds: the gateway learns of a control at the next commit, as it would live."""
    from costwarden.events import parse_event
    from costwarden.pipeline import BatchReport

    from costwarden.errors import InvalidEventError

    cat = pipeline.core.catalogue

    def price(line: bytes) -> int | None:
        try:
            return cat.price(parse_event(line)).cost_nanos
        except InvalidEventError:
            return None

    gw = Gateway(pipeline.check, price)
    total, batch = BatchReport(), []
    size = pipeline.settings.pipeline.batch_size
    loop_start, _ = runaway_window(end)
    oncall_at = loop_start.replace(hour=9)
    kept = None
    state = {"payloads": 0, "batches": 0, "minute": None, "in_minute": 0, "five": None}
    anthropic = _AnthropicReport(end - timedelta(days=2), end)
    span = (end - start).total_seconds()

    def flush() -> None:
        if batch:
            total.add(pipeline.process_batch(list(batch), "demo"))
            state["batches"] += 1
            if progress:
                progress(len(batch), min(1.0, (last - start).total_seconds() / span))
            batch.clear()

    def throttling(at: datetime) -> bool:
        return any(c.state.value == "throttle" and c.active(at) for c in pipeline.controls.all())

    last = start
    for line in events(start, end, seed):
        state["payloads"] += 1
        try:
            ev = json.loads(line)
        except ValueError:
            ev = {}
        at = _at(ev, last)
        minute = at.replace(second=0, microsecond=0)
        if state["minute"] is not None and minute != state["minute"]:
            five = minute.replace(minute=minute.minute - minute.minute % THROTTLE_COMMIT_MIN)
            if state["in_minute"] >= BURST_PER_MIN or (five != state["five"] and throttling(at)):
                flush()
            state["five"] = five
            state["in_minute"] = 0
        state["minute"] = minute
        if len(batch) >= size:
            flush()
        if (kept is None and oncall_at <= at < oncall_at + timedelta(hours=1)
                and pipeline.check("agent-loop", at).action.value == "block"):
            flush()  # on-call, awake now, keeps the kill switch on until the loop is fixed
            kept = pipeline.change_control(lambda book: book.extend(
                "agent-loop", until=None, reason="keep it off until the loop is fixed", by=ONCALL, at=at))
        last = at
        if not gw.admit(ev, line, at):
            continue
        state["in_minute"] += 1
        batch.append(line)
        anthropic.add(ev, at)
    flush()
    return DemoRun(start, end, total, gw, state["payloads"], state["batches"], kept, anthropic.report())


class _AnthropicReport:
    """The Anthropic Admin API's usage report (`/v1/organizations/usage_report/messages`, daily
    buckets grouped by api_key_id and model) of the admitted Anthropic calls in [start, end)."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.end = start, end
        self.days: dict = {}

    def add(self, ev: dict, at: datetime) -> None:
        if ev.get("provider") != "anthropic" or not (self.start <= at < self.end) or "tokens" not in ev:
            return
        t = ev["tokens"]
        if not all(isinstance(t.get(k, 0), int) and t.get(k, 0) >= 0 for k in ("input", "cache_read", "output")):
            return  # a garbled payload the provider never billed
        key = (ev["attribution"].get("api_key_id"), ev["model"], ev.get("service_tier", "standard"))
        row = self.days.setdefault(at.date(), {}).setdefault(key, [0, 0, 0])
        row[0] += t.get("input", 0)
        row[1] += t.get("cache_read", 0)
        row[2] += t.get("output", 0)

    def report(self) -> dict:
        data = []
        day = self.start.date()
        while day < self.end.date():
            lo = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            results = [{"uncached_input_tokens": i, "cache_creation": {"ephemeral_1h_input_tokens": 0,
                                                                       "ephemeral_5m_input_tokens": 0},
                        "cache_read_input_tokens": c, "output_tokens": o, "server_tool_use": None,
                        "api_key_id": k, "workspace_id": None, "model": m, "service_tier": tier,
                        "context_window": None}
                       for (k, m, tier), (i, c, o) in sorted(self.days.get(day, {}).items())]
            data.append({"starting_at": lo.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "ending_at": (lo + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), "results": results})
            day += timedelta(days=1)
        return {"data": data, "has_more": False, "next_page": None}


# --- the project directory the demo leaves behind ---------------------------------------------------

MARKER = "# written by `costwarden demo`"


def is_demo_project(path) -> bool:
    from pathlib import Path

    f = Path(path) / "costwarden.yaml"
    try:
        return f.read_text().startswith(MARKER)
    except OSError:
        return False


def write_project(path, end: datetime, run_: DemoRun | None = None, data_dir=None) -> list[str]:
    """costwarden.yaml (budgets, rules, data directory), the demo's budgets.yaml and rules.yaml,
    proposed.yaml (a budget change to simulate), prices.yaml (the packaged catalogue, to edit and
    re-price with), events.jsonl (a few new canonical events) and report.json (an Anthropic usage
    report): every file the README's commands name."""
    from pathlib import Path

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = [MARKER + ": run the README's commands in this directory", "budgets:",
           "  budgets_file: budgets.yaml", "  rules_file: rules.yaml"]
    if data_dir is not None:
        cfg.insert(1, f"data_dir: {json.dumps(str(data_dir))}")
    (path / "costwarden.yaml").write_text("\n".join(cfg) + "\n")
    budgets = Path(demo_file("demo-budgets.yaml")).read_text()
    (path / "budgets.yaml").write_text(budgets)
    (path / "rules.yaml").write_text(Path(demo_file("demo-rules.yaml")).read_text())
    search = 'scope: {team: search}\n    period: month\n    amount: "150"'
    proposed = budgets.replace(search, search.replace('"150"', '"200"'), 1)
    proposed = proposed.replace("# Budgets for the demo month.", "# A proposed change to budgets.yaml: search gets "
                                "$200 a month (try `costwarden budgets simulate proposed.yaml`).", 1)
    (path / "proposed.yaml").write_text(proposed)
    from importlib import resources as res

    (path / "prices.yaml").write_text(res.files("costwarden.streams").joinpath("prices.yaml").read_text("utf-8"))
    (path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in sample_events(end)))
    if run_ is not None:
        (path / "report.json").write_text(json.dumps(run_.provider_report, indent=1) + "\n")
    return ["costwarden.yaml", "budgets.yaml", "rules.yaml", "proposed.yaml", "prices.yaml", "events.jsonl",
            "report.json"]


def sample_events(end: datetime) -> list[dict]:
    """A few canonical events on the demo month's last evening: support's new summariser, a
    search call, and one call to a model the catalogue does not know (reported unpriced)."""
    base = (end - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    month = f"{base:%Y%m}"
    out = []
    for i in range(8):
        at = base + timedelta(minutes=7 * i)
        out.append({"event_id": f"sample-{month}-{i + 1:03d}", "occurred_at": at.isoformat(),
                    "source": "gateway", "provider": "anthropic", "model": "claude-haiku-4-5", "requests": 1,
                    "tokens": {"input": 4000 + 250 * i, "output": 600},
                    "attribution": {"api_key_id": "key_support_prod",
                                    "tags": {"team": "support", "workflow": "ticket-summary", "env": "prod"}}})
    out.append({"event_id": f"sample-{month}-009", "occurred_at": (base + timedelta(minutes=70)).isoformat(),
                "source": "gateway", "provider": "openai", "model": "gpt-4.1-mini-2025-04-14", "requests": 1,
                "tokens": {"input": 700, "output": 90},
                "attribution": {"api_key_id": "key_search_prod", "tags": {"workflow": "query-rewrite"}}})
    out.append({"event_id": f"sample-{month}-010", "occurred_at": (base + timedelta(minutes=80)).isoformat(),
                "source": "gateway", "provider": "openai", "model": "mystery-model-x", "requests": 1,
                "tokens": {"input": 1000, "output": 200},
                "attribution": {"api_key_id": "key_growth_batch", "tags": {"workflow": "prototype"}}})
    return out
