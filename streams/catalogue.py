"""The versioned price catalogue: file schema, validation with line numbers, loading.

A catalogue file (see prices.yaml, the packaged seed) is validated in one pass: every
problem (unknown key, float instead of quoted decimal, negative price, bad date,
duplicate key / alias / effective date, unknown provider reference) is reported as
(file, line, field, message) in a single costwarden.errors.FileError. A valid file is
compiled into plain lookup tables (pricing.Pricer), so pricing does no pydantic work.
"""
from __future__ import annotations

import functools
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from costwarden.errors import FileError
from costwarden.events import ServiceTier
from costwarden.streams.pricing import (
    _CTX, BASE_CLASS, NO_POLICY, TOKEN_CLASSES, GpuEntry, ModelEntry, PriceVersion, Pricer, ProviderTable, RateCard, UnpricedPolicy,
)

RATE_PLACES = 6  # decimal places allowed in a USD-per-1M or USD-per-GPU-hour rate
MULTIPLIER_PLACES = 4


def _decimal(v: Any, places: int) -> Decimal:
    if isinstance(v, float):
        raise ValueError(f"unquoted number {v!r} is read as a binary float; quote it: \"{v!r}\"")
    if isinstance(v, bool) or not isinstance(v, (int, str, Decimal)):
        raise ValueError(f"expected a quoted decimal string, got {v!r}")
    try:
        d = Decimal(v.strip()) if isinstance(v, str) else Decimal(v)
    except InvalidOperation:
        raise ValueError(f"not a decimal: {v!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite decimal: {v!r}")
    if d < 0:
        raise ValueError(f"negative value {v}: prices and multipliers must be >= 0")
    if d.as_tuple().exponent < -places:  # type: ignore[operator]
        raise ValueError(f"{v} has more than {places} decimal places")
    return d


def _when(v: Any) -> datetime:
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, date):
        dt = datetime(v.year, v.month, v.day)
    elif isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.strip())
        except ValueError:
            raise ValueError(f"not a date: {v!r} (use YYYY-MM-DD or an RFC 3339 time with zone)") from None
        if "t" not in v.lower() and " " not in v.strip():
            dt = dt.replace(tzinfo=timezone.utc)
    else:
        raise ValueError(f"not a date: {v!r}")
    if dt.tzinfo is None:
        if isinstance(v, str) and len(v.strip()) > 10:
            raise ValueError(f"time {v!r} needs a zone (Z or +00:00)")
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


Rate = Annotated[Decimal, BeforeValidator(lambda v: _decimal(v, RATE_PLACES))]
Multiplier = Annotated[Decimal, BeforeValidator(lambda v: _decimal(v, MULTIPLIER_PLACES))]
When = Annotated[datetime, BeforeValidator(_when)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rates(_Strict):
    """USD per 1M tokens. Missing cache rates are the input rate (providers with '-')."""

    input: Rate
    output: Rate
    cache_read: Rate | None = None
    cache_write: Rate | None = None
    cache_write_1h: Rate | None = None
    # audio and image tokens, where the model prices them apart from text (else the text rate)
    input_audio: Rate | None = None
    output_audio: Rate | None = None
    input_image: Rate | None = None
    output_image: Rate | None = None


class LongContext(Rates):
    above_prompt_tokens: int = Field(gt=0)


class PriceVersionFile(Rates):
    effective_from: When
    # one long-context card, or several with ascending thresholds (the highest exceeded applies)
    long_context: LongContext | list[LongContext] | None = None
    source: str | None = Field(None, max_length=200)  # provenance of this version, if not the model's

    @field_validator("long_context")
    @classmethod
    def _ascending(cls, v: LongContext | list[LongContext] | None) -> LongContext | list[LongContext] | None:
        if isinstance(v, list):
            above = [c.above_prompt_tokens for c in v]
            if not above or any(b <= a for a, b in zip(above, above[1:])):
                raise ValueError("long_context tiers need strictly ascending above_prompt_tokens")
        return v

    def long_context_cards(self) -> list[LongContext]:
        lc = self.long_context
        return [] if lc is None else (lc if isinstance(lc, list) else [lc])


class ModelFile(_Strict):
    source: str | None = Field(None, max_length=200)  # provenance: where these prices come from
    aliases: list[str] = Field(default_factory=list)
    prefixes: list[str] = Field(default_factory=list)  # ids starting with one of these (longest wins)
    prices: list[PriceVersionFile] = Field(min_length=1)


class GpuPrice(_Strict):
    effective_from: When
    per_gpu_hour: Rate


class GpuFile(_Strict):
    source: str | None = Field(None, max_length=200)
    aliases: list[str] = Field(default_factory=list)
    prices: list[GpuPrice] = Field(min_length=1)


class ProviderFile(_Strict):
    inherit: list[str] = Field(default_factory=list)
    service_tiers: dict[ServiceTier, Multiplier] = Field(default_factory=dict)
    models: dict[str, ModelFile] = Field(default_factory=dict)
    gpus: dict[str, GpuFile] = Field(default_factory=dict)


class CatalogueFile(_Strict):
    version: str = Field(min_length=1, max_length=64)
    currency: str = Field("USD", pattern="^USD$")
    provenance: dict[str, str] = Field(default_factory=dict)  # how the file was made (source, versions)
    service_tiers: dict[ServiceTier, Multiplier] = Field(default_factory=dict)
    provider_aliases: dict[str, str] = Field(default_factory=dict)
    fallback_providers: list[str] = Field(default_factory=list)
    providers: dict[str, ProviderFile]


# -- YAML with line numbers ---------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """Safe loader that leaves timestamps as text, so a bad date is a field error, not a crash."""


_Loader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))

