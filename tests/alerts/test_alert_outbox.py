import random
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import pytest

from costwarden.alerts.notifier import AppriseNotifier, LogNotifier
from costwarden.alerts.outbox import TABLE, DeliveryReport, DeliveryWorker, Outbox
from costwarden.store import open_store

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)


def _outbox(store, **kw):
    return Outbox(store, rng=random.Random(7), **kw)


def _notifier(receiver, timeout=2.0):
    return AppriseNotifier({"oncall-search": f"json://127.0.0.1:{receiver.port}/hook",
                            "finance": f"form://127.0.0.1:{receiver.port}/finance"}, timeout=timeout)


def test_one_row_per_channel_and_no_second_enqueue(store, make_alert):
    ob = _outbox(store)
    alert = make_alert(channels=["oncall-search", "finance"])
    rows = ob.enqueue([alert, alert], T0)
    assert sorted(r["channel"] for r in rows) == ["finance", "oncall-search"]
    assert ob.enqueue([alert], T0 + timedelta(minutes=5)) == []
    assert ob.already_enqueued([alert.key, "other:2026-11:50%"]) == {alert.key}
    assert ob.pending_count() == 2


def test_a_channel_added_later_still_gets_the_alert(store, make_alert):
    ob = _outbox(store)
    ob.enqueue([make_alert(channels=["oncall-search"])], T0)
    rows = ob.enqueue([make_alert(channels=["oncall-search", "finance"])], T0)
    assert [r["channel"] for r in rows] == ["finance"]


def test_write_false_returns_rows_for_the_pipeline_flush(store, make_alert):
    ob = _outbox(store)
    rows = ob.enqueue([make_alert()], T0, write=False)
    assert len(rows) == 1 and rows[0]["status"] == "pending" and "82.3%" in rows[0]["body"]
    assert ob.pending_count() == 0
    store.insert(TABLE, rows)  # the pipeline writes them at its commit point
    assert ob.pending_count() == 1
    assert ob.enqueue([make_alert()], T0) == []


def test_delivers_to_every_channel_once(store, receiver, make_alert):
    ob = _outbox(store)
    ob.enqueue([make_alert(channels=["oncall-search", "finance"])], T0)
    assert ob.deliver_due(_notifier(receiver), T0) == DeliveryReport(sent=2)
    assert ob.deliver_due(_notifier(receiver), T0 + timedelta(hours=1)) == DeliveryReport()
    assert sorted(r.path.split("?")[0] for r in receiver.received) == ["/finance", "/hook"]
    assert all("throttled rag-answer" in r.fields["message"] for r in receiver.received)
    assert {r["status"] for r in ob.rows()} == {"sent"} and ob.pending_count() == 0


def test_500_twice_then_200_is_delivered_on_the_third_attempt_with_backoff(store, receiver, make_alert):
    receiver.statuses = [500, 500]
    ob, n = _outbox(store), _notifier(receiver)
    ob.enqueue([make_alert()], T0)

    assert ob.deliver_due(n, T0) == DeliveryReport(retried=1)
    [row] = ob.rows()
    assert row["attempts"] == 1 and "500" in row["last_error"]
    first_retry = row["next_attempt_at"]
    assert T0 + timedelta(seconds=4) <= first_retry <= T0 + timedelta(seconds=5)

    assert ob.deliver_due(n, T0 + timedelta(seconds=3)) == DeliveryReport()  # not due yet: nothing sent
    assert len(receiver.received) == 1

    assert ob.deliver_due(n, first_retry) == DeliveryReport(retried=1)
    [row] = ob.rows()
    second_retry = row["next_attempt_at"]
    assert first_retry + timedelta(seconds=8) <= second_retry <= first_retry + timedelta(seconds=10)

    assert ob.deliver_due(n, second_retry) == DeliveryReport(sent=1)
    [row] = ob.rows()
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 3, "")
    assert len(receiver.received) == 3


def test_gives_up_after_max_attempts_and_backoff_is_capped(store, receiver, make_alert):
    receiver.statuses = [500] * 10
    ob = _outbox(store, max_attempts=8, max_delay=timedelta(seconds=30))
    ob.enqueue([make_alert()], T0)
    now, delays = T0, []
    for _ in range(8):
        report = ob.deliver_due(_notifier(receiver), now)
        [row] = ob.rows()
        delays.append(row["next_attempt_at"] - now)
        now = row["next_attempt_at"]
    assert report == DeliveryReport(failed=1)
    assert row["status"] == "failed" and row["attempts"] == 8
    assert max(delays[:-1]) <= timedelta(seconds=30)
    assert ob.pending_count() == 0
    assert ob.deliver_due(_notifier(receiver), now + timedelta(days=1)) == DeliveryReport()
    assert len(receiver.received) == 8


