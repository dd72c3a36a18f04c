"""Pricing of one usage event against a compiled price catalogue. Pure: no I/O.

Rounding rule: every part of an event's cost is computed exactly in Decimal
(tokens x rate-per-million / 1,000,000 x service-tier multiplier, plus GPU hours x
rate-per-GPU-hour); the parts are summed exactly and the sum is rounded ONCE,
half-even, to integer nano-dollars (costwarden.money.to_nanos).

Long-context rule: a price version may carry a long-context card that applies to
the WHOLE request (every token class) when the prompt (input + cache_read +
cache_write + cache_write_1h) is above its threshold. An aggregated event
(requests > 1) uses the average prompt per request. A `context_window` tag set by
the source (Anthropic's usage report: "0-200k", "200k-1M") decides instead: a window
starting at 0 is standard, any other is long. An event with requests = 0 (count
unknown, e.g. a daily bucket) and no such tag gets the standard rates.

`reasoning` tokens are inside `output` and never priced on their own.

Unpriced rule: an event whose model (or GPU type) is not in the catalogue is still
`unpriced=True` (reports show it as such) but is charged by the catalogue's
UnpricedPolicy: its provider-reported cost when it carries one (USD), else the first
fallback that applies (the provider's most expensive rate per token class, or fixed
rates per 1k tokens), else "block" when configured, else nothing. `Price.policy` says
which: catalogue | provider_cost | fallback | block | none.

The catalogue file and its validation live in catalogue.py, which compiles the
file into the structures below (rates already divided by 1,000,000 and multiplied
by each tier's multiplier), so pricing does no pydantic work per call.
"""
from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Context, Decimal, localcontext

from costwarden.events import UsageEvent
from costwarden.money import to_nanos

# Enough digits that products and sums of catalogue rates and token counts are exact. The
# catalogue allows at most 6 decimal places per rate and 4 per multiplier, so every part has
# an exponent >= -16 and a total under $10,000 also stays exact in to_nanos' default context.
_CTX = Context(prec=80)
_ZERO = Decimal(0)
TOKEN_CLASSES = ("input", "cache_read", "cache_write", "cache_write_1h", "output",
                 "input_audio", "output_audio", "input_image", "output_image")
# a class without a rate of its own costs the rate of its direction (cache: input)
BASE_CLASS = {"cache_read": "input", "cache_write": "input", "cache_write_1h": "input",
              "input_audio": "input", "input_image": "input", "output_audio": "output", "output_image": "output"}
_CACHE_MAX = 65_536


POLICIES = ("catalogue", "provider_cost", "fallback", "block", "none")


@dataclass(frozen=True)
class Price:
    """The priced cost of one event.

    cost_nanos    integer nano-dollars, rounded once, half-even: what budgets are charged.
                   For an unpriced event, the amount its UnpricedPolicy charged (0 for block/none)
    unpriced       True when the model or GPU type is not in the catalogue (whatever was charged)
    priced_model   the catalogue's model key, or the raw model name (lowercased) when unpriced
    breakdown      exact Decimal dollars per part (token classes, "gpu", "provider_cost"), before rounding
    policy         how cost_nanos was found: "catalogue" (priced), or for an unpriced event
                   "provider_cost" | "fallback" | "block" | "none"
    policy_detail  for a fallback, which one: "provider_max:<provider>" or "fixed"; for a
                   provider cost, its currency ("USD"); else ""
    """

    cost_nanos: int
    unpriced: bool
    priced_model: str
    catalogue_version: str
    breakdown: dict[str, Decimal] = field(default_factory=dict)
    long_context: bool = False
    priced_gpu: str = ""
    policy: str = "catalogue"
    policy_detail: str = ""

    @property
    def exact_usd(self) -> Decimal:
        return sum(self.breakdown.values(), _ZERO)

    @property
    def blocked(self) -> bool:
        """The unpriced policy asks for a block of this event's workflow (the core decides how)."""
        return self.policy == "block"


_new = object.__new__