if getattr(yaml, "__with_libyaml__", False):  # libyaml parses the generated catalogue ~10x faster
    class _FastLoader(yaml.CSafeLoader):  # type: ignore[name-defined,misc]
        pass

    _FastLoader.add_constructor("tag:yaml.org,2002:timestamp",
                                lambda loader, node: loader.construct_scalar(node))
else:  # pragma: no cover
    _FastLoader = _Loader  # type: ignore[misc,assignment]

Path_ = tuple[str | int, ...]
ErrorRow = tuple[str, int | None, str, str]


def _fmt(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<root>"


def _index(node: yaml.Node, path: Path_, lines: dict[Path_, int], errors: list[ErrorRow],
           filename: str, seen_nodes: set[int], floats: dict[Path_, str]) -> None:
    """Map field paths to lines, find duplicate keys and remember unquoted floats as written."""
    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:float":
        floats[path] = node.value
    elif isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k.start_mark)
            p, line = path + (key,), k.start_mark.line + 1
            if key in first and key != "<<":  # YAML keeps the last one: so do the line numbers
                errors.append((filename, line, _fmt(p), f"duplicate key {key!r} (first on line {first[key]})"))
            else:
                first[key] = line
            lines[p] = line
            _index(v, p, lines, errors, filename, seen_nodes, floats)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _index(item, path + (i,), lines, errors, filename, seen_nodes, floats)


def _line(lines: dict[Path_, int], path: Path_) -> int | None:
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return 1 if lines else None


def _pydantic_errors(e: ValidationError, lines: dict[Path_, int], filename: str,
                     floats: dict[Path_, str]) -> list[ErrorRow]:
    out = []
    for err in e.errors():
        path = tuple(p if isinstance(p, int) else str(p) for p in err["loc"] if p != "[key]")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {path[-1]!r}" if path else "unknown key"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif path in floats and "binary float" in msg:
            msg = f'unquoted number {floats[path]} is read as a binary float; quote it: "{floats[path]}"'
        out.append((filename, _line(lines, path), _fmt(path), msg))
    return out


