from datetime import datetime, timedelta, timezone

from costwarden.streams.dedupe import DedupeWindow

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_a_redelivered_event_is_a_duplicate():
    w = DedupeWindow(timedelta(hours=1))
    assert w.seen("a", T0) is False
    assert w.seen("a", T0) is True
    assert w.seen("b", T0) is False


def test_window_is_bounded_by_event_time_and_size():
    w = DedupeWindow(timedelta(hours=1), max_entries=1000)
    w.seen("old", T0)
    w.seen("new", T0 + timedelta(hours=2))
    assert "old" not in w and "new" in w
    assert w.is_late(T0) and not w.is_late(T0 + timedelta(hours=1, minutes=30))
    for i in range(5000):
        w.seen(f"e{i}", T0 + timedelta(hours=2, seconds=i))
    assert len(w) <= 1000


def test_forget_undoes_a_mark_after_a_failed_flush():
    w = DedupeWindow()
    w.seen("a", T0)
    w.forget(["a"])
    assert w.seen("a", T0) is False


def test_marks_rebuilt_from_the_store_count_as_seen():
    w = DedupeWindow()
    w.mark_seen([("x", T0), ("y", T0)])
    assert w.seen("x", T0) and w.seen("y", T0)


def test_late_events_are_deduplicated_within_a_batch_and_against_the_store():
    w = DedupeWindow(timedelta(hours=1))
    w.seen("new", T0 + timedelta(days=1))
    w.mark_late_seen(["stored-long-ago"])
    assert w.seen("stored-long-ago", T0) is True
    assert w.seen("late-but-new", T0) is False
    assert w.seen("late-but-new", T0) is True  # redelivered in the same batch
    w.end_batch()
    assert "late-but-new" not in w  # the store answers for it from now on
