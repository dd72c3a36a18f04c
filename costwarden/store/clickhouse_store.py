"""ClickHouseStore: a ClickHouse server over HTTP through clickhouse-connect (distributed mode).

Same DDL, SQL and value contract as ChdbStore (see costwarden/store/base.py). Inserts are
column-oriented Native blocks; a batch with a `dedup_token` is stored once however often it is
retried, in the raw table and in the materialized rollups. Transient failures (connection errors,
HTTP 5xx without a ClickHouse error, ClickHouse's own transient codes) are retried with backoff;
everything else surfaces at once as StoreError carrying the server's message. The password is
never logged, repr'd or put in an error.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import date, datetime, timezone
from typing import Any, Callable, Sequence, TypeVar
from urllib.parse import unquote, urlsplit
from uuid import UUID

from costwarden.errors import ConfigError, StoreError
from costwarden.store.base import Row
from costwarden.store.values import convert_column, to_json_value

log = logging.getLogger(__name__)
T = TypeVar("T")

# ClickHouse error codes worth another try: timeouts, network, overload, too many parts, Keeper.
TRANSIENT_CODES = frozenset({3, 159, 160, 164, 202, 203, 209, 210, 236, 241, 242, 252, 285, 319, 425, 999})


class ClickHouseStore:
    def __init__(self, host: str, port: int, username: str = "default", password: str = "",
                 database: str = "costwarden", secure: bool = False, retries: int = 4,
                 backoff_s: float = 0.2, connect_timeout_s: float = 10, send_receive_timeout_s: float = 300) -> None:
        self.host, self.port, self.username, self.secure = host, port, username, secure
        self.database = database
        self.retries = retries
        self.backoff_s = backoff_s
        self._password = password
        self._timeouts = (connect_timeout_s, send_receive_timeout_s)
        # (table, column names) -> their ClickHouse types: without them every insert first asks the
        # server for the table's structure, one more round trip (the slowest of a small commit)
        self._types: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._client = self._retry("connect", self._connect)
        self._retry("create database", lambda: self._client.command(f"CREATE DATABASE IF NOT EXISTS {database}"))

    @classmethod
    def from_url(cls, url: str, database: str = "costwarden", **kw: Any) -> "ClickHouseStore":
        """`http://user:password@host:8123` (or https://, default ports 8123 / 8443)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"ClickHouse URL must be http(s)://[user:password@]host[:port], got scheme "
                              f"{parts.scheme!r} host {parts.hostname!r}")
        secure = parts.scheme == "https"
        try:
            port = parts.port or (8443 if secure else 8123)
        except ValueError as e:
            raise ConfigError(f"ClickHouse URL has a bad port: {e}") from None
        return cls(parts.hostname, port, unquote(parts.username or "default"), unquote(parts.password or ""),
                   database, secure=secure, **kw)

    def __repr__(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"ClickHouseStore({scheme}://{self.username}@{self.host}:{self.port}, database={self.database!r})"

    def _connect(self):
        import clickhouse_connect

        return clickhouse_connect.get_client(
            host=self.host, port=self.port, username=self.username, password=self._password,
            secure=self.secure, compress=False, connect_timeout=self._timeouts[0],
            send_receive_timeout=self._timeouts[1], autogenerate_session_id=False,
            show_clickhouse_errors="scrub")

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        from clickhouse_connect.driver.exceptions import Error, OperationalError

        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except Error as e:
                transient = isinstance(e, OperationalError) or e.code in TRANSIENT_CODES or (
                    e.code is None and "HTTP status 5" in str(e))
                if not transient or attempt == self.retries:
                    raise StoreError(f"ClickHouse {what} failed: {_message(e)}") from None
                log.warning("ClickHouse %s failed (attempt %d of %d), retrying in %.1fs: %s",
                            what, attempt + 1, self.retries + 1, delay, _message(e))
            except (TypeError, ValueError) as e:  # a value the column type cannot encode
                raise StoreError(f"ClickHouse {what} failed: cannot encode a value: {e}") from None
            except OSError as e:
                if attempt == self.retries:
                    raise StoreError(f"ClickHouse {what} failed: {e}") from None
                log.warning("ClickHouse %s failed (attempt %d), retrying in %.1fs: %s", what, attempt + 1, delay, e)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def _sql(self, sql: str) -> str:
        return sql.replace("{db}", self.database)

    def command(self, sql: str) -> None:
        sql = self._sql(sql)
        self._types.clear()  # DDL may change a table: its column types are read again
        self._retry("command", lambda: self._client.command(sql))

    def insert(self, table: str, rows: Sequence[Row], dedup_token: str | None = None) -> None:
        if not rows:
            return
        settings: dict[str, Any] = {}
        if dedup_token:
            settings = {"insert_deduplication_token": dedup_token, "insert_deduplicate": 1,
                        "deduplicate_blocks_in_dependent_materialized_views": 1}
        names = list(rows[0])
        if any(r.keys() != rows[0].keys() for r in rows):
            # Rows name different columns: JSONEachRow lets the server default what a row omits,
            # exactly as ChdbStore does. Still one statement, so the token covers the whole batch.
            body = "\n".join(json.dumps({k: to_json_value(v) for k, v in r.items()}, separators=(",", ":"))
                             for r in rows).encode()
            settings["date_time_input_format"] = "best_effort"
            self._retry(f"insert into {table}", lambda: self._client.raw_insert(
                f"{self.database}.{table}", insert_block=body, settings=settings, fmt="JSONEachRow"))
            return
        columns = [[_to_insert_value(r[n]) for r in rows] for n in names]
        key = (table, tuple(names))
        cached = key in self._types

        def insert():
            types = self._types.get(key)
            if types is None:  # the server's types of these columns, asked once (a DESCRIBE)
                types = self._types[key] = self._client.create_insert_context(
                    table, column_names=names, database=self.database).column_types
            self._client.insert(table, columns, column_names=names, column_types=types, database=self.database,
                                column_oriented=True, settings=settings)
        try:
            self._retry(f"insert into {table}", insert)
        except StoreError:
            if not cached:
                raise
            # The table may have changed since its types were read (another process migrated it):
            # once more with the types read now.
            self._types.pop(key, None)
            self._retry(f"insert into {table}", insert)

    def query(self, sql: str) -> list[Row]:
        sql = self._sql(sql)
        res = self._retry("query", lambda: self._client.query(sql))
        names = res.column_names
        convs = [_converter(t.name) for t in res.column_types]
        return [{n: v if v is None or c is None else c(v) for n, c, v in zip(names, convs, row)}
                for row in res.result_rows]

    def close(self) -> None:
        self._client.close()


def _message(e: Exception) -> str:
    text = str(e)
    marker = "server response: "
    if marker in text:
        text = text.split(marker, 1)[1]
    return text.strip()[:500]


def _to_insert_value(v: Any) -> Any:
    if isinstance(v, float):
        raise TypeError("float values are not stored; use int nanos or Decimal")
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError("naive datetime")
        return v.astimezone(timezone.utc)
    if isinstance(v, bool):
        return int(v)
    return v


def _converter(ctype: str) -> Callable[[Any], Any] | None:
    """clickhouse-connect's Python value -> the value ChdbStore returns for that column type
    (None: already the same). Chosen once per column, not per value."""
    base = ctype
    while base.startswith(("Nullable(", "LowCardinality(")):
        base = base[base.index("(") + 1:-1]
    if base.startswith(("String", "FixedString", "Int", "UInt", "Bool", "Map", "Decimal")):
        return None
    if base.startswith("DateTime"):
        return lambda v: (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    if base.startswith(("Date", "UUID")):  # ChdbStore returns Date and UUID as their text
        return str
    return lambda v: _generic(ctype, v)


def _generic(ctype: str, v: Any) -> Any:
    v = convert_column(ctype, v)
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc)
    if isinstance(v, (date, UUID)):
        return str(v)
    return v