def test_restart_keeps_one_row_and_one_delivery(chdb_dir, db_name, store, receiver, make_alert):
    _outbox(store).enqueue([make_alert()], T0)
    # a new store object and a new outbox over the same data directory: nothing kept in memory
    restarted = Outbox(open_store(None, chdb_dir, database=db_name))
    assert restarted.enqueue([make_alert()], T0 + timedelta(minutes=1)) == []
    assert len(restarted.rows()) == 1
    assert restarted.deliver_due(_notifier(receiver), T0 + timedelta(minutes=1)).sent == 1
    again = Outbox(open_store(None, chdb_dir, database=db_name))
    assert again.enqueue([make_alert()], T0 + timedelta(minutes=2)) == []
    assert again.deliver_due(_notifier(receiver), T0 + timedelta(hours=1)) == DeliveryReport()
    assert len(receiver.received) == 1


def test_versions_grow_even_if_the_clock_goes_back(chdb_dir, db_name, store, receiver, make_alert):
    _outbox(store).enqueue([make_alert()], T0)  # version = wall clock in microseconds
    skewed = Outbox(open_store(None, chdb_dir, database=db_name), version_clock=lambda: 1)
    assert skewed.deliver_due(_notifier(receiver), T0).sent == 1
    [row] = skewed.rows()
    assert row["status"] == "sent"  # the newer state won although its clock said 1
    assert skewed.deliver_due(_notifier(receiver), T0 + timedelta(hours=1)) == DeliveryReport()
    assert len(receiver.received) == 1


def test_process_restart_sends_once(tmp_path, receiver):
    """Two real processes in turn over one data directory, each enqueueing the same alert
    and delivering: the receiver sees one notification."""
    script = textwrap.dedent(f"""
        import sys
        from datetime import datetime, timezone
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
        from conftest import sample_alert
        from costwarden.alerts.notifier import AppriseNotifier
        from costwarden.alerts.outbox import Outbox
        from costwarden.store import migrate, open_store
        store = open_store(None, {str(tmp_path)!r}); migrate(store)
        ob = Outbox(store)
        ob.enqueue([sample_alert()], datetime.now(timezone.utc))
        print(ob.deliver_due(AppriseNotifier({{"oncall-search": "json://127.0.0.1:{receiver.port}/hook"}}),
                             datetime.now(timezone.utc)).sent)
    """)
    outs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
            for _ in range(2)]
    assert [o.returncode for o in outs] == [0, 0], outs[0].stderr + outs[1].stderr
    assert [o.stdout.strip() for o in outs] == ["1", "0"]
    assert len(receiver.received) == 1


def test_hanging_receiver_does_not_block_beyond_its_timeout(store, silent_listener, receiver, make_alert):
    ob = _outbox(store)
    ob.enqueue([make_alert(key=f"{b}:2026-11:80%", channels=["slow", "ok"]) for b in ("a", "b", "c")], T0)
    n = AppriseNotifier({"slow": f"json://127.0.0.1:{silent_listener.port}/hook",
                         "ok": f"json://127.0.0.1:{receiver.port}/hook"}, timeout=0.5)
    t = time.monotonic()
    report = ob.deliver_due(n, T0)
    assert time.monotonic() - t < 2  # one timeout for the hanging channel, not one per alert
    assert report == DeliveryReport(sent=3, retried=1, deferred=2)
    assert len(receiver.received) == 3
    assert ob.pending_count() == 3  # the hanging channel's alerts are kept for later


def test_worker_delivers_in_background_without_blocking_enqueue(store, silent_listener, make_alert):
    ob = _outbox(store)
    log = LogNotifier(channels=["ok"])
    slow = AppriseNotifier({"slow": f"json://127.0.0.1:{silent_listener.port}/hook"}, timeout=1.5)

    class Both:
        def send(self, channel, title, body):
            (slow if channel == "slow" else log).send(channel, title, body)

    worker = DeliveryWorker(ob, Both(), interval=60).start()
    try:
        ob.enqueue([make_alert(key="a:2026-11:80%", channels=["slow"])], datetime.now(timezone.utc))
        worker.wake()
        time.sleep(0.3)  # the worker is now waiting on the hanging receiver
        t = time.monotonic()
        ob.enqueue([make_alert(key="b:2026-11:80%", channels=["ok"])], datetime.now(timezone.utc))
        assert time.monotonic() - t < 0.5  # the processing side is not held up by delivery
        worker.wake()
        deadline = time.monotonic() + 10
        while not log.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [c for c, _, _ in log.sent] == ["ok"]
    finally:
        worker.stop(flush=False)


def test_worker_stop_with_flush_delivers_what_is_pending(store, make_alert):
    ob = _outbox(store)
    log = LogNotifier(channels=["oncall-search"])
    worker = DeliveryWorker(ob, log, interval=60).start()
    ob.enqueue([make_alert()], datetime.now(timezone.utc))
    worker.stop(flush=True)
    assert len(log.sent) == 1 and ob.pending_count() == 0


@pytest.mark.parametrize("bad_key", ["it's:2026-11:80%", "back\\slash:2026-11:80%"])
def test_keys_with_quotes_are_stored_and_deduplicated(store, make_alert, bad_key):
    ob = _outbox(store)
    assert len(ob.enqueue([make_alert(key=bad_key)], T0)) == 1
    assert ob.enqueue([make_alert(key=bad_key)], T0) == []
    assert ob.already_enqueued([bad_key]) == {bad_key}