def _make(cost: int, unpriced: bool, model: str, version: str, breakdown: dict[str, Decimal],
          long_context: bool = False, gpu: str = "", policy: str = "catalogue", detail: str = "") -> Price:
    """Price(...) without the frozen dataclass's object.__setattr__ calls (hot path)."""
    p = _new(Price)
    d = p.__dict__
    d["cost_nanos"], d["unpriced"], d["priced_model"], d["catalogue_version"] = cost, unpriced, model, version
    d["breakdown"], d["long_context"], d["priced_gpu"] = breakdown, long_context, gpu
    d["policy"], d["policy_detail"] = policy, detail
    return p


@dataclass(frozen=True)
class UnpricedPolicy:
    """How an event the catalogue cannot price is charged, tried in this order:

    provider_cost        its provider-reported cost (UsageEvent.provider_cost, USD only), when it carries one
    fallback             then the first of these that applies:
                           "provider_max"  each token class at the highest rate of any model of the event's
                                           provider (and the providers it inherits), at the event's service
                                           tier; GPU hours at the provider's highest GPU rate
                           "fixed"         fixed_per_1k (USD per 1,000 tokens per class; a class left out
                                           costs its BASE_CLASS rate: cache and audio/image input
                                           the input rate, audio/image output the output rate) and fixed_per_gpu_hour
    block                then, if True, policy "block" (cost 0): the core turns it into a control
    otherwise            policy "none", cost 0 (the behaviour before policies existed)
    """

    provider_cost: bool = False
    fallback: tuple[str, ...] = ()
    fixed_per_1k: dict[str, Decimal] = field(default_factory=dict, hash=False)
    fixed_per_gpu_hour: Decimal | None = None
    block: bool = False

    def __post_init__(self) -> None:
        for f in self.fallback:
            if f not in ("provider_max", "fixed"):
                raise ValueError(f"unknown unpriced fallback {f!r}: provider_max or fixed")
        if "fixed" in self.fallback and not self.fixed_per_1k and self.fixed_per_gpu_hour is None:
            raise ValueError("the fixed fallback needs fixed_per_1k rates (or fixed_per_gpu_hour)")
        for k in self.fixed_per_1k:
            if k not in TOKEN_CLASSES:
                raise ValueError(f"fixed_per_1k: unknown token class {k!r} (one of {', '.join(TOKEN_CLASSES)})")


NO_POLICY = UnpricedPolicy()


@dataclass(frozen=True)
class RateCard:
    """USD per token (not per million) for each token class, tier multiplier applied."""

    input: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    output: Decimal
    input_audio: Decimal
    output_audio: Decimal
    input_image: Decimal
    output_image: Decimal


@dataclass(frozen=True)
class PriceVersion:
    effective_from: datetime
    by_tier: dict[str, RateCard]
    # long-context tiers, ascending thresholds: (above_prompt_tokens, cards by service tier)
    long_context: tuple[tuple[int, dict[str, RateCard]], ...] = ()


@dataclass(frozen=True)
class ModelEntry:
    key: str
    provider: str
    versions: tuple[PriceVersion, ...]  # sorted by effective_from
    starts: tuple[float, ...]  # effective_from as POSIX seconds, for bisect

    def version_at(self, when: datetime) -> PriceVersion:
        """The version in force at `when`; the first version also covers earlier events."""
        if len(self.versions) == 1:
            return self.versions[0]
        i = bisect_right(self.starts, when.timestamp()) - 1
        return self.versions[max(i, 0)]


@dataclass(frozen=True)
class GpuEntry:
    key: str
    provider: str
    starts: tuple[float, ...]
    per_hour: tuple[Decimal, ...]

    def rate_at(self, when: datetime) -> Decimal:
        i = bisect_right(self.starts, when.timestamp()) - 1
        return self.per_hour[max(i, 0)]


@dataclass
class ProviderTable:
    models: dict[str, ModelEntry]  # model keys and aliases, lowercase
    gpus: dict[str, GpuEntry]
    inherit: tuple[str, ...] = ()
    prefixes: dict[str, ModelEntry] = field(default_factory=dict)  # model-id prefixes, lowercase

    def by_prefix(self, name: str) -> ModelEntry | None:
        """The entry of the longest prefix of `name`, if any."""
        if not self.prefixes:
            return None
        for n in range(len(name), 0, -1):
            e = self.prefixes.get(name[:n])
            if e is not None:
                return e
        return None


