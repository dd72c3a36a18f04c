"""The commit journal kept in the store (`commit_journal`, migration 005): the distributed workers'
write-ahead journal, so that whichever worker owns a Kafka partition next can finish a commit
that the previous owner started.

    StoreJournal(store, "raw:usage.raw:3")      implements store/journal.py's Journal protocol

`write` inserts the entry (done=0, version 1, the commit as `body`) before any table of the commit
is written; `done` inserts a done=1 version with an empty body once every table write succeeded;
`pending()` returns the owner's entries with no done version, oldest first (by the commit's
`seq`). The owner string scopes entries to one partition ("raw:<topic>:<partition>",
"budget:<topic>:<partition>"): a worker that is assigned a partition re-applies that partition's
pending entries before it processes any record of it (distributed/raw_stage.py, budget_stage.py).

The body is the commit as JSON, exact for every value a row holds (each block as columns with a
kind per column: datetime, Decimal, date or plain; row by row with tagged values when a block is
not uniform), zlib-compressed, base64 (chDB inserts travel as JSON and ClickHouse Strings are bytes: ASCII is safe in both). It
is not a pickle: the table lives in a shared database, and a row there must never be code.

A failed `done` write is not the commit's failure (every table write already succeeded): the
entry is remembered, marked done again before the next write or read of this journal, and until
then left out of `pending()`; if the process dies first, the next owner re-applies it, which the
blocks' deduplication tokens make a no-op.
"""
from __future__ import annotations

import base64
import json
import logging
import zlib
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable

from costwarden.errors import StoreError
from costwarden.store import tables as T
from costwarden.store.base import Store
from costwarden.store.queries import lit
from costwarden.store.values import json_bytes
from costwarden.store.writer import Commit

log = logging.getLogger(__name__)

_WRITTEN, _DONE = 1, 2  # row versions: a done row always replaces its entry


# --- the body: tagged JSON, exact for every value a commit row holds ------------------------------
def _enc(v: Any) -> Any:
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, datetime):
        return {"$t": v.isoformat()}
    if isinstance(v, date):
        return {"$D": v.isoformat()}
    if isinstance(v, Decimal):
        return {"$d": str(v)}
    if isinstance(v, dict):
        return {"$m": [[k, _enc(x)] for k, x in v.items()]}
    if isinstance(v, (list, tuple)):
        return [_enc(x) for x in v]
    raise TypeError(f"a commit row holds a {type(v).__name__}, which the journal does not encode")


def _dec(v: Any) -> Any:
    if isinstance(v, list):
        return [_dec(x) for x in v]
    if isinstance(v, dict):
        if "$t" in v:
            return datetime.fromisoformat(v["$t"])
        if "$d" in v:
            return Decimal(v["$d"])
        if "$m" in v:
            return {k: _dec(x) for k, x in v["$m"]}
        if "$D" in v:
            return date.fromisoformat(v["$D"])
        raise ValueError(f"unknown journal value tag {sorted(v)}")
    return v


_KINDS = {datetime: "t", Decimal: "d", date: "D"}
_FROM = {"t": datetime.fromisoformat, "d": Decimal, "D": date.fromisoformat}


def _iso(v: Any) -> str:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    raise TypeError(f"a commit row holds a {type(v).__name__}, which the journal does not encode")


def _block(table: str, token: str, rows: list[dict]) -> list:
    """A block as columns + one kind per column (rows as arrays: json encodes them in C); a block
    whose rows differ in columns, or whose column mixes kinds, is kept row by row, tagged."""
    cols = list(rows[0]) if rows else []
    if all(r.keys() == rows[0].keys() for r in rows):
        kinds = []
        for c in cols:
            column = [r[c] for r in rows]
            types = set(map(type, column))
            types.discard(type(None))
            if len(types) > 1 or (types and next(iter(types)) not in (str, int, bool, dict, *_KINDS)):
                break
            t = next(iter(types)) if types else None
            if t is dict and not all(isinstance(x, str) for m in column if m for x in m.values()):
                break  # a map of anything but text: tagged
            kinds.append(_KINDS.get(t, ""))
        else:
            return [table, token, cols, kinds, [[r[c] for c in cols] for r in rows]]
    return [table, token, None, None, [{k: _enc(x) for k, x in r.items()} for r in rows]]


