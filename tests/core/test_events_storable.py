"""An event the store cannot hold is rejected when it is parsed ("unstorable", naming the field),
never when its batch is written; and the bounds used are the store's own (checked against chDB)."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from decimal import Decimal
from importlib import resources

import pytest

from costwarden.errors import InvalidEventError, StoreError
from costwarden.events import (LATEST, Limits, UsageEvent, check_storable, json_int, parse_event,
                               storable_text)
from costwarden.storable import UINT64_MAX

GOOD = {"event_id": "e1", "occurred_at": "2026-11-01T10:00:00Z", "source": "gateway", "provider": "openai",
        "model": "gpt-4.1", "tokens": {"input": 10, "output": 7},
        "attribution": {"api_key_id": "k", "tags": {"team": "search", "workflow": "rag"}}}
BIG = Limits(max_tokens_per_class=2**70, max_requests=2**70)  # the configured caps out of the way
FAR = datetime(2106, 2, 7, tzinfo=timezone.utc)  # "now" for events near the store's last second


def patched(**patch) -> dict:
    ev = json.loads(json.dumps(GOOD))
    for path, value in patch.items():
        *parents, leaf = path.split("__")
        cur = ev
        for p in parents:
            cur = cur.setdefault(p, {})
        cur[leaf] = value
    return ev


def reject(payload, limits=BIG, now=None) -> InvalidEventError:
    with pytest.raises(InvalidEventError) as e:
        parse_event(payload, limits, now=now)
    return e.value


SURROGATES = [
    ("model", {"model": "sea\ud800rch"}),
    ("event_id", {"event_id": "e\udc00"}),
    ("provider", {"provider": "open\udbffai"}),
    ("attribution.api_key_id", {"attribution__api_key_id": "k\ud800"}),
    ("attribution.tags['team']", {"attribution__tags__team": "sea\ud800rch"}),
    ("attribution.tags['workflow']", {"attribution__tags__workflow": "\udfff"}),
    ("attribution.tags: key #3", {"attribution__tags__env\ud800": "prod"}),
    ("compute.gpu_type", {"compute__gpu_type": "h100\ud800"}),
]


@pytest.mark.parametrize("field, patch", SURROGATES, ids=[s[0] for s in SURROGATES])
@pytest.mark.parametrize("form", ["dict", "json-escaped", "json-bytes"])
def test_a_lone_surrogate_anywhere_is_unstorable_and_the_field_is_named(field, patch, form):
    ev = patched(**patch)
    payload = {"dict": ev, "json-escaped": json.dumps(ev), "json-bytes": json.dumps(ev).encode()}[form]
    e = reject(payload)
    assert e.reason == "unstorable", e
    assert e.detail.startswith(field) and "surrogate" in e.detail
    assert storable_text(e.detail) == e.detail  # the reason itself can be dead-lettered


def test_text_with_a_raw_lone_surrogate_is_unstorable_not_a_crash():
    e = reject(json.dumps(patched(model="a\ud800b"), ensure_ascii=False))  # str JSON, surrogate unescaped
    assert (e.reason, e.detail.split(":")[0]) == ("unstorable", "model")


@pytest.mark.parametrize("patch, field", [
    ({"tokens__input": 2**64}, "tokens.input"),
    ({"tokens__cache_write_1h": 2**80}, "tokens.cache_write_1h"),
    ({"tokens__output": 2**64, "tokens__reasoning": 2**64}, "tokens.output"),
    ({"requests": 2**64}, "requests"),
])
def test_counts_beyond_uint64_are_unstorable_whatever_the_configured_caps(patch, field):
    e = reject(patched(**patch))
    assert e.reason == "unstorable" and e.detail.startswith(f"{field}: ") and "UInt64" in e.detail
    assert parse_event(patched(tokens__input=UINT64_MAX), BIG).tokens.input == UINT64_MAX


def test_a_5000_digit_count_is_one_unstorable_event_not_a_crash():
    text = json.dumps(patched(tokens__input=1)).replace('"input": 1', '"input": ' + "9" * 5000)
    for payload in (text, text.encode(), json.loads(text, parse_int=json_int)):
        e = reject(payload)
        assert e.reason == "unstorable" and e.detail.startswith("tokens.input: a 5000-digit number")
    e = reject(json.loads(text.replace('"input": 9', '"input": -9'), parse_int=json_int))
    assert e.reason == "negative_value"


def test_json_int_reads_every_integer_literal():
    assert json.loads("[1, -20, 18446744073709551616]", parse_int=json_int) == [1, -20, 2**64]
    big = json.loads("9" * 5000, parse_int=json_int)
    assert isinstance(big, Decimal) and big == Decimal("9" * 5000)


@pytest.mark.parametrize("when", ["2106-02-07T06:28:16Z", "2200-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                  "9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00"])
def test_times_outside_the_rollup_buckets_are_unstorable(when):
    e = reject(patched(occurred_at=when), now=FAR)
    assert e.reason == "unstorable" and e.detail.startswith("occurred_at: ")
    e = reject(patched(occurred_at=when))  # with today's clock: the store's bound comes first too
    assert e.reason == "unstorable"


def test_the_last_storable_second_and_the_epoch_are_accepted_and_1900_stays_absurd():
    assert parse_event(patched(occurred_at="2106-02-07T06:28:15.999Z"), now=FAR).occurred_at < LATEST
    assert parse_event(patched(occurred_at="1970-01-01T00:00:00Z")).occurred_at.year == 1970
    assert reject(patched(occurred_at="1900-01-01T00:00:00Z")).reason == "absurd_value"
    assert reject(patched(occurred_at="2099-01-01T00:00:00Z")).reason == "absurd_value"  # future


@pytest.mark.parametrize("patch", [
    {"model": "a\x00b"}, {"attribution__tags__team": "\x00"}, {"attribution__tags__a\x00b": "c"},
    {"model": "gpt-\U0001F600-\ufffe\uffff"}, {"model": "x" * 256}, {"event_id": "\u00e9" * 256},
    {"provider_cost": {"amount": "-999999999.999999999999"}},
    {"compute": {"gpu_hours": "999999.999999999"}},
])
def test_what_the_store_holds_is_not_rejected(patch):
    ev = parse_event(patched(**patch), BIG)
    check_storable(ev)


def test_an_escaped_surrogate_pair_is_one_character_and_accepted():
    ev = parse_event(b'{"event_id": "e", "occurred_at": "2026-11-01T00:00:00Z", "source": "s", '
                     b'"provider": "p", "model": "\\ud83d\\ude00"}')
    assert ev.model == "\U0001F600"


def test_decimals_wider_than_their_columns_never_get_through():
    for patch in ({"compute": {"gpu_hours": "1e15"}}, {"provider_cost": {"amount": "1e26"}},
                  {"provider_cost": {"amount": "0.0000000000001"}}):
        assert reject(patched(**patch), Limits(max_gpu_hours=Decimal("1e30"))).reason == "invalid_field"
    wide = UsageEvent.model_construct(**{**UsageEvent.model_validate(GOOD).__dict__})
    object.__setattr__(wide, "compute", type("C", (), {"gpu_hours": Decimal("1e15"), "gpu_type": None})())
    with pytest.raises(InvalidEventError, match="compute.gpu_hours"):
        check_storable(wide)


@pytest.mark.parametrize("text, kept", [
    ("plain", "plain"), ("nul\x00 and ctrl\x01", "nul\x00 and ctrl\x01"), ("\u00e9\U0001F600", "\u00e9\U0001F600"),
    ("sea\ud800rch", "sea\ufffdrch"), ("\udc00", "\ufffd"), ("x\ud800", "x\ufffd"),
    ("\ud83d\ude00", "\U0001F600"),  # a pair left as two code points is its character
    ("\ude00\ud83d", "\ufffd\ufffd"),  # reversed: two lone surrogates
])
def test_storable_text_replaces_only_lone_surrogates(text, kept):
    out = storable_text(text)
    assert out == kept
    out.encode("utf-8")


def test_the_bounds_are_the_columns_of_the_migration():
    sql = resources.files("costwarden.store").joinpath("migrations/001_init.sql").read_text()
    events_table = sql.split("CREATE TABLE IF NOT EXISTS {db}.usage_rollup")[0]
    cols = dict(re.findall(r"^\s{4}(\w+)\s+(.+?),?$", events_table, re.M))
    assert cols["gpu_hours"] == "Decimal(24, 9)" and cols["provider_cost"] == "Nullable(Decimal(38, 12))"
    assert cols["occurred_at"] == "DateTime64(3, 'UTC')"
    assert {cols[c] for c in ("requests", "input_tokens", "output_tokens", "reasoning_tokens")} == {"UInt64"}
    assert "bucket DateTime('UTC')" in sql  # the rollups: why 2106-02-07 06:28:15 is the last second


# --- the claims, checked against the store itself (chDB) -----------------------------------

@pytest.fixture
def store(settings):
    from costwarden.store import migrate, open_store

    st = open_store(None, str(settings.data_dir), settings.store.database)
    migrate(st)
    return st


def _row(ev: UsageEvent) -> dict:
    from costwarden.streams.attribution import Attributor, default_rules
    from costwarden.streams.catalogue import PriceCatalogue
    from costwarden.streams.rollup import event_row

    return event_row(ev, PriceCatalogue.default().price(ev), Attributor(default_rules()).attribute(ev), FAR)


def test_chdb_holds_an_event_at_every_bound(store):
    ev = parse_event(patched(occurred_at="2106-02-07T06:28:15.999Z", model="m\x00\U0001F600",
                             tokens__input=UINT64_MAX, attribution__tags__team="t\x00",
                             compute={"gpu_hours": "999999999999999.999999999"},
                             provider_cost={"amount": "999999999.999999999999"}),
                     Limits(max_tokens_per_class=2**64, max_gpu_hours=Decimal("1e15")), now=FAR)
    store.insert("usage_events", [_row(ev)])
    got = store.query("SELECT occurred_at, model, input_tokens, gpu_hours, provider_cost, team "
                      "FROM {db}.usage_events")[0]
    assert got == {"occurred_at": datetime(2106, 2, 7, 6, 28, 15, 999000, tzinfo=timezone.utc),
                   "model": "m\x00\U0001F600", "input_tokens": UINT64_MAX,
                   "gpu_hours": Decimal("999999999999999.999999999"),
                   "provider_cost": Decimal("999999999.999999999999"), "team": "t\x00"}
    day = store.query("SELECT bucket FROM {db}.usage_rollup_day")[0]["bucket"]
    assert day == datetime(2106, 2, 7, tzinfo=timezone.utc)


def test_chdb_past_the_bounds_fails_the_batch_or_keeps_another_value(store):
    """Why each check exists: what the store does with the value the check rejects."""
    ok = _row(UsageEvent.model_validate(GOOD))
    with pytest.raises(StoreError, match="surrogate|escape"):  # the whole batch, good rows too
        store.insert("usage_events", [ok, {**ok, "event_id": "s", "model": "sea\ud800rch"}])
    store.insert("usage_events", [{**ok, "event_id": "u64", "input_tokens": 2**64}])
    assert store.query("SELECT input_tokens FROM {db}.usage_events WHERE event_id = 'u64'")[0]["input_tokens"] == 0
    late = datetime(2200, 1, 1, tzinfo=timezone.utc)
    store.insert("usage_events", [{**ok, "event_id": "y2200", "occurred_at": late, "workflow": "y2200"}])
    assert store.query("SELECT occurred_at FROM {db}.usage_events WHERE event_id = 'y2200'")[0]["occurred_at"] == late
    bucket = store.query("SELECT bucket FROM {db}.usage_rollup_day WHERE workflow = 'y2200'")[0]["bucket"]
    assert bucket == datetime(2106, 2, 7, 6, 28, 15, tzinfo=timezone.utc)  # clamped: a wrong day, silently
    with pytest.raises(StoreError, match="too big|Decimal"):
        store.insert("usage_events", [{**ok, "event_id": "g", "gpu_hours": Decimal("1e15")}])


def test_audio_and_image_counts_past_uint64_and_costs_past_int64_nanos_are_unstorable():
    for cls in ("input_audio", "output_audio", "input_image", "output_image"):
        e = reject(patched(**{f"tokens__{cls}": 2**64}))
        assert (e.reason, e.detail.split(":")[0]) == ("unstorable", f"tokens.{cls}")
    # a provider cost may be what budgets are charged: it must fit Int64 nano-dollars ($9.2 billion)
    e = reject(patched(provider_cost={"amount": "9300000000", "currency": "USD"}))
    assert e.reason == "unstorable" and "provider_cost.amount" in e.detail
    ok = parse_event(patched(provider_cost={"amount": "999999999.999999999", "currency": "USD"}), BIG)
    assert ok.provider_cost.amount == Decimal("999999999.999999999")
