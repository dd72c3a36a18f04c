"""StoreJournal: the commit journal kept in the store (migration 005), on chDB and on a ClickHouse
server (the HTTP test adapter): exact round trip, owner scopes, done, and a commit cut short by
one writer finished by another (the next owner of a partition)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from costwarden.errors import StoreError
from costwarden.store import migrate, tables as T
from costwarden.store.store_journal import StoreJournal, decode_commit, encode_commit
from costwarden.store.writer import Commit, CommitWriter


def _commit(make_event, n=6, first=0) -> Commit:
    rows = [make_event(i) for i in range(first, first + n)]
    rows[0]["tags"] = {"$t": "not a tag of the codec", "team": "sea\ud800rch"[:3], "q'uote": "x\\y"}
    control = {"workflow": "wf", "version": 7, "state": "throttle", "rate_per_min": Decimal("5.000000"),
               "reason": "r", "budget_id": "b", "period_start": None,
               "set_at": datetime(2026, 3, 1, 12, 0, 0, 1000, tzinfo=timezone.utc), "expires_at": None,
               "set_by": "rule", "kept_by_person": 0}
    return Commit.form({T.USAGE: rows, T.CONTROLS: [control]})


def test_the_body_round_trips_every_value_exactly(make_event):
    c = _commit(make_event)
    c.blocks[0][1][1]["model"] = "lone \ud800 surrogate"  # whatever a row holds, the journal keeps it
    back = decode_commit(encode_commit(c))
    assert (back.id, back.seq) == (c.id, c.seq)
    assert back.blocks == c.blocks
    assert encode_commit(c).isascii()


def test_write_pending_done_and_owner_scopes(store, make_event):
    migrate(store)
    a, b = StoreJournal(store, "raw:usage.raw:0"), StoreJournal(store, "raw:usage.raw:1")
    c1, c2 = _commit(make_event), _commit(make_event, first=10)
    c2.seq = c1.seq - 1  # oldest first is by seq, not by arrival
    a.write(c1)
    a.write(c2)
    b.write(_commit(make_event, first=20))
    assert [c.id for c in a.pending()] == [c2.id, c1.id]
    assert a.pending()[1].blocks == c1.blocks
    assert [c.id for c in b.pending("raw:usage.raw:0")] == [c2.id, c1.id]
    a.done(c2)
    assert [c.id for c in a.pending()] == [c1.id]
    assert len(b.pending()) == 1


def test_a_commit_cut_short_is_finished_by_the_next_owner(store, make_event):
    """Worker A journals a commit and dies after the first block; worker B, assigned the same
    partition, re-applies it: every block stored once, in the raw table and its rollups."""
    migrate(store)
    owner = "raw:usage.raw:2"
    rows = [make_event(i, occurred_at=datetime(2026, 3, 31, 23, 0, tzinfo=timezone.utc) + timedelta(minutes=i))
            for i in range(120)]  # two months: two blocks
    c = Commit.form({T.USAGE: rows})
    assert len(c.blocks) == 2
    real = store.insert
    calls = []

    def dies_at_second(table, rows, dedup_token=None):
        if table == T.USAGE:
            calls.append(table)
            if len(calls) == 2:
                raise StoreError("the process died here")
        return real(table, rows, dedup_token)

    a = CommitWriter(store)
    a.journal = StoreJournal(store, owner)
    store.insert = dies_at_second
    with pytest.raises(StoreError):
        a.commit(c)
    store.insert = real
    b = CommitWriter(store)
    b.journal = StoreJournal(store, owner)
    done = b.recover()
    assert [x.id for x in done] == [c.id]
    assert b.journal.pending() == []
    b.recover()  # nothing more; a second replay would change nothing anyway (tokens)
    a.recover()
    n = store.query("SELECT count() AS n, sum(cost_nanos) AS c FROM {db}.usage_events")[0]
    m = store.query("SELECT sum(events) AS n, sum(cost_nanos) AS c FROM {db}.usage_rollup_minute")[0]
    assert (int(n["n"]), int(n["c"])) == (120, sum(r["cost_nanos"] for r in rows))
    assert (int(m["n"]), int(m["c"])) == (int(n["n"]), int(n["c"]))


def test_a_failed_done_is_not_a_failed_commit(store, make_event):
    migrate(store)
    j = StoreJournal(store, "budget:usage.by-budget:0")
    c = _commit(make_event)
    j.write(c)
    real = store.insert

    def refuse(table, rows, dedup_token=None):
        raise StoreError("down")
    store.insert = refuse
    j.done(c)  # every table write succeeded before: logged, remembered, not raised
    store.insert = real
    assert j.pending() == []  # marked done now
    assert StoreJournal(store, j.owner).pending() == []