def _unblock(b: list) -> tuple[str, list[dict], str]:
    table, token, cols, kinds, rows = b
    if cols is None:
        return table, [{k: _dec(x) for k, x in r.items()} for r in rows], token
    conv = [(i, _FROM[k]) for i, k in enumerate(kinds) if k]
    out = []
    for vals in rows:
        for i, f in conv:
            if vals[i] is not None:
                vals[i] = f(vals[i])
        out.append(dict(zip(cols, vals)))
    return table, out, token


def encode_commit(c: Commit) -> str:
    doc = {"v": 2, "id": c.id, "seq": c.seq, "blocks": [_block(t, token, rows) for t, rows, token in c.blocks]}
    raw = json_bytes(doc, _iso)
    return base64.b64encode(zlib.compress(raw, 1)).decode("ascii")


def decode_commit(body: str) -> Commit:
    doc = json.loads(zlib.decompress(base64.b64decode(body)).decode("utf-8", "surrogatepass"))
    if doc.get("v") != 2:
        raise ValueError(f"journal entry format {doc.get('v')!r} is not known")
    return Commit(doc["id"], int(doc["seq"]), [_unblock(b) for b in doc["blocks"]])


class StoreJournal:
    """store/journal.py's Journal for one owner, in the store's `commit_journal` table."""

    def __init__(self, store: Store, owner: str, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.owner = owner
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._undone: dict[str, Commit] = {}  # applied, but the done row could not be written yet

    def _row(self, c: Commit, body: str, done: int) -> dict:
        return {"owner": self.owner, "id": c.id, "seq": c.seq, "created_at": self.clock(), "body": body,
                "done": done, "version": _DONE if done else _WRITTEN}

    def write(self, commit: Commit) -> None:
        self._flush_undone()
        self.store.insert(T.COMMIT_JOURNAL, [self._row(commit, encode_commit(commit), 0)])

    def done(self, commit: Commit) -> None:
        try:
            self.store.insert(T.COMMIT_JOURNAL, [self._row(commit, "", 1)])
        except StoreError as e:
            log.warning("journal %s: commit %s was written but could not be marked done (will be): %s",
                        self.owner, commit.id, e)
            self._undone[commit.id] = commit

    def _flush_undone(self) -> None:
        for cid, c in list(self._undone.items()):
            self.store.insert(T.COMMIT_JOURNAL, [self._row(c, "", 1)])
            del self._undone[cid]

    def pending(self, owner: str | None = None) -> list[Commit]:
        """The owner's entries not done, oldest first (default: this journal's owner)."""
        owner = self.owner if owner is None else owner
        if owner == self.owner:
            self._flush_undone()
        # which entries are pending: keys only (bodies of done entries are never read) ...
        ids = [r["id"] for r in self.store.query(
            f"SELECT id, min(seq) AS seq FROM {{db}}.{T.COMMIT_JOURNAL} WHERE owner = {lit(owner)} "
            f"GROUP BY id HAVING max(done) = 0 ORDER BY seq, id")]
        if not ids:
            return []
        # ... then their bodies, by primary key
        bodies = {r["id"]: r["body"] for r in self.store.query(
            f"SELECT id, any(body) AS body FROM {{db}}.{T.COMMIT_JOURNAL} WHERE owner = {lit(owner)} "
            f"AND id IN ({', '.join(map(lit, ids))}) AND done = 0 GROUP BY id")}
        rows = [{"id": i, "body": bodies[i]} for i in ids if i in bodies]
        out = []
        for r in rows:
            try:
                out.append(decode_commit(r["body"]))
            except Exception as e:  # cannot happen for entries this module wrote; never guess
                raise StoreError(f"journal {owner}: entry {r['id']} cannot be read ({e}); "
                                 f"move it aside by hand (a done row) after checking it") from e
        return out
