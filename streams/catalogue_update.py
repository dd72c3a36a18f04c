"""`costwarden catalogue update`: build the price catalogue from genai-prices' bundled snapshot.

Layers, bottom to top:
    1. every provider and model of the installed `genai-prices` snapshot (no network), mapped to our
       provider names (OpenTelemetry gen_ai.provider.name values where one exists) and to our
       disjoint token classes;
    2. costwarden's own overrides (overrides.yaml, packaged): the seed list prices with their history
       and long-context cards, service-tier multipliers, GPU hours, provider aliases and inheritance;
    3. your override files (negotiated discounts, enterprise rates), in the order given.
The result is one ordinary catalogue file (the source of truth pricing reads, reviewable in git),
with a new `version`, `provenance` at the top and a `source` on every model (and on a price version
when it differs from its model's). The command prints a diff against the current catalogue before
anything is written.

Mapping (genai-prices -> ours), stated once:
    input_mtok -> input (genai's input_tokens is the whole prompt; ours is the uncached rest: the
        classes are disjoint either way, genai prices each token once at its most specific rate)
    cache_read_mtok -> cache_read; cache_write_mtok -> cache_write (5-minute / default TTL)
    cache_write_1h_mtok -> cache_write_1h; without it, 1-hour writes cost cache_write (as genai does)
    output_mtok -> output (reasoning inside); a missing input or output rate is "0" (as genai does)
    TieredPrices (threshold on the whole prompt, the tier rate for every token) -> long_context cards
    ConditionalPrice with a start date -> a price version effective that day (00:00 UTC); the first,
        undated price -> effective_from UNDATED ("in force since before the source's history")
    time-of-day prices (DeepSeek off-peak) -> not expressible: the highest (peak) rate, all day
    rates with more than 6 decimal places -> rounded half-even to 6 (our unit)
    input_audio_mtok / output_audio_mtok / input_image_mtok / output_image_mtok -> input_audio /
        output_audio / input_image / output_image (our disjoint modality classes; a model without
        one charges its text rate for them, as genai does)
    cached audio / image reads, video tokens, per-request fees, web searches, characters, seconds
        -> not priced here (listed in the report); a model with no token rate at all is left out
    price variants (priority / flex / batch per model) -> not imported: service tiers are our
        multipliers (overrides.yaml)
    model match rules -> keys and aliases (equals, and the literal of starts_with / contains /
        ends_with / simple regexes) and `prefixes` (starts_with, contains); Bedrock region / vendor
        prefixes and version suffixes are added in their normalised form
    a cloud's entry for a model its vendor has in the overrides (Bedrock / Vertex spellings of the
        seed Claude models, Azure's o3 / o4-mini) is left to the vendor's entry, so that every
        spelling prices as the one key at the list price; the cloud's surcharge (Bedrock regional
        endpoints +10% on Claude Haiku / Sonnet 4.5) is not applied there. Other cloud entries keep
        the cloud's own price (Bedrock regional vs global endpoints included)
Refresh: a model already in the current catalogue from genai-prices keeps its price history; a
dated version the snapshot adds is inserted, and a change to today's price without a date becomes a
version effective on the update day. Models the snapshot no longer lists are kept.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from importlib import resources
from typing import Any, Iterable

from costwarden.events import UsageEvent
from costwarden.streams.catalogue import (
    RATE_PLACES, CatalogueFile, GpuFile, ModelFile, PriceCatalogue, PriceVersionFile, parse_catalogue,
)
from costwarden.streams.pricing import _AT_VERSION, _BEDROCK_VERSION, _REGION, _VENDOR, model_candidates

UNDATED = "2000-01-01"
RATE_KEYS = ("input", "cache_read", "cache_write", "cache_write_1h", "output",
             "input_audio", "output_audio", "input_image", "output_image")
_MODALITY_KEYS = {"input_audio": "input_audio_mtok", "output_audio": "output_audio_mtok",
                  "input_image": "input_image_mtok", "output_image": "output_image_mtok"}

# genai-prices provider id -> our provider name (OpenTelemetry gen_ai.provider.name where defined).
# Any other id is used as it is.
GENAI_PROVIDERS = {
    "openai": "openai", "anthropic": "anthropic", "google": "gcp.gemini", "aws": "aws.bedrock",
    "azure": "azure.ai.openai", "mistral": "mistral_ai", "x-ai": "x_ai", "cohere": "cohere",
    "deepseek": "deepseek", "groq": "groq", "perplexity": "perplexity",
}
PROVIDER_ORDER = ("openai", "anthropic", "gcp.gemini", "gcp.vertex_ai", "aws.bedrock", "azure.ai.openai",
                  "mistral_ai", "x_ai", "cohere", "deepseek", "groq", "perplexity", "meta")
_PRICE_KEYS = {"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok",
               *_MODALITY_KEYS.values()}
_Q = Decimal(1).scaleb(-RATE_PLACES)


def genai_version() -> str:
    import genai_prices

    return str(genai_prices.__version__)


def snapshot_providers() -> list:
    """The providers of the installed genai-prices package's bundled snapshot (no network)."""
    from genai_prices import data_snapshot

    return list(data_snapshot.get_snapshot().providers)


def our_provider(genai_id: str, model_id: str = "") -> str:
    if genai_id == "google" and model_id.lower().startswith("claude"):
        return "gcp.vertex_ai"  # Claude on Google is Vertex AI, not the Gemini API
    return GENAI_PROVIDERS.get(genai_id, genai_id.lower())


