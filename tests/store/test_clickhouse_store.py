"""ClickHouseStore beyond the shared contract: URLs and secrets, retries, lost acknowledgements.

A small forwarding proxy in front of the ClickHouse HTTP test adapter injects the failures a real
network produces (a 502 from a load balancer, an insert whose acknowledgement is lost).
"""
from __future__ import annotations

import http.client
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from costwarden.errors import ConfigError, StoreError
from costwarden.store import migrate
from costwarden.store.clickhouse_store import ClickHouseStore
from costwarden.testing.clickhouse_http import serve_clickhouse_http

pytestmark = pytest.mark.integration


class FlakyProxy:
    """Forwards to `target`; `fail(statement) -> (forward_first, status) | None` injects a failure."""

    def __init__(self, target: str, fail) -> None:
        up = urlsplit(target)
        self.seen: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while (size := int(self.rfile.readline().strip() or b"0", 16)):
                        body += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                statement = body.split(b"\n", 1)[0].decode(errors="replace")
                proxy.seen.append(statement)
                injected = fail(statement)
                if injected is None or injected[0]:
                    conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "host")}
                    conn.request("POST", self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    status, data, rheaders = resp.status, resp.read(), resp.getheaders()
                    conn.close()
                if injected is not None:
                    status, data, rheaders = injected[1], b"Bad Gateway\n", [("Content-Type", "text/plain")]
                self.send_response(status)
                for k, v in rheaders:
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://default:@127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _db() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def test_url_password_is_used_but_never_shown(tmp_path):
    secret = "s3cr:et@/pw"
    with serve_clickhouse_http(tmp_path / "auth", password=secret) as url:
        port = urlsplit(url).port
        store = ClickHouseStore.from_url(f"http://default:s3cr%3Aet%40%2Fpw@127.0.0.1:{port}", _db())
        assert store.query("SELECT 1 AS one") == [{"one": 1}]
        assert "s3cr" not in repr(store) and "s3cr" not in str(store)
        store.close()
        with pytest.raises(StoreError, match="AUTHENTICATION_FAILED") as err:
            ClickHouseStore.from_url(f"http://default:wrong-pw@127.0.0.1:{port}", _db(), backoff_s=0.01)
        assert "wrong-pw" not in str(err.value)


def test_bad_urls_are_config_errors():
    for url in ("clickhouse://host:9000", "http://", "http://host:notaport"):
        with pytest.raises(ConfigError):
            ClickHouseStore.from_url(url)


def test_unreachable_server_is_a_store_error_after_retries():
    with pytest.raises(StoreError, match="connect failed"):
        ClickHouseStore.from_url("http://default:@127.0.0.1:9", _db(), retries=2, backoff_s=0.01)


def test_insert_whose_ack_is_lost_is_retried_and_stored_once(clickhouse_http_url, make_event):
    state = {"lost": 0}

    def lose_first_insert_ack(statement: str):
        if statement.startswith("INSERT INTO") and "usage_events" in statement and state["lost"] == 0:
            state["lost"] += 1
            return (True, 502)  # the insert reached the server; the client sees a 502
        return None

    proxy = FlakyProxy(clickhouse_http_url, lose_first_insert_ack)
    try:
        store = ClickHouseStore.from_url(proxy.url, _db(), backoff_s=0.01)
        migrate(store)
        store.insert("usage_events", [make_event(i) for i in range(1, 21)], dedup_token="flush-7")
        assert state["lost"] == 1
        assert sum(s.startswith("INSERT INTO") and "usage_events" in s for s in proxy.seen) == 2
        assert store.query("SELECT count() AS n FROM {db}.usage_events") == [{"n": 20}]
        assert store.query("SELECT sum(events) AS n FROM {db}.usage_rollup_hour") == [{"n": 20}]
        store.command("DROP DATABASE {db}")
        store.close()
    finally:
        proxy.close()


def test_gateway_errors_are_retried_but_server_errors_are_not(clickhouse_http_url):
    state = {"n": 0}

    def fail_twice(statement: str):
        if statement.startswith("SELECT 42") and state["n"] < 2:
            state["n"] += 1
            return (False, 503)
        return None

    proxy = FlakyProxy(clickhouse_http_url, fail_twice)
    try:
        store = ClickHouseStore.from_url(proxy.url, _db(), backoff_s=0.01)
        assert store.query("SELECT 42 AS x") == [{"x": 42}]
        assert proxy.seen.count("SELECT 42 AS x") == 3
        with pytest.raises(StoreError, match="UNKNOWN_TABLE"):
            store.query("SELECT 7 FROM {db}.missing")
        assert sum("missing" in s for s in proxy.seen) == 1  # a server-side error is final
        store.close()
    finally:
        proxy.close()


def test_an_insert_lands_after_another_process_changed_the_table(clickhouse_http_url):
    """Column types are read once per (table, columns), not before every insert; when another
    process alters the table meanwhile (a migration), the next insert reads them again and lands."""
    db = f"types_{uuid.uuid4().hex[:8]}"
    ours, theirs = ClickHouseStore.from_url(clickhouse_http_url, db), ClickHouseStore.from_url(clickhouse_http_url, db)
    ours.command("CREATE TABLE {db}.t (id String, n Int64) ENGINE = MergeTree ORDER BY id")
    ours.insert("t", [{"id": "a", "n": 1}])
    theirs.command("ALTER TABLE {db}.t MODIFY COLUMN n String")  # not through `ours`: its cache is stale
    ours.insert("t", [{"id": "b", "n": "two"}])
    ours.insert("t", [{"id": "c", "n": "three"}])
    assert ours.query("SELECT id, n FROM {db}.t ORDER BY id") == [
        {"id": "a", "n": "1"}, {"id": "b", "n": "two"}, {"id": "c", "n": "three"}]
