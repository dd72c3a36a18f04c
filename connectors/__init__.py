"""costwarden.connectors: pure parsers from each source's real payload to canonical UsageEvents.

    normalize("openai-usage", page_bytes) -> ParseResult(events, rejects, cost_lines)

Cost sources (openai-costs, anthropic-cost) return events=[] and fill cost_lines.
"""
from __future__ import annotations

from typing import Any, Callable

from . import anthropic, bedrock, gemini, litellm, openai, opencost, otlp
from .base import ParseResult, ProviderCostLine, Reject
from .otlp import OtlpMapping

PARSERS: dict[str, Callable[..., ParseResult]] = {
    "openai-usage": openai.parse_usage,
    "openai-costs": openai.parse_costs_result,
    "openai-response": openai.parse_response_usage,
    "anthropic-usage": anthropic.parse_usage,
    "anthropic-cost": anthropic.parse_cost_report,
    "anthropic-message": anthropic.parse_message,
    "bedrock-log": bedrock.parse,
    "gemini": gemini.parse,
    "litellm": litellm.parse,
    "otlp": otlp.parse,
    "opencost": opencost.parse,
}


def normalize(source: str, payload: Any, **options: Any) -> ParseResult:
    """Parse `payload` with the parser registered for `source`; options go to that parser
    (e.g. occurred_at= for anthropic-message, provider="gcp.vertex_ai" for gemini, mapping= for otlp).
    Never raises: an unknown source is a reject too."""
    parser = PARSERS.get(source)
    if parser is None:
        return ParseResult(rejects=[Reject("unsupported", f"unknown source {str(source)[:60]!r}; "
                                                          f"known: {', '.join(sorted(PARSERS))}")])
    return parser(payload, **options)


__all__ = ["PARSERS", "normalize", "ParseResult", "Reject", "ProviderCostLine", "OtlpMapping"]
