"""costwarden's Python SDK for gateways (the declared public surface).

    from costwarden.sdk import Costwarden, usage_from_response
    guard = Costwarden("http://127.0.0.1:8787", token, fail_open={"chat-support": True})  # no network here
    if guard.check("agent-loop").allowed:
        resp = client.chat.completions.create(...)          # OpenAI, Anthropic or Gemini client
        guard.report(usage_from_response(resp, workflow="agent-loop"))   # = guard.report_response(resp, ...)

    from costwarden.sdk import KafkaReporter   # report straight to the raw topic (needs kafka-python)
"""
from costwarden.sdk.client import Blocked, Costwarden, GuardDecision, Refused, Reservation
from costwarden.sdk.usage import usage_from_response

from costwarden.sdk.kafka_reporter import KafkaReporter  # kafka-python is imported when one is made

__all__ = ["Costwarden", "GuardDecision", "Reservation", "Refused", "Blocked", "usage_from_response",
           "KafkaReporter"]
