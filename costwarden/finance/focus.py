"""FinOps FOCUS 1.2 export of stored usage: one row per UTC day and charge identity (provider,
model, service tier, operation, team, workflow, cost centre, env, GPU type, catalogue version).

Costs are the catalogue's list prices: BilledCost = EffectiveCost = ListCost = ContractedCost
(costwarden knows no negotiated discounts), exact Decimal with 9 places; the BilledCost column
sums to the events' cost to the nano-dollar. Timestamps are UTC. Custom columns carry the `x_`
prefix (token classes, requests, events, GPU hours, env, catalogue version, unpriced events).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

from costwarden.finance.queries import FocusQuery
from costwarden.money import from_nanos
from costwarden.reports import MODALITY_COLS
from costwarden.store import Store

MANDATORY = ("BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodStart",
             "BillingPeriodEnd", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargePeriodStart",
             "ChargePeriodEnd", "ContractedCost", "EffectiveCost", "InvoiceIssuerName", "ListCost",
             "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName", "ServiceCategory", "ServiceName")
EXTRA = ("ConsumedQuantity", "ConsumedUnit", "Tags", "SkuId", "RegionId")
CUSTOM = ("x_Requests", "x_Events", "x_InputTokens", "x_CacheReadTokens", "x_CacheWriteTokens",
          "x_CacheWrite1hTokens", "x_OutputTokens", "x_ReasoningTokens", "x_InputAudioTokens",
          "x_OutputAudioTokens", "x_InputImageTokens", "x_OutputImageTokens", "x_GpuHours", "x_Model",
          "x_ServiceTier", "x_Env", "x_CatalogueVersion", "x_UnpricedEvents", "x_Source")
COLUMNS = (*MANDATORY, *EXTRA, *CUSTOM)
MONEY = ("BilledCost", "ContractedCost", "EffectiveCost", "ListCost")
TIMES = ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd")
# Nullable per FOCUS 1.2 (ChargeClass is null except for corrections; RegionId where known).
NULLABLE = ("ChargeClass", "RegionId", "SkuId", "x_GpuHours")

PROVIDER_NAMES = {"openai": "OpenAI", "anthropic": "Anthropic", "gcp.gemini": "Google",
                  "gcp.vertex_ai": "Google Cloud", "aws.bedrock": "AWS", "azure.ai.openai": "Microsoft",
                  "self_hosted": "Self-hosted", "mistral_ai": "Mistral AI", "cohere": "Cohere"}
SERVICE_NAMES = {"openai": "OpenAI API", "anthropic": "Claude API", "gcp.gemini": "Gemini API",
                 "gcp.vertex_ai": "Vertex AI", "aws.bedrock": "Amazon Bedrock",
                 "azure.ai.openai": "Azure OpenAI", "self_hosted": "GPU compute"}
REGION_HINTS = {"eu.": "eu", "us.": "us", "apac.": "apac"}  # Bedrock cross-region inference prefixes


def arrow_schema():
    import pyarrow as pa

    fields = []
    for c in COLUMNS:
        if c in MONEY:
            t = pa.decimal128(38, 9)
        elif c in TIMES:
            t = pa.timestamp("us", tz="UTC")
        elif c in ("PricingQuantity", "ConsumedQuantity", "x_GpuHours"):
            t = pa.decimal128(38, 9)
        elif c.startswith("x_") and c not in ("x_Model", "x_ServiceTier", "x_Env", "x_CatalogueVersion", "x_Source"):
            t = pa.int64()
        else:
            t = pa.string()
        fields.append(pa.field(c, t, nullable=c in NULLABLE))
    return pa.schema(fields)


def _month_bounds(day: datetime) -> tuple[datetime, datetime]:
    start = day.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, (start + timedelta(days=32)).replace(day=1)


def _region(model: str) -> str | None:
    for prefix, region in REGION_HINTS.items():
        if model.startswith(prefix):
            return region
    return None


def focus_row(r: dict, account_id: str, account_name: str) -> dict:
    day = r["day"]
    bill_start, bill_end = _month_bounds(day)
    provider = r["provider"]
    provider_name = PROVIDER_NAMES.get(provider, provider)
    tokens = sum(r[k] for k in ("input_tokens", "cache_read_tokens", "cache_write_tokens",
                                "cache_write_1h_tokens", "output_tokens", *MODALITY_COLS))
    gpu = Decimal(r["gpu_hours"])
    if gpu:
        consumed, unit = gpu, "GPU-Hours"
        sku = f"{provider}/gpu/{r['gpu_type'] or 'unknown'}"
    elif tokens:
        consumed, unit = Decimal(tokens), "Tokens"
        sku = f"{provider}/{r['priced_model']}/{r['service_tier']}"
    else:
        consumed, unit = Decimal(r["requests"]), "Requests"
        sku = f"{provider}/{r['priced_model']}/{r['service_tier']}"
    cost = from_nanos(r["cost_nanos"])
    what = r["priced_model"] or r["gpu_type"] or r["operation"]
    return {
        "BilledCost": cost, "BillingAccountId": account_id, "BillingAccountName": account_name,
        "BillingCurrency": "USD", "BillingPeriodStart": bill_start, "BillingPeriodEnd": bill_end,
        "ChargeCategory": "Usage", "ChargeClass": None,
        "ChargeDescription": f"{what} {r['operation']} ({r['service_tier']}) for {r['team']}/{r['workflow']}",
        "ChargePeriodStart": day, "ChargePeriodEnd": day + timedelta(days=1),
        "ContractedCost": cost, "EffectiveCost": cost, "InvoiceIssuerName": provider_name, "ListCost": cost,
        "PricingQuantity": consumed, "PricingUnit": unit, "ProviderName": provider_name,
        "PublisherName": provider_name, "ServiceCategory": "AI and Machine Learning",
        "ServiceName": SERVICE_NAMES.get(provider, provider_name),
        "ConsumedQuantity": consumed, "ConsumedUnit": unit,
        "Tags": json.dumps({"team": r["team"], "workflow": r["workflow"], "cost_center": r["cost_center"]},
                           sort_keys=True),
        "SkuId": sku, "RegionId": _region(r["model"]),
        "x_Requests": r["requests"], "x_Events": r["events"], "x_InputTokens": r["input_tokens"],
        "x_CacheReadTokens": r["cache_read_tokens"], "x_CacheWriteTokens": r["cache_write_tokens"],
        "x_CacheWrite1hTokens": r["cache_write_1h_tokens"], "x_OutputTokens": r["output_tokens"],
        "x_ReasoningTokens": r["reasoning_tokens"], "x_InputAudioTokens": r["input_audio_tokens"],
        "x_OutputAudioTokens": r["output_audio_tokens"], "x_InputImageTokens": r["input_image_tokens"],
        "x_OutputImageTokens": r["output_image_tokens"], "x_GpuHours": gpu if gpu else None, "x_Model": r["model"],
        "x_ServiceTier": r["service_tier"], "x_Env": r["env"], "x_CatalogueVersion": r["catalogue_version"],
        "x_UnpricedEvents": r["unpriced_events"], "x_Source": "costwarden",
    }


def focus_rows(store: Store, start: datetime, end: datetime, account_id: str = "costwarden",
               account_name: str = "costwarden") -> list[dict]:
    return [focus_row(r, account_id, account_name) for r in store.query(FocusQuery(start, end).to_sql())]


def write_focus(rows: list[dict], fmt: str, out) -> None:
    """fmt 'csv' (out: a path or a text stream) or 'parquet' (out: a path)."""
    from costwarden.finance.export import to_csv, to_parquet

    if fmt == "parquet":
        to_parquet(rows, list(COLUMNS), out, schema=arrow_schema())
    elif hasattr(out, "write"):
        out.write(to_csv(rows, list(COLUMNS)))
    else:
        with open(out, "w", newline="") as fh:
            fh.write(to_csv(rows, list(COLUMNS)))
