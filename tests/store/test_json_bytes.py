"""The JSON every store insert, journal entry and Kafka value is made of: fast where it can be,
never failing a batch where the fast encoder cannot (the standard library takes over)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

from costwarden.store.values import json_bytes, to_json_value


def test_a_row_encodes_as_the_standard_library_would():
    row = {"occurred_at": datetime(2026, 3, 14, 23, 58, 30, 123456, tzinfo=timezone.utc), "cost_nanos": 13_500,
           "gpu_hours": Decimal("0.000000001"), "tags": {"résumé": "naïve ✓"}, "unpriced": True, "n": None}
    fast = json_bytes(row, to_json_value)
    assert json.loads(fast) == json.loads(json.dumps(row, default=to_json_value))
    assert json.loads(fast)["occurred_at"] == "2026-03-14 23:58:30.123"  # our datetime text, not orjson's


def test_what_the_fast_encoder_refuses_is_still_encoded_exactly():
    lone = {"workflow": "a\ud800b"}  # a lone surrogate (valid JSON text, not valid UTF-8)
    assert json.loads(json_bytes(lone, to_json_value)) == lone
    huge = [2**70, -(2**65)]  # beyond 64 bits
    assert json.loads(json_bytes(huge, to_json_value)) == huge
    assert json.loads(json_bytes({1: "x"}, to_json_value)) == {"1": "x"}  # a non-text key, as json does
