"""costwarden's Python SDK for gateways (the declared public surface).

    from costwarden.sdk import Costwarden
    guard = Costwarden("http://127.0.0.1:8787", token, fail_open={"chat-support": True})
    if guard.check("agent-loop").allowed:
        ...call the model...
        guard.report(usage_event)
"""
from costwarden.sdk.client import Blocked, Costwarden, GuardDecision, Refused, Reservation

__all__ = ["Costwarden", "GuardDecision", "Reservation", "Refused", "Blocked"]