_REGION = re.compile(r"^(?:us|eu|apac|us-gov|global|jp|au|ca)\.")
_VENDOR = re.compile(r"^(?:anthropic|openai|meta|amazon|mistral|cohere|ai21|deepseek|google|qwen|writer)\.")
_BEDROCK_VERSION = re.compile(r"-v\d+:\d+(?::[0-9a-z]+)?$")
_AT_VERSION = re.compile(r"@[0-9a-z.-]+$")
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def model_candidates(model: str) -> list[str]:
    """Names to look up for a raw model id, most specific first.

    raw (lowercased); then with path/ARN prefix, Bedrock region and vendor prefixes, the
    Bedrock `-v1:0` and Vertex `@version` suffixes removed; then without a date snapshot.
    """
    raw = model.strip().lower()
    out = [raw]
    n = raw.rsplit("/", 1)[-1]  # ARN resource, "openai/gpt-4.1", "publishers/google/models/x"
    kept = _AT_VERSION.sub("", _BEDROCK_VERSION.sub("", n))  # "us.openai.gpt-x" (a regional entry)
    n = _VENDOR.sub("", _REGION.sub("", kept))
    for name in (kept, n, _SNAPSHOT.sub("", n)):
        if name and name not in out:
            out.append(name)
    return out


def gpu_candidates(gpu_type: str) -> list[str]:
    raw = gpu_type.strip().lower()
    n = re.sub(r"[\s_]+", "-", raw.rsplit("/", 1)[-1])
    for prefix in ("nvidia-", "tesla-"):
        if n.startswith(prefix):
            n = n[len(prefix):]
    out = [raw]
    for name in (n, n.split("-", 1)[0]):
        if name and name not in out:
            out.append(name)
    return out


