"""POST /v1/traces as real OpenTelemetry clients send it (issue 10, item 5): the OpenTelemetry
Python SDK with its default exporter (opentelemetry-exporter-otlp-proto-http: binary protobuf),
configured only through the OTEL_EXPORTER_OTLP_* variables, then with gzip and deflate; the
OTLP/JSON encoding (the SDK's own ExportTraceServiceRequest, written with the proto's json_format
and the OTLP ids in hex), plain and gzip; answers in the request's encoding; precise 4xx for bad
bodies, 413 for a zip bomb; and a restarted `costwarden serve` loses no span (the exporter's
retries deliver the batch sent while it was down)."""
from __future__ import annotations

import base64
import gzip
import json
import sys
import threading
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import requests
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

PB = "application/x-protobuf"
# every span starts on 2025-06-15 12:00 UTC (+ n ms): one report period whatever the time zone
T0 = int(datetime(2025, 6, 15, 12, tzinfo=timezone.utc).timestamp() * 1e9)
PERIOD = "2025-06"
GPT_NANOS, CLAUDE_NANOS = 7_545_000, 24_075_000  # the costs of the two GenAI calls below (see test_api_sources.py)


class RecordingSession(requests.Session):
    """The exporter's HTTP session, recording what it sent and how each attempt ended."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict] = []

    def send(self, request, **kw):
        rec = {"headers": requests.structures.CaseInsensitiveDict(request.headers), "body": request.body or b""}
        self.sent.append(rec)
        try:
            r = super().send(request, **kw)
        except requests.RequestException as e:
            rec["error"] = type(e).__name__
            raise
        rec["status"], rec["response"], rec["content_type"] = r.status_code, r.content, r.headers.get("content-type")
        return r


def genai_trace(tracer, workflow: str, n: int = 1, t0: int = T0, secret: bool = False) -> list[tuple[str, str]]:
    """An HTTP server span (no usage: skipped) around `n` OpenAI chat spans and one Anthropic span
    (old gen_ai.system name, cache creation, reasoning), as GenAI instrumentations write them;
    the (trace_id, span_id) hex pairs of the GenAI spans."""
    ids = []
    with tracer.start_as_current_span("POST /answer", start_time=t0, attributes={"http.request.method": "POST"}):
        for i in range(n):
            attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                     "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
                     "gen_ai.usage.input_tokens": 1850, "gen_ai.usage.cache_read.input_tokens": 1024,
                     "gen_ai.usage.output_tokens": 420, "gen_ai.workflow.name": workflow,
                     "gen_ai.request.temperature": 0.2, "gen_ai.request.stop_sequences": ["END"]}
            if secret:
                attrs["gen_ai.input.messages"] = '[{"role":"user","content":"SECRET-PROMPT"}]'
            with tracer.start_as_current_span("chat gpt-4o", start_time=t0 + 1_000_000 * (i + 1),
                                              attributes=attrs) as s:
                ids.append(_ids(s))
        with tracer.start_as_current_span("chat claude", start_time=t0 + 500_000_000, attributes={
                "gen_ai.system": "anthropic", "gen_ai.request.model": "claude-sonnet-4-5",
                "gen_ai.usage.input_tokens": 12000, "gen_ai.usage.cache_read.input_tokens": 9000,
                "gen_ai.usage.cache_creation.input_tokens": 2500, "gen_ai.usage.output_tokens": 700,
                "gen_ai.usage.reasoning.output_tokens": 400, "gen_ai.workflow.name": workflow,
                "app.team": "support"}) as s:
            ids.append(_ids(s))
    return ids


def _ids(span) -> tuple[str, str]:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def provider(exporter, batch: bool = True) -> TracerProvider:
    p = TracerProvider(resource=Resource.create({"service.name": "rag-api", "app.team": "search"}))
    p.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return p


def recorded_spans(workflow: str, **kw):
    """Finished SDK spans (ReadableSpan) of one genai_trace, to hand to an exporter ourselves."""
    mem = InMemorySpanExporter()
    p = provider(mem, batch=False)
    ids = genai_trace(p.get_tracer("test"), workflow, **kw)
    p.shutdown()
    return mem.get_finished_spans(), ids


def otlp_json(spans, upper: bool = False) -> bytes:
    """The SDK's ExportTraceServiceRequest in the OTLP/JSON encoding: proto3 JSON (json_format)
    with traceId / spanId / parentSpanId as hex instead of base64, as the specification says."""
    doc = json_format.MessageToDict(encode_spans(spans))
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in s:
                        h = base64.b64decode(s[k]).hex()
                        s[k] = h.upper() if upper else h
    return json.dumps(doc).encode()


def rows(api, sql: str) -> list[dict]:
    return api.runtime.thread.call(lambda: api.runtime.store.query(sql))


def events(api, workflow: str) -> dict[str, dict]:
    got = rows(api, "SELECT event_id, model, team, input_tokens, cache_read_tokens, cache_write_tokens, "
                    "output_tokens, reasoning_tokens, cost_nanos, source FROM {db}.usage_events FINAL "
                    f"WHERE workflow = '{workflow}'")
    return {r["event_id"]: r for r in got}


def assert_trace_stored(api, workflow: str, ids, n_openai: int = 1) -> None:
    got = events(api, workflow)
    assert set(got) == {f"otlp:{t}:{s}" for t, s in ids}, got  # the SDK's own ids; the HTTP span skipped
    by_model = {}
    for r in got.values():
        by_model.setdefault(r["model"], []).append(r)
    gpt, (claude,) = by_model["gpt-4o-2024-08-06"], by_model["claude-sonnet-4-5"]
    assert len(gpt) == n_openai
    assert {(r["input_tokens"], r["cache_read_tokens"], r["output_tokens"], r["cost_nanos"], r["team"])
            for r in gpt} == {(826, 1024, 420, GPT_NANOS, "search")}  # team from the resource
    assert (claude["input_tokens"], claude["cache_read_tokens"], claude["cache_write_tokens"],
            claude["output_tokens"], claude["reasoning_tokens"], claude["cost_nanos"], claude["team"]) == \
        (500, 9000, 2500, 700, 400, CLAUDE_NANOS, "support")  # the span's own attribute wins
    assert {r["source"] for r in got.values()} == {"otlp"}


# --- the SDK's default exporter --------------------------------------------------------------

def test_sdk_default_exporter_from_env_alone_protobuf_spans_become_priced_events(api, monkeypatch):
    """OTLPSpanExporter() with no arguments: endpoint and the bearer token from the environment,
    protocol http/protobuf (its only one), no compression; BatchSpanProcessor as documented."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{api.url}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{api.tokens['gateway']}")
    for var in ("OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        monkeypatch.delenv(var, raising=False)
    session = RecordingSession()
    p = provider(OTLPSpanExporter(session=session))
    try:
        ids = genai_trace(p.get_tracer("opentelemetry.instrumentation.openai_v2"), "sdk-default", n=2)
        assert p.force_flush(10_000)
    finally:
        p.shutdown()
    assert_trace_stored(api, "sdk-default", ids, n_openai=2)
    (sent,) = session.sent  # one export, accepted at the first attempt
    assert sent["headers"]["Content-Type"] == PB and "Content-Encoding" not in sent["headers"]
    assert sent["status"] == 200 and sent["content_type"] == PB
    resp = ExportTraceServiceResponse.FromString(sent["response"])
    assert not resp.HasField("partial_success")  # full success leaves it unset (OTLP)
    # the same bytes again (an exporter's retry after a lost answer): counted once
    again = api.client().post("/v1/traces", content=sent["body"], headers={"Content-Type": PB})
    assert again.status_code == 200 and again.headers["content-type"] == PB
    total = rows(api, "SELECT sum(cost_nanos) AS m, count() AS n FROM {db}.usage_events FINAL")[0]
    assert (total["n"], total["m"]) == (3, 2 * GPT_NANOS + CLAUDE_NANOS)


@pytest.mark.parametrize("compression", [Compression.Gzip, Compression.Deflate])
def test_sdk_exporter_with_compression(api, compression):
    session = RecordingSession()
    exporter = OTLPSpanExporter(endpoint=f"{api.url}/v1/traces", compression=compression, session=session,
                                headers={"Authorization": f"Bearer {api.tokens['gateway']}"})
    spans, ids = recorded_spans(f"sdk-{compression.value}")
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert_trace_stored(api, f"sdk-{compression.value}", ids)
    (sent,) = session.sent
    assert sent["headers"]["Content-Encoding"] == compression.value
    magic = b"\x1f\x8b" if compression is Compression.Gzip else b"\x78"
    assert sent["body"].startswith(magic) and sent["status"] == 200


# --- the OTLP/JSON encoding, and one event per span whichever encoding carried it ------------

def test_otlp_json_plain_and_gzip_and_the_same_spans_as_protobuf_count_once(api):
    c = api.client()
    spans, ids = recorded_spans("json-plain")
    r = c.post("/v1/traces", content=otlp_json(spans), headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json() == {} and r.headers["content-type"] == "application/json"
    assert_trace_stored(api, "json-plain", ids)

    gz_spans, gz_ids = recorded_spans("json-gzip")
    r = c.post("/v1/traces", content=gzip.compress(otlp_json(gz_spans)),
               headers={"Content-Type": "application/json; charset=utf-8", "Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.json() == {}
    assert_trace_stored(api, "json-gzip", gz_ids)
    df_spans, df_ids = recorded_spans("json-deflate")
    r = c.post("/v1/traces", content=zlib.compress(otlp_json(df_spans)),
               headers={"Content-Type": "application/json", "Content-Encoding": "deflate"})
    assert r.status_code == 200
    assert_trace_stored(api, "json-deflate", df_ids)

    before = rows(api, "SELECT count() AS n, sum(cost_nanos) AS m FROM {db}.usage_events FINAL")[0]
    # the spans sent as JSON, now as protobuf by the SDK exporter, and as JSON with upper-case hex ids
    exporter = OTLPSpanExporter(endpoint=f"{api.url}/v1/traces",
                                headers={"Authorization": f"Bearer {api.tokens['gateway']}"})
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    r = c.post("/v1/traces", content=otlp_json(gz_spans, upper=True), headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    after = rows(api, "SELECT count() AS n, sum(cost_nanos) AS m FROM {db}.usage_events FINAL")[0]
    assert after == before == {"n": 6, "m": 3 * (GPT_NANOS + CLAUDE_NANOS)}


# --- partial success ------------------------------------------------------------------------

def test_a_rejected_span_is_a_partial_success_in_the_request_encoding(api):
    spans, ids = recorded_spans("partial", secret=True)
    req = encode_spans(spans)
    bad = next(s for s in req.resource_spans[0].scope_spans[0].spans if s.name == "chat gpt-4o")
    for kv in bad.attributes:
        if kv.key == "gen_ai.usage.output_tokens":
            kv.value.int_value = -3
    c = api.client()
    r = c.post("/v1/traces", content=req.SerializeToString(), headers={"Content-Type": PB})
    assert r.status_code == 200 and r.headers["content-type"] == PB
    ps = ExportTraceServiceResponse.FromString(r.content).partial_success
    assert ps.rejected_spans == 1 and ps.error_message.startswith("negative_value: gen_ai.usage.output_tokens=-3")
    assert "SECRET" not in ps.error_message
    got = events(api, "partial")
    assert [x["model"] for x in got.values()] == ["claude-sonnet-4-5"]  # the good span of the batch is stored
    dead = rows(api, "SELECT reason, payload FROM {db}.dead_letters")
    assert [d["reason"] for d in dead] == ["negative_value"]
    assert bad.span_id.hex() in dead[0]["payload"] and "SECRET" not in dead[0]["payload"]
    # the same batch as OTLP/JSON: the JSON ExportTraceServiceResponse
    doc = json_format.MessageToDict(req)
    for s in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        s["traceId"], s["spanId"] = base64.b64decode(s["traceId"]).hex(), base64.b64decode(s["spanId"]).hex()
    r = c.post("/v1/traces", json=doc)
    assert r.status_code == 200 and r.json()["partialSuccess"]["rejectedSpans"] == 1


# --- bad bodies -----------------------------------------------------------------------------

def _status(r: httpx.Response) -> tuple[str, str]:
    """(ErrorInfo.reason, Status.message) of a protobuf error answer."""
    assert r.headers["content-type"] == PB, r.text
    st = status_pb2.Status.FromString(r.content)
    info = error_details_pb2.ErrorInfo()
    assert st.details[0].Unpack(info)
    return info.reason, st.message


@pytest.mark.parametrize("body, reason", [
    (b"\x0a\x05\x0a\x03\x0a", "malformed_protobuf"),     # a nested message cut short
    (b'{"resourceSpans": []}', "malformed_protobuf"),    # JSON sent as protobuf
    (b"\x0a\xff\xff\xff\xff\x0f", "malformed_protobuf"),  # a length past the end
])
def test_malformed_protobuf_is_a_400_status_with_the_reason(api, body, reason):
    r = api.client().post("/v1/traces", content=body, headers={"Content-Type": PB})
    assert r.status_code == 400
    got, message = _status(r)
    assert got == reason and message.startswith(f"{reason}: not an ExportTraceServiceRequest")
    assert rows(api, "SELECT count() AS n FROM {db}.usage_events")[0]["n"] == 0


def test_empty_protobuf_request_is_a_success(api):
    r = api.client().post("/v1/traces", content=b"", headers={"Content-Type": PB})  # OTLP: SHOULD succeed
    assert r.status_code == 200 and ExportTraceServiceResponse.FromString(r.content) == ExportTraceServiceResponse()


def test_bad_compression_and_unknown_types_and_codings(api):
    c = api.client()
    spans, _ = recorded_spans("bad-bodies")
    pb = encode_spans(spans).SerializeToString()
    r = c.post("/v1/traces", content=gzip.compress(pb)[:-12], headers={"Content-Type": PB, "Content-Encoding": "gzip"})
    assert r.status_code == 400 and _status(r)[0] == "malformed_compression"
    r = c.post("/v1/traces", content=b"not gzip at all", headers={"Content-Type": "application/json",
                                                                  "Content-Encoding": "gzip"})
    assert r.status_code == 400 and r.json()["error"] == "malformed_compression"
    assert r.json()["code"] == 3 and r.json()["message"].startswith("malformed_compression: gzip")  # a JSON Status too
    r = c.post("/v1/traces", content=pb, headers={"Content-Type": PB, "Content-Encoding": "br"})
    assert r.status_code == 415 and _status(r)[0] == "unsupported_content_encoding"
    assert "gzip, deflate" in _status(r)[1]
    r = c.post("/v1/traces", content=pb, headers={"Content-Type": "application/grpc"})
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    assert "application/x-protobuf" in r.json()["detail"] and "application/json" in r.json()["detail"]
    assert "http/json" not in r.text  # the old hint, which changes nothing for Python, is gone
    # x-gzip, and gzip applied twice (undone last-first), are read
    r = c.post("/v1/traces", content=gzip.compress(gzip.compress(pb)),
               headers={"Content-Type": PB, "Content-Encoding": "x-gzip, gzip"})
    assert r.status_code == 200, r.content
    assert len(events(api, "bad-bodies")) == 2


def test_a_zip_bomb_is_a_413_once_inflated_past_the_body_limit(api):
    limit = api.runtime.settings.api.max_body_bytes  # 5 MiB by default
    bomb = gzip.compress(b"\x00" * (64 * 1024 * 1024), 9)  # 64 MiB of zeros in ~64 KB
    assert len(bomb) < limit // 10
    c = api.client()
    for ctype in (PB, "application/json"):
        t0 = time.monotonic()
        r = c.post("/v1/traces", content=bomb, headers={"Content-Type": ctype, "Content-Encoding": "gzip"})
        assert r.status_code == 413, r.content[:200]
        assert time.monotonic() - t0 < 2  # inflating stops at the limit
        reason, message = _status(r) if ctype == PB else (r.json()["error"], r.json()["detail"])
        assert reason == "body_too_large" and f"past the limit of {limit} bytes" in message
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate (no zlib header) is read too
    r = c.post("/v1/traces", content=raw.compress(b" " * (limit + 1)) + raw.flush(),
               headers={"Content-Type": "application/json", "Content-Encoding": "deflate"})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    # up to the limit is fine: a JSON body padded with spaces to exactly `limit` bytes once inflated
    spans, ids = recorded_spans("near-limit")
    doc = otlp_json(spans)
    padded = doc + b" " * (limit - len(doc))
    r = c.post("/v1/traces", content=gzip.compress(padded), headers={"Content-Type": "application/json",
                                                                     "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert_trace_stored(api, "near-limit", ids)


# --- a restarted server loses nothing ---------------------------------------------------------

def _serve_process(tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "sdk"))
    try:
        from sdk_helpers import ServeProcess
    finally:
        sys.path.pop(0)
    return ServeProcess(tmp_path)


def _spend(client: httpx.Client) -> dict[str, tuple[int, int]]:
    r = client.get("/v1/reports/spend", params={"by": "workflow", "period": PERIOD, "compare": "false"})
    assert r.status_code == 200, r.text
    return {x["workflow"]: (x["requests"], x["cost_nanos"]) for x in r.json()["rows"]}


def test_a_restarted_serve_loses_no_span_the_exporter_retries_until_it_is_back(tmp_path):
    srv = _serve_process(tmp_path)
    gw_token, viewer_token = srv.token("gateway"), srv.token("viewer")
    srv.start()
    session = RecordingSession()
    exporter = OTLPSpanExporter(endpoint=f"{srv.url}/v1/traces", headers={"Authorization": f"Bearer {gw_token}"},
                                timeout=60, session=session)
    viewer = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {viewer_token}"}, timeout=10)
    try:
        before, _ = recorded_spans("before-restart")
        assert exporter.export(before) is SpanExportResult.SUCCESS
        assert _spend(viewer)["before-restart"] == (2, GPT_NANOS + CLAUDE_NANOS)

        srv.stop()
        during, _ = recorded_spans("during-restart")
        outcome: list[SpanExportResult] = []
        worker = threading.Thread(target=lambda: outcome.append(exporter.export(during)))
        worker.start()
        deadline = time.monotonic() + 10
        while not any(s.get("error") for s in session.sent[1:]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(s.get("error") for s in session.sent[1:]), "the export never met the stopped server"
        srv.start()  # same data dir, same port
        worker.join(60)
        assert outcome == [SpanExportResult.SUCCESS]
        attempts = session.sent[1:]
        assert attempts[-1]["status"] == 200 and len(attempts) >= 2  # refused while down, then delivered

        # and the batch from before the restart, sent again (a retry whose answer was lost): once
        assert exporter.export(before) is SpanExportResult.SUCCESS
        spend = _spend(viewer)
        assert spend["before-restart"] == spend["during-restart"] == (2, GPT_NANOS + CLAUDE_NANOS)
    finally:
        exporter.shutdown()
        viewer.close()
        srv.kill()
