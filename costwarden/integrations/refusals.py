"""Refusals of the costwarden LiteLLM callback, as the LiteLLM proxy answers them (docs/gateway.md).

    402 budget_exceeded    blocked, or the budget cannot pay this call this period; x-should-retry: false
    429 budget_throttled   a throttle's rate is used up; Retry-After, retry-after-ms
    429 budget_reserved    holds of calls in flight fill the budget; Retry-After: 1
    503 budget_unavailable costwarden cannot be reached and the workflow fails closed; Retry-After: 5

`WorkflowBlocked` is a LiteLLM `ProxyException` (when the proxy's modules are installed): the proxy
answers it with its status, headers and an error object whose `code` is ours.
"""
from __future__ import annotations

import json
import math

from costwarden.sdk import Blocked

try:  # the LiteLLM proxy answers a ProxyException with its own status, body and headers
    from litellm.proxy._types import ProxyException as _ProxyException
except Exception:  # pragma: no cover - litellm without its proxy modules
    class _ProxyException(Exception):  # type: ignore[no-redef]
        def __init__(self, message, type, param, code=None, headers=None, openai_code=None,
                     provider_specific_fields=None):
            super().__init__(message)
            self.message, self.type, self.param, self.code = message, type, param, str(code)
            self.headers, self.openai_code, self.provider_specific_fields = headers or {}, openai_code, None


BUDGET_EXCEEDED = "budget_exceeded"
BUDGET_THROTTLED = "budget_throttled"
BUDGET_RESERVED = "budget_reserved"
BUDGET_UNAVAILABLE = "budget_unavailable"
_STATUS = {BUDGET_EXCEEDED: 402, BUDGET_THROTTLED: 429, BUDGET_RESERVED: 429, BUDGET_UNAVAILABLE: 503}
_ANTHROPIC_TYPE = {402: "billing_error", 429: "rate_limit_error", 503: "api_error"}
UNAVAILABLE_RETRY_AFTER_S = 5.0


class WorkflowBlocked(Blocked, _ProxyException):
    """The workflow may not spend now. `error_code` (budget_exceeded | budget_throttled |
    budget_reserved | budget_unavailable), `status_code` (402 | 429 | 503), `retry_after_s` (None:
    do not retry), `headers` (what the proxy sends: x-should-retry, Retry-After, retry-after-ms).
    (`code` is LiteLLM's: the status as a string, which its proxy answers with.)"""

    def __init__(self, message: str, code: str = BUDGET_EXCEEDED, retry_after_s: float | None = None,
                 workflow: str | None = None) -> None:
        status = _STATUS.get(code, 402)
        if retry_after_s is None:
            headers = {"x-should-retry": "false"}
        else:
            headers = {"x-should-retry": "true", "retry-after": str(max(1, math.ceil(retry_after_s))),
                       "retry-after-ms": str(max(1, math.ceil(retry_after_s * 1000)))}
        _ProxyException.__init__(self, message=message, type=code, param=None, code=status, headers=headers,
                                 openai_code=code)
        self.error_code = code
        self.status_code = status
        self.retry_after_s = retry_after_s
        self.workflow = workflow

    def __str__(self) -> str:
        return self.args[0] if self.args else self.message

    def to_dict(self) -> dict:
        """The OpenAI error object the proxy sends: `code` is ours (LiteLLM's would be the status)."""
        return {"message": str(self), "type": self.error_code, "param": None, "code": self.error_code}

    def for_anthropic(self) -> None:
        """On the proxy's Anthropic route (/v1/messages) LiteLLM passes an error message that is
        already an Anthropic error body through as it is: the anthropic SDK then reads the code
        as `error.details.error_code`."""
        self.message = json.dumps({"type": "error", "error": {
            "type": _ANTHROPIC_TYPE.get(self.status_code, "api_error"), "message": str(self),
            "details": {"error_code": self.error_code}}})
