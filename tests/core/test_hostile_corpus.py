"""Bad input never fails its neighbours: the hostile corpus (tests/fixtures/hostile.py) through every
entry point — parse_event, the connectors' normalize, `costwarden ingest`, POST /v1/events,
/v1/litellm and /v1/traces. Each hostile item is dead-lettered (or refused) with its reason;
every good neighbour is stored: the count and the cost of usage_events FINAL are the good ones'."""
from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

TESTS = Path(__file__).parents[1]
sys.path[:0] = [str(TESTS / "fixtures"), str(TESTS / "api")]

import hostile  # noqa: E402
from api_helpers import serve_api  # noqa: E402
from hostile import DUPLICATE, GOOD  # noqa: E402

from costwarden.connectors import normalize  # noqa: E402
from costwarden.errors import InvalidEventError  # noqa: E402
from costwarden.events import parse_event, storable_text  # noqa: E402
from costwarden.components import load_catalogue  # noqa: E402
from costwarden.config import load_settings  # noqa: E402

NOW = datetime.now(timezone.utc)
CORPORA = {"hostile": hostile.canonical(NOW), "months": hostile.months(NOW)}
CATALOGUE = load_catalogue(load_settings())  # as the pipeline prices (unpriced policy included)


def expected_store(events) -> tuple[set[str], int]:
    """(event ids, total cost in nanos) the store must hold: the first event of each id."""
    ids, cost = set(), 0
    for ev in events:
        if ev.event_id not in ids:
            ids.add(ev.event_id)
            cost += CATALOGUE.price(ev).cost_nanos
    return ids, cost


def good_canonical(cases) -> tuple[set[str], int]:
    return expected_store(parse_event(c.payload) for c in cases if c.reason in (GOOD, DUPLICATE))


def rejected(cases, api: bool = False) -> Counter:
    return Counter(c.api_reason() if api else c.reason for c in cases
                   if c.reason not in (GOOD, DUPLICATE) and not (api and c.body))


def stored(store) -> tuple[set[str], int]:
    rows = store.query("SELECT event_id, cost_nanos FROM {db}.usage_events FINAL")
    return {r["event_id"] for r in rows}, sum(r["cost_nanos"] for r in rows)


def dead_letters(store) -> Counter:
    rows = store.query("SELECT reason, detail, payload FROM {db}.dead_letters")
    for r in rows:  # what was stored reads back as storable text
        assert storable_text(r["detail"]) == r["detail"] and storable_text(r["payload"]) == r["payload"]
    return Counter(r["reason"] for r in rows)


# --- pure: parse_event and the connectors ---------------------------------------------------

@pytest.mark.parametrize("case", CORPORA["hostile"], ids=lambda c: c.name)
def test_parse_event_gives_each_case_its_reason(case):
    try:
        parse_event(case.payload)
    except InvalidEventError as e:
        assert e.reason == case.reason, e
        assert storable_text(e.detail) == e.detail  # a reason can always be dead-lettered
        return
    assert case.reason in (GOOD, DUPLICATE)


def _litellm_body(cases) -> bytes:
    return b"[" + b",".join(c.payload for c in cases) + b"]"


def test_litellm_normalize_rejects_each_hostile_record_alone():
    cases = hostile.litellm(NOW)
    r = normalize("litellm", _litellm_body(cases))
    assert Counter(x.reason for x in r.rejects) == rejected(cases)
    assert len(r.events) == sum(c.reason in (GOOD, DUPLICATE) for c in cases)  # no dedupe before the pipeline
    for x in r.rejects:
        assert storable_text(x.detail) == x.detail and storable_text(x.payload) == x.payload
        assert "SECRET" not in x.payload


def test_otlp_normalize_rejects_each_hostile_span_alone():
    body, spans = hostile.otlp(NOW)
    r = normalize("otlp", body)
    assert Counter(x.reason for x in r.rejects) == Counter(f for _, _, f in spans if f not in (GOOD, "skipped"))
    assert {e.event_id.rsplit(":", 1)[1] for e in r.events} == {sid for sid, _, f in spans if f == GOOD}
    for x in r.rejects:
        assert storable_text(x.detail) == x.detail and storable_text(x.payload) == x.payload


# --- costwarden ingest ----------------------------------------------------------------------