class Pricer:
    """Compiled catalogue: resolution of (provider, model) and pricing of events."""

    def __init__(self, version: str, providers: dict[str, ProviderTable],
                 provider_aliases: dict[str, str], fallback_providers: tuple[str, ...],
                 unpriced: UnpricedPolicy = NO_POLICY) -> None:
        self.version = version
        self._providers = providers
        self._provider_aliases = provider_aliases
        self._fallback = fallback_providers
        self.unpriced_policy = unpriced
        self._model_cache: dict[tuple[str, str], ModelEntry | None] = {}
        self._gpu_cache: dict[tuple[str, str], GpuEntry | None] = {}
        self._max_cache: dict[tuple[str, str], tuple[RateCard | None, Decimal | None, str]] = {}

    # -- resolution -------------------------------------------------------------------
    def _chain(self, provider: str) -> list[str]:
        p = provider.strip().lower()
        p = self._provider_aliases.get(p, p)
        todo = [p] if p in self._providers else list(self._fallback)
        chain: list[str] = []
        while todo:
            name = todo.pop(0)
            if name in self._providers and name not in chain:
                chain.append(name)
                todo.extend(self._providers[name].inherit)
        return chain

    def resolve(self, provider: str, model: str) -> ModelEntry | None:
        """The catalogue entry pricing `model` under `provider`, or None when unknown."""
        key = (provider, model)
        try:
            return self._model_cache[key]
        except KeyError:
            pass
        chain = self._chain(provider)
        found = None
        names = model_candidates(model) if model.strip() else []
        for name in names:  # exact keys and aliases first, the most specific name first
            for prov in chain:
                found = self._providers[prov].models.get(name)
                if found is not None:
                    break
            if found is not None:
                break
        if found is None:  # then model-id prefixes (the longest one of a provider wins)
            for name in names:
                for prov in chain:
                    found = self._providers[prov].by_prefix(name)
                    if found is not None:
                        break
                if found is not None:
                    break
        if len(self._model_cache) >= _CACHE_MAX:
            self._model_cache.clear()
        self._model_cache[key] = found
        return found

    def resolve_gpu(self, provider: str, gpu_type: str | None) -> GpuEntry | None:
        key = (provider, gpu_type or "")
        try:
            return self._gpu_cache[key]
        except KeyError:
            pass
        found = None
        if gpu_type and gpu_type.strip():
            chain = self._chain(provider)
            for name in gpu_candidates(gpu_type):
                found = next((g for p in chain if (g := self._providers[p].gpus.get(name))), None)
                if found is not None:
                    break
        if len(self._gpu_cache) >= _CACHE_MAX:
            self._gpu_cache.clear()
        self._gpu_cache[key] = found
        return found

    # -- pricing ----------------------------------------------------------------------
    def with_unpriced_policy(self, policy: UnpricedPolicy | None) -> "Pricer":
        """The same catalogue charging unpriced events by `policy` (None: no policy)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.unpriced_policy = policy or NO_POLICY
        clone._model_cache, clone._gpu_cache, clone._max_cache = {}, {}, {}
        return clone

    def price(self, ev: UsageEvent) -> Price:
        """Price one event. Never raises for an unknown model: it comes back unpriced, charged by
        the unpriced policy (cost 0 without one)."""
        entry = self.resolve(ev.provider, ev.model)
        compute = ev.compute
        if compute is None and entry is None:
            return self._unpriced(ev)
        parts: dict[str, Decimal] = {}
        long_context = False
        priced_gpu = ""
        if compute is not None and compute.gpu_hours:
            gpu = self.resolve_gpu(ev.provider, compute.gpu_type)
            if gpu is None:
                return self._unpriced(ev)
            parts["gpu"] = _CTX.multiply(compute.gpu_hours, gpu.rate_at(ev.occurred_at))
            priced_gpu = gpu.key
        if entry is not None:
            long_context = _price_tokens(entry.version_at(ev.occurred_at), ev, parts)
        return _make(_round(parts), False, entry.key if entry else ev.model.strip().lower(),
                     self.version, parts, long_context, priced_gpu)

    # -- unpriced events ----------------------------------------------------------------
    def _unpriced(self, ev: UsageEvent) -> Price:
        model = ev.model.strip().lower()
        pol = self.unpriced_policy
        pc = ev.provider_cost
        if pol.provider_cost and pc is not None and pc.currency == "USD" and pc.amount >= 0:
            parts = {"provider_cost": pc.amount}
            return _make(_round(parts), True, model, self.version, parts, policy="provider_cost", detail="USD")
        for how in pol.fallback:
            found = self._fallback_parts(ev, how)
            if found is not None:
                parts, detail = found
                return _make(_round(parts), True, model, self.version, parts, policy="fallback", detail=detail)
        if pol.block:
            return _make(0, True, model, self.version, {}, policy="block")
        return _make(0, True, model, self.version, {}, policy="none")

    def _fallback_parts(self, ev: UsageEvent, how: str) -> tuple[dict[str, Decimal], str] | None:
        """Parts of the fallback `how`, or None when it does not apply to this event. GPU time is
        charged by the hour (its tokens are informational, as for a priced GPU); a model call by
        its token classes."""
        compute = ev.compute
        gpu_hours = compute.gpu_hours if compute is not None else _ZERO
        pol = self.unpriced_policy
        if how == "fixed":
            if gpu_hours:
                gpu_rate, card = pol.fixed_per_gpu_hour, None
            elif pol.fixed_per_1k:
                per_1k = pol.fixed_per_1k

                def rate(c: str) -> Decimal:
                    return per_1k.get(c, rate(BASE_CLASS[c]) if c in BASE_CLASS else _ZERO)
                gpu_rate, card = None, RateCard(*(rate(c).scaleb(-3) for c in TOKEN_CLASSES))
            else:
                return None
            detail = "fixed"
        else:
            card, gpu_rate, detail = self._provider_max(ev.provider, ev.service_tier)
        parts: dict[str, Decimal] = {}
        if gpu_hours:
            if gpu_rate is None:
                return None
            parts["gpu"] = _CTX.multiply(gpu_hours, gpu_rate)
        elif card is None:
            return None
        else:
            _add_token_parts(card, ev, parts)
        return parts, detail

    def _provider_max(self, provider: str, tier: str) -> tuple[RateCard | None, Decimal | None, str]:
        """Per token class, the highest standard-context rate of any version of any model of the
        provider's chain, at `tier`; the highest GPU rate; and "provider_max:<provider>"."""
        key = (provider, tier)
        hit = self._max_cache.get(key)
        if hit is not None:
            return hit
        chain = self._chain(provider)
        best: list[Decimal] | None = None
        gpu_max: Decimal | None = None
        for name in chain:
            table = self._providers[name]
            for entry in {id(e): e for e in table.models.values()}.values():
                for ver in entry.versions:
                    c = ver.by_tier[tier]
                    rates = [getattr(c, k) for k in TOKEN_CLASSES]
                    best = rates if best is None else [max(a, b) for a, b in zip(best, rates)]
            for g in {id(e): e for e in table.gpus.values()}.values():
                top = max(g.per_hour)
                gpu_max = top if gpu_max is None else max(gpu_max, top)
        label = chain[0] if chain else provider.strip().lower()
        out = (RateCard(*best) if best is not None else None, gpu_max, f"provider_max:{label}")
        self._max_cache[key] = out
        return out