def _as_dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _cross_checks(data: dict, lines: dict[Path_, int], filename: str, partial: bool = False) -> list[ErrorRow]:
    """Checks across entries, on the raw data so they run even when fields are invalid.
    `partial`: an overrides file, whose provider references are checked once it is layered."""
    errs: list[ErrorRow] = []

    def err(path: Path_, msg: str) -> None:
        errs.append((filename, _line(lines, path), _fmt(path), msg))

    providers = _as_dict(data.get("providers"))
    names = {str(p).lower(): p for p in providers}
    if len(names) != len(providers):
        err(("providers",), "provider names differ only in case")
    for pname, prov in providers.items():
        prov = _as_dict(prov)
        prefix_owner: dict[str, str] = {}
        for key, entry in _as_dict(prov.get("models")).items():
            prefixes = _as_dict(entry).get("prefixes")
            for i, name in enumerate(prefixes if isinstance(prefixes, list) else []):
                low = str(name).strip().lower()
                if not low:
                    err(("providers", pname, "models", key, "prefixes", i), "empty prefix")
                elif low in prefix_owner:
                    err(("providers", pname, "models", key, "prefixes", i),
                        f"prefix {name!r} is already used by {prefix_owner[low]!r}")
                else:
                    prefix_owner[low] = str(key)
        for section in ("models", "gpus"):
            owner: dict[str, str] = {}
            for key, entry in _as_dict(prov.get(section)).items():
                aliases = _as_dict(entry).get("aliases")
                for i, name in [(None, key)] + list(enumerate(aliases if isinstance(aliases, list) else [])):
                    path = (pname, section, key) if i is None else (pname, section, key, "aliases", i)
                    low = str(name).strip().lower()
                    if low in owner:
                        what = "model key" if i is None else "alias"
                        err(("providers",) + path, f"{what} {name!r} is already used by {owner[low]!r}")
                    else:
                        owner[low] = str(key)
                seen: dict[str, int] = {}
                prices = _as_dict(entry).get("prices")
                for i, version in enumerate(prices if isinstance(prices, list) else []):
                    raw = _as_dict(version).get("effective_from")
                    try:
                        when = _when(raw).isoformat()
                    except ValueError:
                        continue
                    if when in seen:
                        err(("providers", pname, section, key, "prices", i, "effective_from"),
                            f"effective_from {raw} repeats prices[{seen[when]}]")
                    seen[when] = i
        inherit = prov.get("inherit")
        for i, target in enumerate(inherit if isinstance(inherit, list) else []):
            if str(target).lower() == str(pname).lower() or (str(target).lower() not in names and not partial):
                err(("providers", pname, "inherit", i), f"inherits from unknown provider {target!r}")
    for alias, target in _as_dict(data.get("provider_aliases")).items():
        if str(target).lower() not in names and not partial:
            err(("provider_aliases", alias), f"alias points to unknown provider {target!r}")
        if str(alias).lower() in names:
            err(("provider_aliases", alias), f"{alias!r} is a provider itself; an alias would hide it")
    fallback = data.get("fallback_providers")
    for i, target in enumerate(fallback if isinstance(fallback, list) else []):
        if str(target).lower() not in names and not partial:
            err(("fallback_providers", i), f"unknown provider {target!r}")
    return errs


def parse_catalogue(text: str, filename: str = "<text>", partial: bool = False) -> CatalogueFile:
    """Validate a catalogue file; raise FileError listing every problem with its line.
    `partial`: an overrides file (catalogue_update.py), which may name providers of the layer below."""
    try:
        return _parse(text, filename, _FastLoader, partial)
    except FileError as e:
        if _FastLoader is _Loader or not any(field == "<yaml>" for _, _, field, _ in e.errors):
            raise
    return _parse(text, filename, _Loader, partial)  # a YAML syntax error: the pure-Python parser words it