@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_cli_ingest_dead_letters_each_hostile_line_and_stores_every_good_one(corpus, settings, tmp_path):
    from click.testing import CliRunner

    from costwarden.cli import cli
    from costwarden.store import open_store

    cases = CORPORA[corpus]
    src = tmp_path / "events.jsonl"
    src.write_bytes(b"\n".join(c.payload for c in cases) + b"\n")
    res = CliRunner().invoke(cli, ["--data-dir", str(settings.data_dir), "ingest", str(src), "--json"],
                             env={"COSTWARDEN_STORE__DATABASE": settings.store.database})
    assert res.exit_code == 0, f"{res.output[-3000:]} {res.exception!r}"
    summary = json.loads(res.stdout)
    assert summary["accepted"] == sum(c.reason == GOOD for c in cases)
    assert summary["duplicates"] == sum(c.reason == DUPLICATE for c in cases)
    assert Counter(summary["dead_lettered"]) == rejected(cases)
    store = open_store(None, str(settings.data_dir), settings.store.database)
    assert stored(store) == good_canonical(cases)
    assert dead_letters(store) == rejected(cases)


# --- the HTTP API ---------------------------------------------------------------------------

@pytest.fixture
def api(settings, tmp_path):
    yield from serve_api(settings, tmp_path)


def _store_of(api):
    rt = api.runtime
    return type("S", (), {"query": staticmethod(lambda sql: rt.thread.call(lambda: rt.store.query(sql)))})()


def _answers(results: list[dict]) -> list[str]:
    return [r["reason"] if r["status"] == "rejected" else
            {"accepted": GOOD, "duplicate": DUPLICATE}.get(r["status"], r["status"]) for r in results]


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_api_events_rejects_each_hostile_item_alone(corpus, api):
    cases = CORPORA[corpus]
    items = [c for c in cases if not c.body]
    c = api.client()
    r = c.post("/v1/events", content=b"[" + b",".join(i.payload for i in items) + b"]",
               headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[-3000:]
    assert _answers(r.json()["results"]) == [i.api_reason() for i in items]
    for case in (c_ for c_ in cases if c_.body):  # not an array item: refused whole, never a 500
        one = c.post("/v1/events", content=case.payload, headers={"Content-Type": "application/json"})
        assert (one.status_code, one.json().get("error")) == (400, case.reason), (case.name, one.text)
    store = _store_of(api)
    assert stored(store) == good_canonical(cases)
    assert dead_letters(store) == rejected(cases, api=True)


def test_api_events_a_5000_digit_number_is_a_4xx_with_its_reason_never_a_500(api):
    c = api.client()
    r = c.post("/v1/events", content=hostile.DIGITS_5000.encode(), headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["error"]) == (400, "not_an_object"), r.text
    one = json.loads(hostile.canonical(NOW)[0].payload)
    one["event_id"] = "huge-alone"
    body = json.dumps(one).replace('"input": 1000', '"input": ' + hostile.DIGITS_5000).encode()
    r = c.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["results"][0]["reason"] == "unstorable" and "5000-digit" in r.json()["results"][0]["detail"]


@pytest.mark.parametrize("ndjson", [False, True], ids=["array", "ndjson"])
def test_api_litellm_rejects_each_hostile_record_alone(ndjson, api):
    cases = hostile.litellm(NOW)
    body = b"\n".join(c.payload for c in cases) if ndjson else _litellm_body(cases)
    ctype = "application/x-ndjson" if ndjson else "application/json"
    r = api.client().post("/v1/litellm", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 200, r.text[-3000:]
    assert _answers(r.json()["results"]) == [c.reason for c in cases]
    good = [e for c in cases if c.reason in (GOOD, DUPLICATE) for e in normalize("litellm", c.payload).events]
    store = _store_of(api)
    assert stored(store) == expected_store(good)
    assert dead_letters(store) == rejected(cases)


def test_api_traces_rejects_each_hostile_span_alone(api):
    body, spans = hostile.otlp(NOW)
    r = api.client().post("/v1/traces", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[-3000:]
    bad = Counter(f for _, _, f in spans if f not in (GOOD, "skipped"))
    assert r.json()["partialSuccess"]["rejectedSpans"] == sum(bad.values())
    store = _store_of(api)
    assert stored(store) == expected_store(normalize("otlp", body).events)
    assert {i.rsplit(":", 1)[1] for i in stored(store)[0]} == {sid for sid, _, f in spans if f == GOOD}
    assert dead_letters(store) == bad
