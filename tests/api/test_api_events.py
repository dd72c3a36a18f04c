"""POST /v1/events: canonical and CloudEvents, per-event results, idempotency, malformed bodies."""
from __future__ import annotations

import json

import pytest

from api_helpers import usage

CE_BATCH = "application/cloudevents-batch+json"


def test_batch_reports_each_event_and_counts_a_redelivery_once(api):
    c = api.client()
    good = usage("ev-1", "rag")
    r = c.post("/v1/events", json=[good, good, {"event_id": "x", "prompt": "secret"}])
    assert r.status_code == 200
    body = r.json()
    assert [x["status"] for x in body["results"]] == ["accepted", "duplicate", "rejected"]
    assert body["results"][2]["reason"] in ("content_field", "missing_field", "unknown_field")
    assert body["accepted"] == 1 and body["rejected"] == 1
    again = c.post("/v1/events", json=good).json()
    assert again["results"][0]["status"] == "duplicate" and again["accepted"] == 0
    dead = api.runtime.thread.call(lambda: api.runtime.store.query("SELECT reason FROM {db}.dead_letters"))
    assert len(dead) == 1  # the rejected one is kept with its reason, not dropped


def test_cloudevents_structured_and_batch_are_idempotent_on_source_and_id(api):
    c = api.client()
    data = usage("unused", "rag")
    del data["event_id"]
    ce = {"specversion": "1.0", "id": "call-42", "source": "//gateway/eu", "type": "dev.costwarden.usage",
          "datacontenttype": "application/json", "data": data}
    r = c.post("/v1/events", content=json.dumps(ce), headers={"Content-Type": "application/cloudevents+json"})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    other = dict(ce, id="call-43")
    bad = dict(ce, id="call-44", specversion="0.3")
    r = c.post("/v1/events", content=json.dumps([ce, other, bad]), headers={"Content-Type": CE_BATCH})
    assert [x["status"] for x in r.json()["results"]] == ["duplicate", "accepted", "rejected"]
    assert "specversion" in r.json()["results"][2]["detail"]


@pytest.mark.parametrize("body, ctype, status, reason", [
    (b"{not json", "application/json", 400, "malformed_json"),
    (b"", "application/json", 400, "empty_body"),
    (b"[]", "application/json", 400, "empty_batch"),
    (b"42", "application/json", 400, "not_an_object"),
    (b"\xff\xfe", "application/json", 400, "malformed_json"),
    (b"{}", "text/plain", 415, "unsupported_media_type"),
    (b"[1]", "application/cloudevents+json", 400, "not_an_object"),
    (b"{}", "application/cloudevents-batch+json", 400, "not_an_array"),
    (b'[{"a": 1}]', "application/json", 422, "not_all_rejected"),
])
def test_malformed_bodies_get_a_precise_4xx(api, body, ctype, status, reason):
    r = api.client().post("/v1/events", content=body, headers={"Content-Type": ctype})
    assert r.status_code == status, r.text
    if status != 422:
        assert r.json()["error"] == reason and r.json()["detail"]
    else:
        assert r.json()["results"][0]["status"] == "rejected"


def test_size_limits(api):
    c = api.client()
    api.runtime.pipeline.settings.api.max_events_per_request = 3
    r = c.post("/v1/events", json=[usage(f"s{i}", "rag") for i in range(4)])
    assert r.status_code == 413 and r.json()["error"] == "too_many_events"
    api.runtime.pipeline.settings.api.max_body_bytes = 2048
    r = c.post("/v1/events", content=b"[" + b" " * 4096 + b"]", headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
