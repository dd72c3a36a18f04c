"""POST /v1/traces on a distributed API replica (`costwarden api --mode distributed`), fed by the
OpenTelemetry SDK's default exporter with gzip: the spans go through Kafka and a real
`costwarden worker` into ClickHouse with the right cost, and a re-sent batch counts once.
Before, the replica produced `null` for each span to the raw topic (the worker dead-lettered
them as not_an_object) and then answered 500 (it reports no cost, and the route priced None)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "distributed"))

import dist_harness as h  # noqa: E402
from test_api_otlp_clients import CLAUDE_NANOS, GPT_NANOS, RecordingSession, recorded_spans  # noqa: E402

pytestmark = [pytest.mark.kafka, pytest.mark.integration]


def test_sdk_exporter_into_a_distributed_replica_reaches_the_store_once(kafka_broker, clickhouse_url, tmp_path,
                                                                         monkeypatch):
    from costwarden.api import ApiServer, DistributedRuntime, create_app, create_token
    from costwarden.config import Settings

    env = h.worker_env(kafka_broker.bootstrap, clickhouse_url, h.unique("otlpd"), tmp_path / "w", h.unique("cwotlp"))
    worker = h.Worker(env, tmp_path / "worker.log").start()
    rt = srv = exporter = None
    try:
        worker.metrics_port()
        with monkeypatch.context() as m:
            for k, v in env.items():
                if k.startswith("COSTWARDEN_") and k != "COSTWARDEN_KAFKA__METRICS_PORT":
                    m.setenv(k, v)
            m.setenv("COSTWARDEN_DATA_DIR", str(tmp_path / "api"))
            rt = DistributedRuntime.open(Settings())
        token = rt.thread.call(lambda: create_token(rt.store, "otel-bot", "gateway"))
        srv = ApiServer(create_app(rt)).start()
        session = RecordingSession()
        exporter = OTLPSpanExporter(endpoint=f"{srv.url}/v1/traces", compression=Compression.Gzip, session=session,
                                    headers={"Authorization": f"Bearer {token}"})
        spans, ids = recorded_spans("dist-otel")
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        assert session.sent[-1]["status"] == 200 and session.sent[-1]["headers"]["Content-Encoding"] == "gzip"
        assert exporter.export(spans) is SpanExportResult.SUCCESS  # a re-sent batch

        def stored():
            return rt.thread.call(lambda: rt.store.query(
                "SELECT event_id, cost_nanos FROM {db}.usage_events FINAL WHERE workflow = 'dist-otel'"))
        h.wait_for(lambda: len(stored()) == 2, 60, 0.2, "the two GenAI spans stored by the worker")
        got = {r["event_id"]: r["cost_nanos"] for r in stored()}
        assert set(got) == {f"otlp:{t}:{s}" for t, s in ids}
        assert sorted(got.values()) == [GPT_NANOS, CLAUDE_NANOS]
        dead = rt.thread.call(lambda: rt.store.query("SELECT reason FROM {db}.dead_letters"))
        assert dead == []  # the worker parsed every record the replica produced
    finally:
        if exporter is not None:
            exporter.shutdown()
        if srv is not None:
            srv.stop()
        if rt is not None:
            rt.close()
        worker.kill()