def _round(parts: dict[str, Decimal]) -> int:
    """The parts summed exactly, rounded once to integer nano-dollars (half-even)."""
    total = _ZERO
    for v in parts.values():
        total = _CTX.add(total, v)
    if total.adjusted() >= 4:  # >= $10,000: widen the context so the x1e9 stays exact
        with localcontext(_CTX):
            return to_nanos(total)
    return to_nanos(total)


def _window_floor(window: str) -> int | None:
    """The lower bound of a context-window tag ("200k-1M" -> 200000), None if unreadable."""
    low = window.strip().lower().split("-", 1)[0].strip()
    mult = {"k": 1_000, "m": 1_000_000}.get(low[-1:], 1)
    digits = low[:-1] if mult != 1 else low
    try:
        return int(Decimal(digits) * mult)
    except Exception:  # noqa: BLE001 - an unreadable tag: the caller takes the first long tier
        return None


def _price_tokens(ver: PriceVersion, ev: UsageEvent, parts: dict[str, Decimal]) -> bool:
    t = ev.tokens
    tier = ev.service_tier  # a str enum: hashes and compares like its value
    long_context = False
    card = ver.by_tier[tier]
    if ver.long_context:
        window = ev.attribution.tags.get("context_window")
        chosen = None
        if window is not None:  # the source says which window ("0-200k", "200k-1M")
            if not window.strip().startswith("0"):
                floor = _window_floor(window)
                chosen = ver.long_context[0][1]
                for above, cards in ver.long_context:
                    if floor is not None and above <= floor:
                        chosen = cards
        elif ev.requests:
            prompt = t.prompt_total
            for above, cards in ver.long_context:
                if prompt > above * ev.requests:
                    chosen = cards
        if chosen is not None:
            long_context = True
            card = chosen[tier]
    _add_token_parts(card, ev, parts)
    return long_context


def _add_token_parts(card: RateCard, ev: UsageEvent, parts: dict[str, Decimal]) -> None:
    t = ev.tokens
    mul = _CTX.multiply
    if t.input:
        parts["input"] = mul(t.input, card.input)
    if t.cache_read:
        parts["cache_read"] = mul(t.cache_read, card.cache_read)
    if t.cache_write:
        parts["cache_write"] = mul(t.cache_write, card.cache_write)
    if t.cache_write_1h:
        parts["cache_write_1h"] = mul(t.cache_write_1h, card.cache_write_1h)
    if t.output:
        parts["output"] = mul(t.output, card.output)
    for c in ("input_audio", "output_audio", "input_image", "output_image"):
        n = getattr(t, c)
        if n:
            parts[c] = mul(n, getattr(card, c))
