"""connectors/otlp_proto.py: binary OTLP gives exactly the events of its OTLP/JSON form (one parser,
one event id per span whichever encoding carried it), and bad bytes are one precise reject."""
import base64
import json
from decimal import Decimal

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costwarden.connectors import normalize
from costwarden.connectors.otlp import parse as parse_json
from costwarden.connectors.otlp_proto import decode, parse


def to_protobuf(otlp_json: bytes | dict) -> ExportTraceServiceRequest:
    """OTLP/JSON -> the binary message (proto3 JSON reads ids as base64: hex ids are converted)."""
    doc = json.loads(otlp_json) if isinstance(otlp_json, bytes) else json.loads(json.dumps(otlp_json))
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    if s.get(k):
                        s[k] = base64.b64encode(bytes.fromhex(s[k])).decode()
    return json_format.ParseDict(doc, ExportTraceServiceRequest())


def test_protobuf_and_json_give_the_same_events(fx):
    body = fx("otlp_traces.json")
    from_json = parse_json(body)
    from_pb = parse(to_protobuf(body).SerializeToString())
    assert from_pb.rejects == [] and len(from_pb.events) == 2
    assert [e.model_dump() for e in from_pb.events] == [e.model_dump() for e in from_json.events]
    assert from_pb.events[0].event_id == "otlp:5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174"
    assert "SECRET" not in repr(from_pb)


def test_json_ids_in_upper_case_give_the_same_event_ids(fx):
    doc = json.loads(fx("otlp_traces.json"))
    for ss in doc["resourceSpans"][0]["scopeSpans"]:
        for s in ss["spans"]:
            s["traceId"], s["spanId"] = s["traceId"].upper(), s["spanId"].upper()
    upper = parse_json(doc).events
    assert [e.event_id for e in upper] == [e.event_id for e in parse_json(fx("otlp_traces.json")).events]
    assert upper[0].attribution.trace_id == "5b8efff798038103d269b633813fc60c"


def test_only_spans_with_usage_are_carried_over_with_the_json_value_types(fx):
    req = to_protobuf(fx("otlp_traces.json"))
    span = req.resource_spans[0].scope_spans[0].spans[0]
    extra = span.attributes.add(key="gen_ai.request.temperature")
    extra.value.double_value = 0.2
    kv = span.attributes.add(key="app.blob")
    kv.value.kvlist_value.values.add(key="k").value.bytes_value = b"\x00\x01"
    doc = decode(req.SerializeToString())
    scopes = doc["resourceSpans"][0]["scopeSpans"]
    assert [s["name"] for ss in scopes for s in ss["spans"]] == ["chat gpt-4o", "chat claude"]  # the HTTP span: no usage
    attrs = {a["key"]: a["value"] for a in scopes[0]["spans"][0]["attributes"]}
    assert attrs["gen_ai.usage.input_tokens"] == {"intValue": "1850"}  # int64 as a decimal string
    assert attrs["gen_ai.request.temperature"] == {"doubleValue": Decimal("0.2")}  # as the JSON path reads it
    assert attrs["app.blob"] == {"kvlistValue": {"values": [{"key": "k", "value": {"bytesValue": "AAE="}}]}}
    assert scopes[0]["spans"][0]["startTimeUnixNano"] == "1748772000123456000"


def test_bad_bytes_are_one_precise_reject():
    for body in (b"\x0a\x05\x0a\x03", b'{"resourceSpans": []}', b"\x0a\xff\xff\xff\xff\x0f"):
        r = parse(body)
        assert [x.reason for x in r.rejects] == ["malformed_protobuf"], body
        assert r.rejects[0].detail.startswith("not an ExportTraceServiceRequest")
    assert parse(b"").events == parse(b"").rejects == []  # an empty request
    assert parse("text").rejects[0].reason == "not_an_object"


def test_a_span_without_ids_or_time_is_rejected_as_in_json(fx):
    req = to_protobuf(fx("otlp_traces.json"))
    span = req.resource_spans[0].scope_spans[0].spans[0]
    span.ClearField("span_id")
    claude = req.resource_spans[0].scope_spans[1].spans[0]
    claude.start_time_unix_nano = 0
    r = parse(req)
    assert [x.reason for x in r.rejects] == ["missing_field", "missing_field"]
    assert "startTimeUnixNano" in r.rejects[1].detail
    deep = ExportTraceServiceRequest()
    v = deep.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    value = v.attributes.add(key="gen_ai.usage.input_tokens").value
    for _ in range(200):  # nested past the decoder's depth limit: the whole request is unreadable
        value = value.array_value.values.add()
    value.int_value = 1
    assert parse(deep.SerializeToString()).rejects[0].reason == "malformed_protobuf"
    assert normalize("otlp", decode(req.SerializeToString())).rejects[0].reason == "missing_field"


def test_any_bytes_give_a_result_never_an_exception(fx):
    from hypothesis import given, settings, strategies as st

    good = to_protobuf(fx("otlp_traces.json")).SerializeToString()

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=512), st.integers(0, len(good) - 1), st.binary(min_size=1, max_size=4))
    def check(noise, at, patch):
        for body in (noise, good[:at] + patch + good[at + len(patch):], good[:at]):
            r = parse(body)  # never raises: events, or rejects each with its reason
            assert all(x.reason and x.detail for x in r.rejects)

    check()
