"""Pricing of one usage event against a compiled price catalogue. Pure: no I/O.

Rounding rule: every part of an event's cost is computed exactly in Decimal
(tokens x rate-per-million / 1,000,000 x service-tier multiplier, plus GPU hours x
rate-per-GPU-hour); the parts are summed exactly and the sum is rounded ONCE,
half-even, to integer micro-dollars (costwarden.money.to_micros).

Long-context rule: a price version may carry a long-context card that applies to
the WHOLE request (every token class) when the prompt (input + cache_read +
cache_write + cache_write_1h) is above its threshold. An aggregated event
(requests > 1) uses the average prompt per request. A `context_window` tag set by
the source (Anthropic's usage report: "0-200k", "200k-1M") decides instead: a window
starting at 0 is standard, any other is long. An event with requests = 0 (count
unknown, e.g. a daily bucket) and no such tag gets the standard rates.

`reasoning` tokens are inside `output` and never priced on their own.

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
from costwarden.money import to_micros

# Enough digits that products and sums of catalogue rates and token counts are exact. The
# catalogue allows at most 6 decimal places per rate and 4 per multiplier, so every part has
# an exponent >= -16 and a total under $10,000 also stays exact in to_micros' default context.
_CTX = Context(prec=80)
_ZERO = Decimal(0)
TOKEN_CLASSES = ("input", "cache_read", "cache_write", "cache_write_1h", "output")
_CACHE_MAX = 65_536


@dataclass(frozen=True)
class Price:
    """The priced cost of one event.

    cost_micros   integer micro-dollars, rounded once, half-even (0 when unpriced)
    unpriced      True when the model or GPU type is not in the catalogue
    priced_model  the catalogue's model key, or the raw model name (lowercased) when unpriced
    breakdown     exact Decimal dollars per part (token classes, "gpu"), before rounding
    """

    cost_micros: int
    unpriced: bool
    priced_model: str
    catalogue_version: str
    breakdown: dict[str, Decimal] = field(default_factory=dict)
    long_context: bool = False
    priced_gpu: str = ""

    @property
    def exact_usd(self) -> Decimal:
        return sum(self.breakdown.values(), _ZERO)


_new = object.__new__


def _make(cost: int, unpriced: bool, model: str, version: str, breakdown: dict[str, Decimal],
          long_context: bool = False, gpu: str = "") -> Price:
    """Price(...) without the frozen dataclass's seven object.__setattr__ calls (hot path)."""
    p = _new(Price)
    d = p.__dict__
    d["cost_micros"], d["unpriced"], d["priced_model"], d["catalogue_version"] = cost, unpriced, model, version
    d["breakdown"], d["long_context"], d["priced_gpu"] = breakdown, long_context, gpu
    return p


@dataclass(frozen=True)
class RateCard:
    """USD per token (not per million) for each token class, tier multiplier applied."""

    input: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    output: Decimal


@dataclass(frozen=True)
class PriceVersion:
    effective_from: datetime
    by_tier: dict[str, RateCard]
    long_context_above: int | None = None
    long_context_by_tier: dict[str, RateCard] | None = None


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
    n = _VENDOR.sub("", _REGION.sub("", n))
    n = _AT_VERSION.sub("", _BEDROCK_VERSION.sub("", n))
    for name in (n, _SNAPSHOT.sub("", n)):
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
                 provider_aliases: dict[str, str], fallback_providers: tuple[str, ...]) -> None:
        self.version = version
        self._providers = providers
        self._provider_aliases = provider_aliases
        self._fallback = fallback_providers
        self._model_cache: dict[tuple[str, str], ModelEntry | None] = {}
        self._gpu_cache: dict[tuple[str, str], GpuEntry | None] = {}

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
        for name in model_candidates(model) if model.strip() else ():
            for prov in chain:
                found = self._providers[prov].models.get(name)
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
    def price(self, ev: UsageEvent) -> Price:
        """Price one event. Never raises for an unknown model: it comes back unpriced, cost 0."""
        entry = self.resolve(ev.provider, ev.model)
        compute = ev.compute
        if compute is None and entry is None:
            return _make(0, True, ev.model.strip().lower(), self.version, {})
        parts: dict[str, Decimal] = {}
        long_context = False
        priced_gpu = ""
        if compute is not None and compute.gpu_hours:
            gpu = self.resolve_gpu(ev.provider, compute.gpu_type)
            if gpu is None:
                return _make(0, True, ev.model.strip().lower(), self.version, {})
            parts["gpu"] = _CTX.multiply(compute.gpu_hours, gpu.rate_at(ev.occurred_at))
            priced_gpu = gpu.key
        if entry is not None:
            long_context = _price_tokens(entry.version_at(ev.occurred_at), ev, parts)
        total = _ZERO
        for v in parts.values():
            total = _CTX.add(total, v)
        if total.adjusted() >= 4:  # >= $10,000: widen the context so the x1e6 stays exact
            with localcontext(_CTX):
                micros = to_micros(total)
        else:
            micros = to_micros(total)
        return _make(micros, False, entry.key if entry else ev.model.strip().lower(),
                     self.version, parts, long_context, priced_gpu)


def _price_tokens(ver: PriceVersion, ev: UsageEvent, parts: dict[str, Decimal]) -> bool:
    t = ev.tokens
    tier = ev.service_tier  # a str enum: hashes and compares like its value
    long_context = False
    card = ver.by_tier[tier]
    if ver.long_context_above is not None and ver.long_context_by_tier is not None:
        window = ev.attribution.tags.get("context_window")
        if window is not None:  # the source says which window ("0-200k", "200k-1M")
            long_context = not window.strip().startswith("0")
        elif ev.requests:
            prompt = t.input + t.cache_read + t.cache_write + t.cache_write_1h
            long_context = prompt > ver.long_context_above * ev.requests
        if long_context:
            card = ver.long_context_by_tier[tier]
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
    return long_context
