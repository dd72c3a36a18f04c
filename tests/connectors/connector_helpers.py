"""Hand pricing from list prices and token-class checks for the connector tests (no pricing module)."""
from __future__ import annotations

from decimal import Decimal
M = Decimal(1_000_000)

# USD per 1M tokens from usage-formats.md (standard tier): input, cached input, 5m write, 1h write, output.
LIST = {
    "gpt-4o": ("2.50", "1.25", None, None, "10.00"),
    "gpt-4o-mini": ("0.15", "0.075", None, None, "0.60"),
    "gpt-4.1": ("2.00", "0.50", None, None, "8.00"),
    "o3": ("2.00", "0.50", None, None, "8.00"),
    "o4-mini": ("1.10", "0.275", None, None, "4.40"),
    "gpt-5": ("1.25", "0.125", None, None, "10.00"),
    "claude-sonnet-4": ("3.00", "0.30", "3.75", "6.00", "15.00"),
    "claude-haiku-4.5": ("1.00", "0.10", "1.25", "2.00", "5.00"),
    "claude-3.5-haiku": ("0.80", "0.08", "1.00", "1.60", "4.00"),
    "claude-opus-4.5": ("5.00", "0.50", "6.25", "10.00", "25.00"),
    "gemini-2.5-pro": ("1.25", "0.125", None, None, "10.00"),
    "gemini-2.5-pro>200k": ("2.50", "0.25", None, None, "15.00"),
    "gemini-2.5-flash": ("0.30", "0.03", None, None, "2.50"),
}


def hand_cost(price_key: str, tokens) -> Decimal:
    """Dollars for an event's tokens at list prices; reasoning is inside output and not priced again."""
    i, c, w5, w1h, o = LIST[price_key]
    total = (tokens.input * Decimal(i) + tokens.cache_read * Decimal(c) + tokens.output * Decimal(o)) / M
    if tokens.cache_write or tokens.cache_write_1h:
        total += (tokens.cache_write * Decimal(w5) + tokens.cache_write_1h * Decimal(w1h)) / M
    return total


def assert_disjoint(tokens) -> None:
    assert min(tokens.input, tokens.cache_read, tokens.cache_write, tokens.cache_write_1h, tokens.output) >= 0
    assert tokens.reasoning <= tokens.output
