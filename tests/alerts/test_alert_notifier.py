import logging
import time

import pytest
from pydantic import SecretStr

from costwarden.alerts.message import format_alert
from costwarden.alerts.notifier import AppriseNotifier, LogNotifier, Notifier
from costwarden.errors import ConfigError, DeliveryError

SECRET = "hunter2-topsecret"


def _last_message(kind, notifier, receiver, caplog):
    if kind == "apprise":
        r = receiver.received[-1]
        return r.fields["title"], r.fields["message"]
    channel, title, body = notifier.sent[-1]
    assert title in caplog.text
    return title, body


@pytest.fixture(params=["apprise", "log"])
def contract(request, receiver):
    if request.param == "apprise":
        return request.param, AppriseNotifier({"oncall-search": f"json://127.0.0.1:{receiver.port}/hook"}, timeout=2)
    return request.param, LogNotifier(channels=["oncall-search"])


def test_contract_delivers_title_and_body(contract, receiver, make_alert, caplog):
    kind, notifier = contract
    caplog.set_level(logging.INFO)
    assert isinstance(notifier, Notifier)
    title, body = format_alert(make_alert())
    notifier.send("oncall-search", title, body)
    assert _last_message(kind, notifier, receiver, caplog) == (title, body)


def test_contract_unknown_channel_is_an_error(contract, receiver):
    _, notifier = contract
    with pytest.raises(DeliveryError, match="unknown alert channel 'oncall-payments'"):
        notifier.send("oncall-payments", "t", "b")
    assert receiver.received == []


@pytest.mark.parametrize("scheme", ["json", "form"])
def test_receiver_gets_budget_spend_percent_contributors_and_action(scheme, receiver, make_alert):
    n = AppriseNotifier({"oncall-search": SecretStr(f"{scheme}://127.0.0.1:{receiver.port}/alerts")})
    title, body = format_alert(make_alert())
    n.send("oncall-search", title, body)
    [got] = receiver.received
    assert got.path.startswith("/alerts")
    assert ("json" if scheme == "json" else "form-urlencoded") in got.content_type
    posted = got.fields["title"] + "\n" + got.fields["message"]
    for text in ("Search team monthly", "$8,234.56", "82.3% of budget", "workflow=rag-answer: $5,100.00",
                 "model=gpt-4o", "throttled rag-answer to 60 req/min", "costwarden controls release rag-answer"):
        assert text in posted


@pytest.mark.parametrize("template,where", [
    ("json://alerts:{secret}@127.0.0.1:{port}/hook", "authorization"),   # password -> Basic auth
    ("apprise://127.0.0.1:{port}/{secret}?version=1", "path"),           # token in the request path
])
def test_secret_never_in_error_repr_or_logs(template, where, receiver, caplog):
    caplog.set_level(logging.DEBUG)  # Apprise's and urllib3's debug records included
    receiver.statuses = [500]
    url = template.format(secret=SECRET, port=receiver.port)
    n = AppriseNotifier({"oncall-search": SecretStr(url)})
    with pytest.raises(DeliveryError) as e:
        n.send("oncall-search", "title", "body")
    [got] = receiver.received  # the secret was used ...
    assert got.authorization.startswith("Basic ") if where == "authorization" else SECRET in got.path
    assert "500" in str(e.value) and "oncall-search" in str(e.value)
    assert "POST" in caplog.text  # the HTTP stack did log the request
    for text in (str(e.value), repr(e.value), repr(n), caplog.text):  # ... and is shown nowhere
        assert SECRET not in text
        assert url not in text


def test_invalid_url_is_a_config_error_without_the_secret():
    with pytest.raises(ConfigError) as e:
        AppriseNotifier({"oncall-search": f"nosuchscheme://admin:{SECRET}@example.com"})
    assert "oncall-search" in str(e.value) and SECRET not in str(e.value)


def test_unreachable_receiver_fails_fast(dead_port):
    n = AppriseNotifier({"down": f"json://127.0.0.1:{dead_port}/hook"}, timeout=1)
    t = time.monotonic()
    with pytest.raises(DeliveryError, match="'down'"):
        n.send("down", "t", "b")
    assert time.monotonic() - t < 2


def test_hanging_receiver_costs_at_most_the_timeout(silent_listener):
    n = AppriseNotifier({"slow": f"json://127.0.0.1:{silent_listener.port}/hook"}, timeout=0.5)
    t = time.monotonic()
    with pytest.raises(DeliveryError):
        n.send("slow", "t", "b")
    assert time.monotonic() - t < 2.5


def test_log_notifier_without_channels_accepts_any_name(caplog):
    caplog.set_level(logging.INFO)
    n = LogNotifier()
    n.send("anything", "Budget X at 80%", "body")
    assert n.sent == [("anything", "Budget X at 80%", "body")]
    assert "Budget X at 80%" in caplog.text
