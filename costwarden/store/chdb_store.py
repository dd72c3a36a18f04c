"""ChdbStore: ClickHouse's engine in-process (chDB), database files under the data directory."""
from __future__ import annotations

import atexit
import json
import threading
from decimal import Decimal
from pathlib import Path
from typing import Sequence

from costwarden.errors import StoreError
from costwarden.store.base import Row
from costwarden.store.values import converter, to_json_value

# chDB allows one open database path per process: sessions are shared per path.
_SESSIONS: dict[str, object] = {}
_LOCK = threading.RLock()


def _session(path: str):
    from chdb import session as chs

    with _LOCK:
        s = _SESSIONS.get(path)
        if s is None:
            if _SESSIONS:
                raise StoreError(f"chDB can open one data directory per process; {next(iter(_SESSIONS))} is "
                                 f"open, {path} was asked for (use another database name in the same directory)")
            s = chs.Session(path)
            _SESSIONS[path] = s
        return s


@atexit.register
def _close_sessions() -> None:
    """Shut chDB's engine down while the interpreter is still whole: left to the C++ static
    destructors at exit, its background pools crash or hang the process at random."""
    with _LOCK:
        for s in _SESSIONS.values():
            try:
                s.close()
            except Exception:
                pass
        _SESSIONS.clear()


class ChdbStore:
    def __init__(self, path: str | Path, database: str = "costwarden") -> None:
        self.path = str(Path(path).resolve())
        Path(self.path).mkdir(parents=True, exist_ok=True)
        self.database = database
        self._s = _session(self.path)
        self._raw(f"CREATE DATABASE IF NOT EXISTS {database}")

    def _raw(self, sql: str, fmt: str = "CSV"):
        try:
            with _LOCK:
                return self._s.query(sql, fmt)
        except Exception as e:  # chdb raises its own error type
            raise StoreError(f"chDB: {str(e)[:500]}") from e

    def _sql(self, sql: str) -> str:
        return sql.replace("{db}", self.database)

    def command(self, sql: str) -> None:
        self._raw(self._sql(sql))

    def insert(self, table: str, rows: Sequence[Row], dedup_token: str | None = None) -> None:
        if not rows:
            return
        # the standard library's encoder: with a datetime or two per row it beats orjson here, whose
        # calls back for them cost more than its own speed saves (measured)
        enc = json.JSONEncoder(separators=(",", ":"), default=to_json_value).encode
        cols = list(rows[0])
        if all(len(r) == len(cols) for r in rows) and all(r.keys() == rows[0].keys() for r in rows):
            # the same columns in every row: compact arrays (no keys) encode and parse faster
            target = f"{self.database}.{table} ({', '.join(cols)})"
            fmt = "JSONCompactEachRow"
            body = "\n".join(enc([r[c] for c in cols]) for r in rows)
        else:
            target, fmt = f"{self.database}.{table}", "JSONEachRow"
            body = "\n".join(enc(r) for r in rows)
        settings = "SETTINGS date_time_input_format='best_effort'"
        if dedup_token:
            settings += (f", insert_deduplication_token='{dedup_token}', insert_deduplicate=1, "
                         "deduplicate_blocks_in_dependent_materialized_views=1")
        self._raw(f"INSERT INTO {target} {settings} FORMAT {fmt}\n{body}")

    def query(self, sql: str) -> list[Row]:
        res = self._raw(self._sql(sql), "JSONCompactEachRowWithNamesAndTypes")
        data = res.bytes() if hasattr(res, "bytes") else bytes(res)
        lines = data.splitlines()
        if len(lines) < 2:
            return []
        names = json.loads(lines[0])
        types = json.loads(lines[1])
        convs = [converter(t) for t in types]
        loads = json.loads
        out: list[Row] = []
        for line in lines[2:]:
            vals = loads(line, parse_float=Decimal)
            out.append({n: c(v) for n, c, v in zip(names, convs, vals)})
        return out

    def close(self) -> None:
        # The session is shared by every store on this path in the process; it stays open.
        pass
