"""The test broker's KRaft cluster id: never read as an option by `kafka-storage format`
(1 start in 64 used to fail when the random id began with '-')."""
from __future__ import annotations

import base64
import os
import subprocess
import uuid

import pytest

from costwarden.testing import kafka_broker as kb


def test_cluster_ids_never_start_with_a_dash_and_are_kafka_uuids():
    ids = [kb.new_cluster_id() for _ in range(20_000)]  # ~310 would start with '-' without the redraw
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids)
    for i in ids[:2000]:
        assert len(i) == 22 and set(i) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        raw = base64.urlsafe_b64decode(i + "==")
        assert len(raw) == 16 and raw != bytes(16)


def test_an_id_that_would_start_with_a_dash_is_drawn_again(monkeypatch):
    dash = uuid.UUID(bytes=b"\xf8" + bytes(range(1, 16)))  # base64 of 0xF8.. starts with '-'
    assert base64.urlsafe_b64encode(dash.bytes).decode().startswith("-")
    ok = uuid.UUID(bytes=b"\x04" + bytes(range(1, 16)))
    draws = iter([dash, dash, ok])
    monkeypatch.setattr(kb.uuid, "uuid4", lambda: next(draws))
    assert kb.new_cluster_id() == base64.urlsafe_b64encode(ok.bytes).decode().rstrip("=")


def test_the_id_is_passed_as_one_token(tmp_path):
    args = kb.storage_format_args("-abc", tmp_path / "server.properties")
    assert args[0] == "--cluster-id=-abc" and "-t" not in args


@pytest.mark.kafka
@pytest.mark.integration
def test_storage_tool_formats_with_an_id_starting_with_a_dash():
    """The real StorageTool (Kafka's jars, as the broker fixture fetches them) takes `--cluster-id=-...`."""
    try:
        java, libs = kb._java(), kb.fetch_kafka_libs()
    except kb.BrokerUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(str(e), pytrace=False)
        pytest.skip(str(e))
    broker = kb.KafkaBroker(libs_dir=libs)
    try:
        props = broker.work_dir / "server.properties"
        props.write_text(broker._properties())
        cid = "-" + kb.new_cluster_id()[1:]
        p = subprocess.run([java, "-cp", f"{libs}/*", *broker._log_flags(), "kafka.tools.StorageTool", "format",
                            *kb.storage_format_args(cid, props)], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-1500:]
        meta = (broker.work_dir / "data" / "meta.properties").read_text()
        assert f"cluster.id={cid}" in meta
    finally:
        broker.close()
