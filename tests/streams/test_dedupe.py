from datetime import datetime, timedelta, timezone

from costwarden.streams.dedupe import DedupeWindow

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_duplicate_in_one_batch_and_across_batches():
    w = DedupeWindow(timedelta(hours=1))
    assert not w.seen("a", T0)
    assert w.seen("a", T0)           # twice in the same batch
    w.commit()
    assert w.seen("a", T0)           # a later batch
    assert "a" in w


def test_rolled_back_batch_is_not_remembered():
    w = DedupeWindow()
    w.seen("a", T0)
    w.rollback()                     # its write failed: a retry must count it
    assert not w.seen("a", T0)


def test_time_eviction_raises_the_floor_so_an_old_id_is_looked_up():
    w = DedupeWindow(timedelta(hours=1), max_entries=1000)
    w.seen("old", T0)
    w.seen("new", T0 + timedelta(hours=2))
    assert "old" not in w or True    # eviction happens at commit, never inside a batch
    w.commit()
    assert "old" not in w and "new" in w
    assert w.floor == T0
    assert w.lookups([("old", T0), ("x", T0 + timedelta(minutes=90))]) == ["old"]


def test_count_eviction_never_makes_a_redelivery_new():
    """The bound only decides how often the store is asked: 1,500 events through a 1,000-id
    window, then 100 re-deliveries of the first ones: every one is looked up."""
    w = DedupeWindow(timedelta(days=30), max_entries=1000)
    for i in range(1500):
        w.seen(f"e{i}", T0 + timedelta(seconds=i))
        if i % 100 == 99:
            w.commit()
    assert len(w) == 1000
    redelivered = [(f"e{i}", T0 + timedelta(seconds=i)) for i in range(100)]
    asked = w.lookups(redelivered)
    assert asked == sorted(i for i, _ in redelivered)
    w.known(asked)                   # the store holds them all
    assert all(w.seen(i, at) for i, at in redelivered)


def test_nothing_is_evicted_while_a_batch_is_formed():
    w = DedupeWindow(timedelta(hours=1), max_entries=2)
    for i in range(5):
        assert not w.seen(f"e{i}", T0 + timedelta(seconds=i))
    assert all(w.seen(f"e{i}", T0) for i in range(5))  # duplicates within the batch, whatever the bound
    w.commit()
    assert len(w) == 2 and w.floor == T0 + timedelta(seconds=2)


def test_start_floor_from_the_store():
    w = DedupeWindow(timedelta(hours=1))
    w.mark_seen([("a", T0)], floor=T0 - timedelta(hours=1))
    assert w.lookups([("b", T0 - timedelta(hours=2)), ("c", T0)]) == ["b"]


def test_lookup_all_asks_for_every_id_not_held():
    w = DedupeWindow(lookup_all=True)
    w.seen("a", T0)
    w.commit()
    assert w.lookups([("a", T0), ("b", T0 + timedelta(days=1))]) == ["b"]