# -- report -----------------------------------------------------------------------------------
@dataclass
class Report:
    source: str = ""
    genai_providers: int = 0
    genai_models: int = 0
    generated: int = 0                       # models taken from the snapshot
    via_inherit: list[tuple[str, str, str]] = field(default_factory=list)   # (provider, genai id, vendor/key)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)       # (provider, genai id, reason)
    rounded: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    time_of_day: list[tuple[str, str]] = field(default_factory=list)
    not_priced_units: Counter = field(default_factory=Counter)              # genai price key -> models
    merged_into_override: list[tuple[str, str, str]] = field(default_factory=list)  # (provider, key, genai id)
    name_conflicts: list[tuple[str, str, str, str]] = field(default_factory=list)   # (prov, name, kept, lost)
    unmapped_rules: list[tuple[str, str, str]] = field(default_factory=list)
    kept_from_current: list[tuple[str, str]] = field(default_factory=list)
    refreshed: list[tuple[str, str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"source: {self.source}: {self.genai_providers} providers, {self.genai_models} models",
               f"  taken from the snapshot: {self.generated} models",
               f"  priced through the vendor a cloud resells (inherit): {len(self.via_inherit)}",
               f"  merged into an override entry: {len(self.merged_into_override)}",
               f"  left out (no token price): {len(self.skipped)}",
               f"  rates rounded to {RATE_PLACES} decimal places: {len(self.rounded)}",
               f"  time-of-day prices charged at the peak rate: {len(self.time_of_day)}",
               f"  names dropped as already used by another model: {len(self.name_conflicts)}",
               f"  match rules not expressible as a name or prefix: {len(self.unmapped_rules)}"]
        if self.kept_from_current:
            out.append(f"  kept from the current catalogue (no longer in the snapshot): {len(self.kept_from_current)}")
        if self.not_priced_units:
            units = ", ".join(f"{k} ({n})" for k, n in self.not_priced_units.most_common())
            out.append(f"  price units not in our token classes (models): {units}")
        return out


# -- genai-prices -> plain dicts ----------------------------------------------------------------
def _dec(v: Decimal, where: tuple[str, str, str], report: Report) -> Decimal:
    d = Decimal(v)
    if d.as_tuple().exponent < -RATE_PLACES:  # type: ignore[operator]
        q = d.quantize(_Q, rounding=ROUND_HALF_EVEN)
        report.rounded.append((*where, str(d), format(q.normalize(), "f")))
        d = q
    return Decimal(format(d.normalize(), "f")) if d else Decimal(0)


def _rates(mp: Any, prov: str, mid: str, report: Report) -> dict | None:
    """Our rates (+ long-context cards) of one genai ModelPrice, or None without a token price."""
    from genai_prices.types import TieredPrices

    values = {k: v for k, v in mp.__dict__.items() if v is not None and not k.startswith("_")}
    if values.get("input_mtok") is None and values.get("output_mtok") is None:
        return None

    def at(key: str, start: int | None) -> Decimal | None:
        v = values.get(key)
        if v is None:
            return None
        if isinstance(v, TieredPrices):
            price = v.base
            for t in v.tiers:
                if start is not None and t.start <= start:
                    price = t.price
            return _dec(price, (prov, mid, key), report)
        return _dec(v, (prov, mid, key), report)

    def card(start: int | None) -> dict:
        c: dict[str, Any] = {"input": at("input_mtok", start) or Decimal(0)}
        cr, cw, cw1 = at("cache_read_mtok", start), at("cache_write_mtok", start), at("cache_write_1h_mtok", start)
        if cr is not None:
            c["cache_read"] = cr
        if cw is not None:
            c["cache_write"] = cw
        if cw1 is not None or cw is not None:
            c["cache_write_1h"] = cw1 if cw1 is not None else cw  # genai bills 1 h writes as cache writes
        c["output"] = at("output_mtok", start) or Decimal(0)
        for ours, theirs in _MODALITY_KEYS.items():
            v = at(theirs, start)
            if v is not None:
                c[ours] = v
        return c

    out = card(None)
    starts = sorted({t.start for k, v in values.items() if k in _PRICE_KEYS and isinstance(v, TieredPrices)
                     for t in v.tiers})
    if starts:
        cards = [dict(card(s), above_prompt_tokens=s) for s in starts]
        out["long_context"] = cards[0] if len(cards) == 1 else cards
    return out


def _max_rates(a: dict, b: dict) -> dict:
    out = dict(a)
    for k in RATE_KEYS:
        if k in b and (k not in out or b[k] > out[k]):
            out[k] = b[k]
    return out


def _versions(m: Any, prov: str, report: Report) -> list[dict] | None:
    from genai_prices.types import ModelPrice, StartDateConstraint, TimeOfDateConstraint

    items = [(None, m.prices)] if isinstance(m.prices, ModelPrice) else [(c.constraint, c.prices) for c in m.prices]
    dated: list[tuple[str, dict]] = []
    peak: list[dict] = []
    for constraint, mp in items:
        r = _rates(mp, prov, m.id, report)
        if r is None:
            continue
        if isinstance(constraint, TimeOfDateConstraint):
            peak.append(r)
        elif isinstance(constraint, StartDateConstraint):
            dated.append((constraint.start_date.isoformat(), r))
        else:
            dated.append((UNDATED if not dated else dated[-1][0], r))
    if not dated:
        return None
    if peak:
        report.time_of_day.append((prov, m.id))
    versions: dict[str, dict] = {}
    for when, r in dated:
        for p in peak:
            r = _max_rates(r, p)
        versions[when] = {"effective_from": when, **r}
    return [versions[k] for k in sorted(versions)]


_DATE_TAIL = (r"\(-\\d\{8\}\)\?$", r"-\\d\{8\}$", r"-\\d\{4\}-\\d\{2\}-\\d\{2\}$", r"\[-@\]\\d\{8\}$")
_META = set("()[]{}*+?|^$.\\")
_SEPARATORS = ("-", "@", ".", ":", "/", "_")


def _unescape(rx: str) -> str | None:
    """The literal text of a regex fragment, None if it is not a plain literal."""
    out, i = [], 0
    while i < len(rx):
        ch = rx[i]
        if ch == "\\" and i + 1 < len(rx) and not rx[i + 1].isalnum():
            out.append(rx[i + 1])
            i += 2
            continue
        if ch in _META:
            return None
        out.append(ch)
        i += 1
    return "".join(out)


def _regex_names(rx: str) -> tuple[list[str], list[str]] | None:
    """(aliases, prefixes) a simple model regex stands for; None if it is not that simple."""
    if rx.startswith("^(?!"):
        return [], []  # an exclusion inside an `and`: the positive part carries the names
    r = rx[1:] if rx.startswith("^") else rx
    anchored = r.endswith("$") and not r.endswith("\\$")
    if anchored:
        r = r[:-1]
    opt = re.match(r"^\(([^()|]+)\)\?", r)
    first = ""
    if opt:
        first = _unescape(opt.group(1)) or ""
        r = r[opt.end():]
    for pat in _DATE_TAIL:
        r2 = re.sub(pat, "", r)
        if r2 != r:
            r, anchored = r2, True
            break
    prefix_mode = False
    if r.endswith("\\d"):
        r, prefix_mode = r[:-2], True
    lit = _unescape(r)
    if not lit:
        return None
    names = [lit] + ([first + lit] if first else [])
    if prefix_mode or not anchored:
        return [], names
    return names, []


def _clause_names(c: Any, prov: str, mid: str, report: Report) -> tuple[list[str], list[str]]:
    from genai_prices import types as T

    if isinstance(c, T.ClauseEquals):
        return [c.equals], []
    if isinstance(c, (T.ClauseStartsWith, T.ClauseContains)):
        v = c.starts_with if isinstance(c, T.ClauseStartsWith) else c.contains
        return ([] if v[-1:] in _SEPARATORS else [v]), [v]  # "claude-sonnet-4-2025" is no name
    if isinstance(c, T.ClauseEndsWith):
        return [c.ends_with.lstrip("/")], []
    if isinstance(c, T.ClauseRegex):
        found = _regex_names(c.regex)
        if found is None:
            report.unmapped_rules.append((prov, mid, c.regex))
            return [], []
        return found
    parts = c.or_ if isinstance(c, T.ClauseOr) else c.and_ if isinstance(c, T.ClauseAnd) else []
    aliases: list[str] = []
    prefixes: list[str] = []
    for p in parts:
        a, pr = _clause_names(p, prov, mid, report)
        aliases += a
        prefixes += pr
    return aliases, prefixes


def _forms(name: str) -> list[str]:
    """A name and its normalised forms (path, Bedrock region / vendor prefix and version suffix
    removed), as model resolution looks them up; the date snapshot is kept."""
    raw = name.strip().lower()
    n = raw.rsplit("/", 1)[-1]
    kept = _AT_VERSION.sub("", _BEDROCK_VERSION.sub("", n))
    stripped = _VENDOR.sub("", _REGION.sub("", kept))
    return _unique([raw, kept, stripped])


def _prefix_forms(name: str) -> list[str]:
    raw = name.strip().lower()
    return _unique([raw, _VENDOR.sub("", _REGION.sub("", raw.rsplit("/", 1)[-1]))])


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in items:
        if i and i not in seen:
            seen[i] = None
    return list(seen)


def generate(providers: list, version: str, report: Report) -> dict:
    """Our catalogue data (plain dicts) for every model of the snapshot that has a token price."""
    source = f"genai-prices {version}"
    out: dict[str, dict] = {}
    report.source = source
    report.genai_providers = len(providers)
    for p in providers:
        for m in p.models:
            report.genai_models += 1
            prov = our_provider(p.id, m.id)
            mp_list = [m.prices] if not isinstance(m.prices, list) else [c.prices for c in m.prices]
            for mp in mp_list:
                for k, v in mp.__dict__.items():
                    if v is not None and not k.startswith("_") and k not in _PRICE_KEYS:
                        report.not_priced_units[k] += 1
            versions = _versions(m, prov, report)
            if versions is None:
                keys = sorted({k for mp in mp_list for k, v in mp.__dict__.items() if v is not None})
                report.skipped.append((prov, m.id, "no token price: " + (", ".join(keys) or "no prices")))
                continue
            aliases, prefixes = _clause_names(m.match, prov, m.id, report)
            key = m.id.strip().lower()
            entry = {"source": source, "genai": (p.id, m.id),
                     "aliases": [a for a in _unique(f for n in [key, *aliases] for f in _forms(n)) if a != key],
                     "prefixes": _unique(f for n in prefixes for f in _prefix_forms(n)),
                     "prices": versions}
            pd = out.setdefault(prov, {"inherit": [], "service_tiers": {}, "models": {}, "gpus": {}})
            if key in pd["models"]:
                report.name_conflicts.append((prov, key, key, m.id))
                continue
            pd["models"][key] = entry
            report.generated += 1
        if p.fallback_model_providers:
            for f in p.fallback_model_providers:
                target = "gcp.vertex_ai" if p.id == "google" else our_provider(p.id)
                pd = out.setdefault(target, {"inherit": [], "service_tiers": {}, "models": {}, "gpus": {}})
                mapped = our_provider(f)
                if mapped not in pd["inherit"] and mapped != target:
                    pd["inherit"].append(mapped)
    return out


# -- layering -----------------------------------------------------------------------------------
def _when_text(dt: datetime) -> str:
    dt = dt.astimezone(timezone.utc)
    if (dt.hour, dt.minute, dt.second, dt.microsecond) == (0, 0, 0, 0):
        return dt.date().isoformat()
    return dt.isoformat().replace("+00:00", "Z")


def _version_dict(v: PriceVersionFile) -> dict:
    d: dict[str, Any] = {"effective_from": _when_text(v.effective_from)}
    for k in RATE_KEYS:
        if getattr(v, k) is not None:
            d[k] = getattr(v, k)
    cards = v.long_context_cards()
    if cards:
        lcs = [{"above_prompt_tokens": c.above_prompt_tokens,
                **{k: getattr(c, k) for k in RATE_KEYS if getattr(c, k) is not None}} for c in cards]
        d["long_context"] = lcs[0] if not isinstance(v.long_context, list) else lcs
    if v.source:
        d["source"] = v.source
    return d


def _model_dict(mf: ModelFile, default_source: str) -> dict:
    return {"source": mf.source or default_source, "aliases": [a.strip().lower() for a in mf.aliases],
            "prefixes": [p.strip().lower() for p in mf.prefixes], "prices": [_version_dict(v) for v in mf.prices]}


def _gpu_dict(gf: GpuFile, default_source: str) -> dict:
    return {"source": gf.source or default_source, "aliases": list(gf.aliases),
            "prices": [{"effective_from": _when_text(p.effective_from), "per_gpu_hour": p.per_gpu_hour}
                       for p in gf.prices]}


def file_dict(cf: CatalogueFile) -> dict:
    """A parsed catalogue as the plain data this module layers, diffs and writes."""
    return {
        "version": cf.version, "currency": cf.currency, "provenance": dict(cf.provenance),
        "service_tiers": {t.value: m for t, m in cf.service_tiers.items()},
        "provider_aliases": {a.strip().lower(): t.strip().lower() for a, t in cf.provider_aliases.items()},
        "fallback_providers": [p.strip().lower() for p in cf.fallback_providers],
        "providers": {n.strip().lower(): {
            "inherit": [i.strip().lower() for i in pf.inherit],
            "service_tiers": {t.value: m for t, m in pf.service_tiers.items()},
            "models": {k.strip().lower(): _model_dict(mf, "") for k, mf in pf.models.items()},
            "gpus": {k.strip().lower(): _gpu_dict(gf, "") for k, gf in pf.gpus.items()},
        } for n, pf in cf.providers.items()},
    }


def _names(entry: dict, key: str) -> set[str]:
    return {key, *entry.get("aliases", ())}


def apply_layer(cat: dict, layer: CatalogueFile, label: str, report: Report) -> None:
    """Put an overrides file on top of `cat` (see the module docstring for the rules)."""
    cat["service_tiers"].update({t.value: m for t, m in layer.service_tiers.items()})
    cat["provider_aliases"].update({a.strip().lower(): t.strip().lower() for a, t in layer.provider_aliases.items()})
    if layer.fallback_providers:
        cat["fallback_providers"] = [p.strip().lower() for p in layer.fallback_providers]
    for pname, pf in layer.providers.items():
        pname = pname.strip().lower()
        pd = cat["providers"].setdefault(pname, {"inherit": [], "service_tiers": {}, "models": {}, "gpus": {}})
        pd["inherit"] = _unique([i.strip().lower() for i in pf.inherit] + pd["inherit"])
        pd["service_tiers"].update({t.value: m for t, m in pf.service_tiers.items()})
        for key, gf in pf.gpus.items():
            pd["gpus"][key.strip().lower()] = _gpu_dict(gf, f"override: {label}")
        for key, mf in pf.models.items():
            key = key.strip().lower()
            new = _model_dict(mf, f"override: {label}")
            new["curated"] = True
            wanted = {f for n in _names(new, key) for f in _forms(n)}
            for other in [k for k, e in pd["models"].items() if _names(e, k) & wanted]:
                absorbed = pd["models"].pop(other)
                if "genai" in absorbed:
                    report.merged_into_override.append((pname, key, absorbed["genai"][1]))
                new["aliases"] = _unique(new["aliases"] + [other] + absorbed.get("aliases", []))
                new["prefixes"] = _unique(new["prefixes"] + absorbed.get("prefixes", []))
            new["aliases"] = [a for a in new["aliases"] if a != key]
            pd["models"][key] = new


def _chain_names(cat: dict, provider: str) -> set[str]:
    """Keys and aliases of every override model `provider` inherits (transitively), not its own."""
    names: set[str] = set()
    todo, seen = list(cat["providers"].get(provider, {}).get("inherit", [])), {provider}
    while todo:
        p = todo.pop(0)
        if p in seen or p not in cat["providers"]:
            continue
        seen.add(p)
        for k, e in cat["providers"][p]["models"].items():
            if e.get("curated"):
                names |= _names(e, k)
        todo += cat["providers"][p].get("inherit", [])
    return names


def drop_resold(cat: dict, report: Report) -> None:
    """A cloud's snapshot entry for a model its vendor has in the overrides is priced through
    `inherit`, at the vendor's (override) price: one entry, one priced_model for every Bedrock or
    Vertex spelling of a Claude model. Other cloud entries keep the cloud's own price."""
    for pname, pd in cat["providers"].items():
        if not pd.get("inherit"):
            continue
        vendor = _chain_names(cat, pname)
        for key in list(pd["models"]):
            e = pd["models"][key]
            if e.get("curated") or "genai" not in e:
                continue
            hit = next((c for n in _names(e, key) for c in model_candidates(n) if c in vendor), None)
            if hit is not None:
                del pd["models"][key]
                report.via_inherit.append((pname, e["genai"][1], hit))


def _rates_of(v: dict) -> tuple:
    return tuple((k, v.get(k)) for k in (*RATE_KEYS, "long_context"))


def _in_force(versions: list[dict], when: str) -> dict:
    cur = versions[0]
    for v in versions:
        if v["effective_from"][:10] <= when:
            cur = v
    return cur


def refresh(cat: dict, current: dict | None, today: str, source: str, report: Report) -> None:
    """Keep the price history of models the current catalogue took from genai-prices."""
    if not current:
        return
    for pname, cpd in current["providers"].items():
        pd = cat["providers"].get(pname)
        for key, ce in cpd["models"].items():
            if not str(ce.get("source") or "").startswith("genai-prices"):
                continue
            if pd is not None and key in pd["models"]:
                e = pd["models"][key]
                if e.get("curated") or "genai" not in e:
                    continue
                versions = [dict(v) for v in ce["prices"]]
                dates = {v["effective_from"] for v in versions}
                for g in e["prices"]:
                    if g["effective_from"] != UNDATED and g["effective_from"] not in dates and \
                            _rates_of(_in_force(versions, g["effective_from"])) != _rates_of(g):
                        versions.append(dict(g, source=source))
                        versions.sort(key=lambda v: v["effective_from"])
                now = _in_force(e["prices"], today)
                if _rates_of(_in_force(versions, today)) != _rates_of(now):
                    versions = [v for v in versions if v["effective_from"] != today]
                    versions.append(dict(now, effective_from=today, source=f"{source} (undated change)"))
                    versions.sort(key=lambda v: v["effective_from"])
                    report.refreshed.append((pname, key, today))
                for v in versions:
                    if v.get("source") == e["source"]:
                        v.pop("source")
                e["prices"] = versions
                continue
            # no longer in the snapshot (and not a cloud entry now priced through its vendor)
            if any(p == pname and g.strip().lower() == key for p, g, _ in report.via_inherit):
                continue
            pd = cat["providers"].setdefault(pname, {"inherit": [], "service_tiers": {}, "models": {}, "gpus": {}})
            taken = {n for k, e in pd["models"].items() for n in _names(e, k)}
            if key not in taken:
                pd["models"][key] = dict(ce, kept=True)
                report.kept_from_current.append((pname, key))


def claim_names(cat: dict, report: Report) -> None:
    """One owner per name and prefix in a provider: override entries first, then in file order."""
    for pname, pd in cat["providers"].items():
        models = pd["models"]
        order = sorted(models, key=lambda k: (not models[k].get("curated"), bool(models[k].get("kept"))))
        owner: dict[str, str] = {k: k for k in models}
        prefix_owner: dict[str, str] = {}
        for key in order:
            e = models[key]
            kept = []
            for a in e.get("aliases", []):
                if a in owner and owner[a] != key:
                    report.name_conflicts.append((pname, a, owner[a], key))
                    continue
                owner[a] = key
                kept.append(a)
            e["aliases"] = kept
            pre = []
            for p in e.get("prefixes", []):
                if p in prefix_owner:
                    if prefix_owner[p] != key:
                        report.name_conflicts.append((pname, p + "*", prefix_owner[p], key))
                    continue
                prefix_owner[p] = key
                pre.append(p)
            e["prefixes"] = pre


# -- diff -------------------------------------------------------------------------------------------
def _fmt_rates(v: dict) -> str:
    parts = [f"{k} {format(v[k], 'f')}" for k in RATE_KEYS if v.get(k) is not None]
    lc = v.get("long_context")
    if lc:
        cards = lc if isinstance(lc, list) else [lc]
        parts.append("long-context >" + "/".join(str(c["above_prompt_tokens"]) for c in cards))
    return ", ".join(parts)


def _norm_versions(vs: list[dict]) -> list[tuple]:
    return [(v["effective_from"], _rates_of(v)) for v in vs]


def diff(old: dict | None, new: dict) -> tuple[list[str], dict[str, int]]:
    """Lines describing what changes from `old` to `new`, and counts."""
    lines: list[str] = []
    counts = Counter()
    old = old or {"providers": {}, "service_tiers": {}, "provider_aliases": {}, "version": "(none)"}
    lines.append(f"version: {old.get('version')} -> {new['version']}")
    for t in sorted(set(old["service_tiers"]) | set(new["service_tiers"])):
        a, b = old["service_tiers"].get(t), new["service_tiers"].get(t)
        if a != b:
            lines.append(f"~ service tier {t}: {a} -> {b}")
    oa, na = old["provider_aliases"], new["provider_aliases"]
    for a in sorted(set(oa) | set(na)):
        if a not in oa:
            lines.append(f"+ provider alias {a} -> {na[a]}")
        elif a not in na:
            lines.append(f"- provider alias {a} -> {oa[a]}")
        elif oa[a] != na[a]:
            lines.append(f"~ provider alias {a}: {oa[a]} -> {na[a]}")
    for pname in _provider_order(set(old["providers"]) | set(new["providers"])):
        op = old["providers"].get(pname, {"models": {}, "gpus": {}, "inherit": [], "service_tiers": {}})
        np_ = new["providers"].get(pname, {"models": {}, "gpus": {}, "inherit": [], "service_tiers": {}})
        if pname not in old["providers"]:
            lines.append(f"+ provider {pname} ({len(np_['models'])} models)")
            counts["providers_added"] += 1
        elif pname not in new["providers"]:
            lines.append(f"- provider {pname}")
            counts["providers_removed"] += 1
        if op.get("inherit") != np_.get("inherit") and pname in old["providers"]:
            lines.append(f"~ {pname} inherit: {op.get('inherit')} -> {np_.get('inherit')}")
        if op.get("service_tiers") != np_.get("service_tiers") and pname in old["providers"]:
            lines.append(f"~ {pname} service tiers: {op.get('service_tiers')} -> {np_.get('service_tiers')}")
        for key in sorted(set(op["models"]) | set(np_["models"])):
            a, b = op["models"].get(key), np_["models"].get(key)
            if a is None:
                counts["models_added"] += 1
                lines.append(f"+ {pname}/{key}: {_fmt_rates(b['prices'][-1])} [{b.get('source')}]")
                continue
            if b is None:
                counts["models_removed"] += 1
                lines.append(f"- {pname}/{key}")
                continue
            if _norm_versions(a["prices"]) != _norm_versions(b["prices"]):
                counts["models_repriced"] += 1
                lines.append(f"~ {pname}/{key}: {_fmt_rates(a['prices'][-1])} -> {_fmt_rates(b['prices'][-1])}"
                             f" ({len(a['prices'])} -> {len(b['prices'])} versions, latest from "
                             f"{b['prices'][-1]['effective_from']})")
            added = [x for x in b.get("aliases", []) if x not in a.get("aliases", [])]
            gone = [x for x in a.get("aliases", []) if x not in b.get("aliases", [])]
            padd = [x for x in b.get("prefixes", []) if x not in a.get("prefixes", [])]
            pgone = [x for x in a.get("prefixes", []) if x not in b.get("prefixes", [])]
            if added or gone or padd or pgone:
                counts["models_renamed"] += 1
                what = [f"+alias {x}" for x in added] + [f"-alias {x}" for x in gone] + \
                       [f"+prefix {x}" for x in padd] + [f"-prefix {x}" for x in pgone]
                lines.append(f"~ {pname}/{key}: " + ", ".join(what))
            if (a.get("source") or "") != (b.get("source") or ""):
                lines.append(f"~ {pname}/{key}: source {a.get('source')!r} -> {b.get('source')!r}")
        for key in sorted(set(op["gpus"]) | set(np_["gpus"])):
            a, b = op["gpus"].get(key), np_["gpus"].get(key)
            if a is None or b is None or a["prices"] != b["prices"] or a.get("aliases") != b.get("aliases"):
                lines.append(f"{'+' if a is None else '-' if b is None else '~'} {pname} gpu {key}")
    counts["models_before"] = sum(len(p["models"]) for p in old["providers"].values())
    counts["models_after"] = sum(len(p["models"]) for p in new["providers"].values())
    return lines, dict(counts)


# -- writing ------------------------------------------------------------------------------------------
_PLAIN = re.compile(r"^[a-z][a-z0-9._/@+-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _s(text: str) -> str:
    """A YAML scalar: plain when unambiguous, else double-quoted (JSON is valid YAML)."""
    return text if _PLAIN.match(text) and text not in _RESERVED else json.dumps(text)


def _d(v: Decimal) -> str:
    return '"' + format(v, "f") + '"'


def _flow(v: dict) -> str:
    parts = [f"effective_from: {v['effective_from']}" if len(v["effective_from"]) == 10
             else f"effective_from: {json.dumps(v['effective_from'])}"]
    parts += [f"{k}: {_d(v[k])}" for k in RATE_KEYS if v.get(k) is not None]
    lc = v.get("long_context")
    if lc:
        cards = lc if isinstance(lc, list) else [lc]
        texts = ["{" + ", ".join([f"above_prompt_tokens: {c['above_prompt_tokens']}"] +
                                 [f"{k}: {_d(c[k])}" for k in RATE_KEYS if c.get(k) is not None]) + "}"
                 for c in cards]
        parts.append("long_context: " + (texts[0] if not isinstance(lc, list) else "[" + ", ".join(texts) + "]"))
    if v.get("source"):
        parts.append(f"source: {json.dumps(v['source'])}")
    return "{" + ", ".join(parts) + "}"


def _provider_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    first = [p for p in PROVIDER_ORDER if p in names]
    return first + sorted(n for n in names if n not in PROVIDER_ORDER and n != "self_hosted") + \
        (["self_hosted"] if "self_hosted" in names else [])


HEADER = """\
# costwarden price catalogue: what pricing reads (PriceCatalogue.default() loads this file).
#
# GENERATED by `costwarden catalogue update` from the genai-prices snapshot (see `provenance`) with
# overrides.yaml on top. Do not edit prices here: put them in an overrides file and run
#     costwarden catalogue update --out streams/prices.yaml --write
# (your own rates: --overrides FILE). Every model says where its prices come from (`source`).
#
# Rates are USD per 1M tokens (GPU: USD per GPU-hour), written as QUOTED decimal strings:
# an unquoted 2.50 would be a binary float and the file is rejected. At most 6 decimal places.
#
# Per model, `prices` is a list of versions; the version whose `effective_from` (a date means
# 00:00 UTC) is the latest one not after the event's occurred_at applies. The first version also
# covers events older than it; effective_from 2000-01-01 marks a price the source gives no date for
# (in force since before its history). Token classes: input (uncached), cache_read, cache_write
# (5-minute / default TTL), cache_write_1h, output (reasoning included). A cache rate left out is the
# input rate, except that cache_write_1h defaults to cache_write in generated entries.
#
# `long_context`: when a request's prompt (input + cache reads + cache writes) is above
# `above_prompt_tokens`, these rates apply to the WHOLE request; a list holds ascending tiers (the
# highest exceeded applies). An aggregated event (requests > 1) compares the average prompt per
# request. A `context_window` tag from the source ("0-200k" / "200k-1M", Anthropic's usage report)
# decides instead; requests = 0 without it (a bucket of unknown count) gets the standard rates.
#
# Model resolution per (provider, model): exact key or alias, then the id with prefixes and
# suffixes removed (ARNs, "vendor/" paths, Bedrock "us."/"eu."/"apac." and "anthropic.",
# "-v1:0", Vertex "@20250514"), then without a date snapshot (-2025-04-14, -20250514, -latest),
# then the longest of the model `prefixes`. A provider searches its own entries, then those of
# the providers it `inherit`s. A provider not in this file searches `fallback_providers` (none by
# default: its events are unpriced, and charged by the configured unpriced policy).
"""


def emit(cat: dict) -> str:
    out = [HEADER, f"version: {json.dumps(cat['version'])}\n", f"currency: {cat.get('currency', 'USD')}\n"]
    if cat.get("provenance"):
        out.append("provenance:\n")
        out += [f"  {_s(k)}: {json.dumps(v)}\n" for k, v in cat["provenance"].items()]
    out.append("\n# Multipliers on the token rates per service tier (why: overrides.yaml). A provider may override "
               "them.\nservice_tiers:" + ("\n" if cat["service_tiers"] else " {}\n"))
    out += [f"  {t}: {_d(m)}\n" for t, m in cat["service_tiers"].items()]
    out.append("\nprovider_aliases:" + ("       # provider names used by other sources -> catalogue provider\n"
                                         if cat["provider_aliases"] else " {}\n"))
    out += [f"  {_s(a)}: {_s(t)}\n" for a, t in sorted(cat["provider_aliases"].items())]
    out.append(f"\nfallback_providers: [{', '.join(_s(p) for p in cat['fallback_providers'])}]\n\nproviders:\n")
    for pname in _provider_order(cat["providers"]):
        pd = cat["providers"][pname]
        out.append(f"  {_s(pname)}:\n")
        if pd.get("inherit"):
            out.append(f"    inherit: [{', '.join(_s(i) for i in pd['inherit'])}]\n")
        if pd.get("service_tiers"):
            tiers = ", ".join(f"{t}: {_d(m)}" for t, m in pd["service_tiers"].items())
            out.append("    service_tiers: {" + tiers + "}\n")
        if pd["models"] or not pd.get("gpus"):
            out.append("    models:\n" if pd["models"] else "    models: {}\n")
        for key in sorted(pd["models"]):
            e = pd["models"][key]
            out.append(f"      {_s(key)}:\n")
            if e.get("source"):
                out.append(f"        source: {json.dumps(e['source'])}\n")
            if e.get("aliases"):
                out.append(f"        aliases: [{', '.join(_s(a) for a in e['aliases'])}]\n")
            if e.get("prefixes"):
                out.append(f"        prefixes: [{', '.join(_s(a) for a in e['prefixes'])}]\n")
            out.append("        prices:\n")
            out += [f"          - {_flow(v)}\n" for v in e["prices"]]
        if pd.get("gpus"):
            out.append("    gpus:\n")
            for key in sorted(pd["gpus"]):
                g = pd["gpus"][key]
                out.append(f"      {_s(key)}:\n")
                if g.get("source"):
                    out.append(f"        source: {json.dumps(g['source'])}\n")
                if g.get("aliases"):
                    out.append(f"        aliases: [{', '.join(_s(a) for a in g['aliases'])}]\n")
                out.append("        prices: [" + ", ".join(
                    f"{{effective_from: {p['effective_from']}, per_gpu_hour: {_d(p['per_gpu_hour'])}}}"
                    for p in g["prices"]) + "]\n")
    return "".join(out)


# -- the whole update -----------------------------------------------------------------------------------
@dataclass
class Update:
    data: dict
    text: str
    catalogue: PriceCatalogue
    diff: list[str]
    counts: dict[str, int]
    report: Report
    changed: bool


def default_overrides() -> tuple[CatalogueFile, str]:
    text = resources.files("costwarden.streams").joinpath("overrides.yaml").read_text(encoding="utf-8")
    return parse_catalogue(text, "costwarden/streams/overrides.yaml", partial=True), "costwarden/streams/overrides.yaml"


def build(current: CatalogueFile | None, overrides: list[tuple[CatalogueFile, str]], *,
          today: date | None = None, version: str | None = None, providers: list | None = None) -> Update:
    """The catalogue the snapshot and the overrides make, refreshed against `current`."""
    today = today or datetime.now(timezone.utc).date()
    gver = genai_version()
    report = Report()
    gen = generate(providers if providers is not None else snapshot_providers(), gver, report)
    cat: dict = {"version": "", "currency": "USD", "provenance": {}, "service_tiers": {},
                 "provider_aliases": {}, "fallback_providers": [], "providers": gen}
    for layer, label in overrides:
        apply_layer(cat, layer, label, report)
    providers_known = set(cat["providers"])
    cat["provider_aliases"] = {a: t for a, t in cat["provider_aliases"].items()
                               if t in providers_known and a not in providers_known}
    for pd in cat["providers"].values():
        pd["inherit"] = [i for i in pd["inherit"] if i in providers_known]
    drop_resold(cat, report)
    cur = file_dict(current) if current is not None else None
    refresh(cat, cur, today.isoformat(), f"genai-prices {gver}", report)
    claim_names(cat, report)
    for pd in cat["providers"].values():
        for e in pd["models"].values():
            for k in ("curated", "genai", "kept"):
                e.pop(k, None)
    cat["provenance"] = {
        "source": f"genai-prices {gver} (bundled snapshot)",
        "overrides": ", ".join(label for _, label in overrides) or "none",
        "generated_by": "costwarden catalogue update",
        "generated_on": today.isoformat(),
        "undated_prices_from": UNDATED,
    }
    cat["version"] = "(new)"
    lines, counts = diff(cur, cat)
    changed = cur is None or len(lines) > 1 or cur.get("provenance", {}).get("source") != cat["provenance"]["source"]
    if version is None:
        version = f"{today.isoformat()}.genai-prices-{gver}"
        if cur is not None and cur["version"].startswith(version):
            n = cur["version"][len(version):].lstrip(".")
            version = f"{version}.{int(n) + 1 if n.isdigit() else 2}"
    if not changed and cur is not None:
        version = cur["version"]
        cat["provenance"] = cur["provenance"] or cat["provenance"]
    cat["version"] = version
    lines[0] = f"version: {cur['version'] if cur else '(none)'} -> {version}"
    text = emit(cat)
    catalogue = PriceCatalogue.from_text(text, "<generated>")
    return Update(cat, text, catalogue, lines, counts, report, changed)


# -- comparison with genai_prices.calc_price ------------------------------------------------------------
USAGES: dict[str, dict[str, int]] = {
    "chat": {"input": 1_200, "output": 350},
    "cached": {"input": 4_000, "cache_read": 30_000, "cache_write": 2_000, "output": 800},
    "cache-1h": {"input": 1_000, "cache_read": 5_000, "cache_write_1h": 3_000, "output": 400},
    "long-prompt": {"input": 150_000, "cache_read": 140_000, "cache_write": 10_000, "output": 5_000},
    "tiny": {"input": 10, "output": 20},
    "audio": {"input": 800, "cache_read": 200, "input_audio": 4_000, "output": 300, "output_audio": 600},
    "image": {"input": 500, "input_image": 1_500, "output": 200, "output_image": 4_000},
}


@dataclass
class Comparison:
    provider: str           # ours
    model: str              # the id priced, as genai-prices names it
    usage: str
    ours: Decimal | None    # exact USD, None when we do not price it
    theirs: Decimal
    priced_as: str          # our provider/key
    reason: str = ""        # why they differ ("" when equal)

    @property
    def differs(self) -> bool:
        return self.ours != self.theirs


def _genai_usage(t: dict[str, int]):
    from genai_prices import Usage

    cw, cw1 = t.get("cache_write", 0), t.get("cache_write_1h", 0)
    ia, oa, ii, oi = (t.get(k, 0) for k in ("input_audio", "output_audio", "input_image", "output_image"))
    # genai's input/output counts are totals over every modality; ours are disjoint classes
    return Usage(input_tokens=t.get("input", 0) + t.get("cache_read", 0) + cw + cw1 + ia + ii,
                 cache_read_tokens=t.get("cache_read", 0), cache_write_tokens=cw + cw1,
                 cache_write_1h_tokens=cw1, output_tokens=t.get("output", 0) + oa + oi,
                 input_audio_tokens=ia, output_audio_tokens=oa, input_image_tokens=ii, output_image_tokens=oi,
                 cache_audio_read_tokens=0, cache_image_read_tokens=0)  # cached reads are text here


def sample(providers: list, per_provider: int = 6) -> list[tuple[Any, Any]]:
    """(genai provider, model) pairs spread over every provider that has token prices."""
    out = []
    for p in providers:
        priced = [m for m in p.models if _has_token_price(m)]
        if not priced:
            continue
        step = max(1, len(priced) // per_provider)
        out += [(p, m) for m in priced[::step][:per_provider]]
    return out


def _model_ref(p: Any, m: Any) -> str | None:
    """A name genai-prices resolves to `m` itself under `p`: its id, else one of its match names
    (a few ids do not match their own rules, e.g. Bedrock's "regional.*" entries)."""
    from genai_prices import data_snapshot

    snap = data_snapshot.get_snapshot()
    names, _ = _clause_names(m.match, p.id, m.id, Report())
    for ref in [m.id, *names]:
        try:
            _, found = snap.find_provider_model(ref, None, p.id, None)
        except LookupError:
            continue
        if found is m:
            return ref
    return None


def _has_token_price(m: Any) -> bool:
    mp = m.prices if not isinstance(m.prices, list) else m.prices[-1].prices
    return mp.__dict__.get("input_mtok") is not None or mp.__dict__.get("output_mtok") is not None


def _why(cat: PriceCatalogue, p: Any, m: Any, priced_as: str, source: str, usage: dict[str, int],
         ours: Decimal | None, theirs: Decimal) -> str:
    from genai_prices.types import ModelPrice, TimeOfDateConstraint

    if ours is None:
        return "unexplained: not priced by us"
    prices = [m.prices] if isinstance(m.prices, ModelPrice) else [c.prices for c in m.prices]
    if not isinstance(m.prices, ModelPrice) and any(isinstance(c.constraint, TimeOfDateConstraint) for c in m.prices):
        return "time-of-day price: we charge the peak rate all day"
    if any(mp.__dict__.get("requests_kcount") is not None for mp in prices):
        return "per-request fee: not one of our token classes"
    prov = our_provider(p.id, m.id)
    entry_provider = priced_as.split("/", 1)[0]
    if entry_provider != prov:
        return f"resold model priced at the vendor's list price (inherit {entry_provider})"
    if source.startswith("costwarden") or source.startswith("override"):
        return f"override: {source}"
    if any(Decimal(v if not hasattr(v, "base") else v.base).as_tuple().exponent < -RATE_PLACES  # type: ignore[operator]
           for mp in prices for k, v in mp.__dict__.items() if k in _PRICE_KEYS and v is not None):
        return f"rounding to our unit: a rate with more than {RATE_PLACES} decimal places"
    if any(mp.__dict__.get(k) is not None for mp in prices for k in mp.__dict__ if k not in _PRICE_KEYS
           and not k.startswith("_") and k.endswith("_mtok")):
        return "unexplained: a token class we do not price"
    return "unexplained"


def compare(cat: PriceCatalogue, pairs: list[tuple[Any, Any]], when: datetime) -> list[Comparison]:
    """Our price vs genai_prices.calc_price for each (provider, model) and each of USAGES."""
    from genai_prices import calc_price

    sources = {(pn.strip().lower(), k.strip().lower()): mf.source or ""
               for pn, pf in cat.file.providers.items() for k, mf in pf.models.items()}
    rows: list[Comparison] = []
    for p, m in pairs:
        prov = our_provider(p.id, m.id)
        ref = _model_ref(p, m)
        if ref is None:
            continue
        entry = cat.resolve(prov, ref)
        priced_as = f"{entry.provider}/{entry.key}" if entry else ""
        for label, t in USAGES.items():
            theirs = calc_price(_genai_usage(t), ref, provider_id=p.id, genai_request_timestamp=when).total_price
            ev = UsageEvent(event_id="cmp", occurred_at=when, source="compare", provider=prov, model=ref,
                            tokens=t)
            price = cat.price(ev)
            ours = None if price.unpriced else price.exact_usd
            row = Comparison(prov, ref, label, ours, theirs, priced_as)
            if row.differs:
                row.reason = _why(cat, p, m, priced_as, sources.get((entry.provider, entry.key), "") if entry else "",
                                  t, ours, theirs)
            rows.append(row)
    return rows