def _parse(text: str, filename: str, loader_cls: type, partial: bool = False) -> CatalogueFile:
    loader = loader_cls(text)
    try:
        node = loader.get_single_node()
        lines: dict[Path_, int] = {}
        errors: list[ErrorRow] = []
        floats: dict[Path_, str] = {}
        if node is not None:
            _index(node, (), lines, errors, filename, set(), floats)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise FileError([(filename, mark.line + 1 if mark else None, "<yaml>", str(e))]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise FileError([(filename, 1, "<root>", "a price catalogue is a mapping with version and providers")])
    parsed = None
    try:
        parsed = CatalogueFile.model_validate(data)
    except ValidationError as e:
        errors += _pydantic_errors(e, lines, filename, floats)
    errors += _cross_checks(data, lines, filename, partial)
    if errors:
        raise FileError(sorted(errors, key=lambda r: (r[1] or 0, r[2])))
    assert parsed is not None
    return parsed


# -- compilation ----------------------------------------------------------------------------
def _card(r: Rates, mult: Decimal) -> RateCard:
    def per_token(cls: str) -> Decimal:
        v = getattr(r, cls)
        if v is None:
            v = getattr(r, BASE_CLASS[cls])
        return _CTX.multiply(v.scaleb(-6), mult)

    return RateCard(*(per_token(c) for c in TOKEN_CLASSES))


def _version(v: PriceVersionFile, tiers: dict[str, Decimal]) -> PriceVersion:
    return PriceVersion(
        effective_from=v.effective_from,
        by_tier={t: _card(v, m) for t, m in tiers.items()},
        long_context=tuple((lc.above_prompt_tokens, {t: _card(lc, m) for t, m in tiers.items()})
                           for lc in v.long_context_cards()),
    )


def _compile_provider(name: str, pf: ProviderFile, base_tiers: dict[str, Decimal]) -> ProviderTable:
    tiers = dict(base_tiers)
    tiers.update({t.value: m for t, m in pf.service_tiers.items()})
    models: dict[str, ModelEntry] = {}
    prefixes: dict[str, ModelEntry] = {}
    for key, mf in pf.models.items():
        versions = tuple(sorted((_version(v, tiers) for v in mf.prices), key=lambda v: v.effective_from))
        entry = ModelEntry(key.strip().lower(), name, versions, tuple(v.effective_from.timestamp() for v in versions))
        for n in (key, *mf.aliases):
            models[n.strip().lower()] = entry
        for n in mf.prefixes:
            prefixes[n.strip().lower()] = entry
    gpus: dict[str, GpuEntry] = {}
    for key, gf in pf.gpus.items():
        prices = sorted(gf.prices, key=lambda p: p.effective_from)
        gentry = GpuEntry(key.strip().lower(), name, tuple(p.effective_from.timestamp() for p in prices),
                          tuple(p.per_gpu_hour for p in prices))
        for n in (key, *gf.aliases):
            gpus[n.strip().lower()] = gentry
    return ProviderTable(models, gpus, tuple(p.strip().lower() for p in pf.inherit), prefixes)


class PriceCatalogue(Pricer):
    """A validated, compiled price catalogue. `price(ev)` prices one UsageEvent (see pricing.py).

    `with_unpriced_policy(policy)` gives the same catalogue charging unpriced events by `policy`
    (costwarden.config PricingSettings.unpriced_policy()); without one they cost 0 (policy "none")."""

    def __init__(self, file: CatalogueFile, source: str = "<text>", unpriced: UnpricedPolicy = NO_POLICY) -> None:
        base = {t.value: Decimal(1) for t in ServiceTier}
        base.update({t.value: m for t, m in file.service_tiers.items()})
        providers = {n.strip().lower(): _compile_provider(n.strip().lower(), pf, base)
                     for n, pf in file.providers.items()}
        super().__init__(
            file.version, providers,
            {a.strip().lower(): t.strip().lower() for a, t in file.provider_aliases.items()},
            tuple(p.strip().lower() for p in file.fallback_providers),
            unpriced,
        )
        self.file = file
        self.source = source

    def model_count(self) -> int:
        """Distinct priced models (an entry reached through several aliases counts once)."""
        return sum(len(pf.models) for pf in self.file.providers.values())

    @classmethod
    def from_text(cls, text: str, filename: str = "<text>") -> "PriceCatalogue":
        return cls(parse_catalogue(text, filename), filename)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "PriceCatalogue":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise FileError([(str(path), None, "<file>", f"cannot read the price catalogue: {e}")]) from None
        return cls.from_text(text, str(path))

    @classmethod
    def default(cls) -> "PriceCatalogue":
        """The packaged seed catalogue (costwarden/streams/prices.yaml), loaded once."""
        return _default()


@functools.lru_cache(maxsize=1)
def _default() -> PriceCatalogue:
    text = resources.files("costwarden.streams").joinpath("prices.yaml").read_text(encoding="utf-8")
    return PriceCatalogue.from_text(text, "costwarden/streams/prices.yaml")
