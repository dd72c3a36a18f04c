from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from costwarden.budgets.controls import ControlBook, State
from costwarden.errors import ControlError

T0 = datetime(2026, 11, 10, 12, tzinfo=timezone.utc)
END = datetime(2026, 11, 11, tzinfo=timezone.utc)
START = datetime(2026, 11, 10, tzinfo=timezone.utc)


def trip(book, state, rate=None, budget="b1", at=T0):
    return book.apply_rule("wf", state, rate_per_min=rate, budget_id=budget, period_start=START, expires_at=END,
                           reason="r", at=at)


def test_the_strictest_control_wins():
    book = ControlBook()
    assert trip(book, State.throttle, Decimal(60)) is not None
    assert trip(book, State.throttle, Decimal(100)) is None  # looser throttle changes nothing
    assert trip(book, State.throttle, Decimal(10)).after.rate_per_min == Decimal(10)
    assert trip(book, State.block).after.state is State.block
    assert trip(book, State.throttle, Decimal(1)) is None
    d = book.check("wf", T0)
    assert d.action is State.block and not d.allowed and d.budget_id == "b1" and d.expires_at == END


def test_a_budget_control_expires_at_period_end():
    book = ControlBook()
    trip(book, State.block)
    assert book.check("wf", END - timedelta(seconds=1)).action is State.block
    assert book.check("wf", END).action is State.allow


def test_release_holds_for_the_rest_of_the_period_and_is_audited():
    book = ControlBook()
    trip(book, State.block)
    ch = book.release("wf", reason="false alarm, load test", by="alice", at=T0 + timedelta(minutes=5))
    assert (ch.actor, ch.actor_kind, ch.reason, ch.before.state) == ("alice", "person", "false alarm, load test",
                                                                      State.block)
    assert book.check("wf", T0 + timedelta(minutes=6)).action is State.allow
    assert trip(book, State.block, at=T0 + timedelta(minutes=7)) is None  # same budget, same period: stays released
    assert trip(book, State.block, budget="other", at=T0 + timedelta(minutes=7)) is not None


def test_extend_keeps_a_block_past_period_end():
    book = ControlBook()
    trip(book, State.block)
    book.extend("wf", until=None, reason="investigating", by="bob", at=T0)
    assert book.check("wf", END + timedelta(days=3)).action is State.block


def test_changes_need_a_reason_and_an_actor():
    book = ControlBook()
    trip(book, State.block)
    with pytest.raises(ControlError):
        book.release("wf", reason="", by="alice")
    with pytest.raises(ControlError):
        book.release("wf", reason="ok", by="")
    with pytest.raises(ControlError):
        book.release("nope", reason="ok", by="alice")
