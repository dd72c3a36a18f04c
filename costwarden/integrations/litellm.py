"""LiteLLM callback: report every call's usage to costwarden, refuse calls of a blocked workflow.

    from costwarden.integrations.litellm import CostwardenCallback
    litellm.callbacks = [CostwardenCallback(guard)]              # guard = costwarden.sdk.Costwarden(...)

Usage: LiteLLM's StandardLoggingPayload (kwargs["standard_logging_object"]) is parsed by
costwarden.connectors.litellm (the same parser as the connector; tags `team:` / `workflow:` and
spend_logs_metadata become attribution) and queued with `guard.report()`.

Pre-call: the workflow comes from the request metadata -- a tag "workflow:<name>" in
metadata["tags"] (LiteLLM's request tags), else spend_logs_metadata["workflow"], else
metadata["workflow"]. A blocked workflow, or a throttled one over its rate, raises
`WorkflowBlocked` from:
    async_pre_call_hook            the LiteLLM proxy, before routing
    async_pre_call_deployment_hook the SDK's litellm.acompletion / Router, before the provider call
LiteLLM's synchronous `litellm.completion` swallows exceptions from its pre-call logging hooks, so
synchronous callers check first: `callback.completion(**kwargs)` (check, then litellm.completion)
or `callback.check_request(kwargs)` before their own call.
"""
from __future__ import annotations

import logging
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from costwarden.connectors import litellm as parser
from costwarden.sdk import Blocked, Costwarden

log = logging.getLogger("costwarden.integrations.litellm")


class WorkflowBlocked(Blocked):
    """The workflow may not spend now (block, or throttle over its rate)."""

    status_code = 429  # what the LiteLLM proxy answers the client


def _metadata(kwargs: dict) -> dict:
    for m in (kwargs.get("metadata"), (kwargs.get("litellm_params") or {}).get("metadata"),
              kwargs.get("litellm_metadata")):
        if isinstance(m, dict) and m:
            return m
    return {}


def workflow_of(kwargs: dict) -> str | None:
    meta = _metadata(kwargs)
    tags = meta.get("tags") or kwargs.get("tags") or []
    if isinstance(tags, list):
        for t in tags:
            if isinstance(t, str) and t.startswith("workflow:") and t[9:].strip():
                return t[9:].strip()
    slm = meta.get("spend_logs_metadata")
    if isinstance(slm, dict) and isinstance(slm.get("workflow"), str) and slm["workflow"].strip():
        return slm["workflow"].strip()
    wf = meta.get("workflow")
    return wf.strip() if isinstance(wf, str) and wf.strip() else None


class CostwardenCallback(CustomLogger):
    def __init__(self, guard: Costwarden, *, default_workflow: str | None = None) -> None:
        super().__init__()
        self.guard = guard
        self.default_workflow = default_workflow
        self.reported = 0
        self.rejects: list[Any] = []

    # --- pre-call ----------------------------------------------------------------------------
    def check_request(self, kwargs: dict) -> None:
        wf = workflow_of(kwargs) or self.default_workflow
        if wf is None:
            return
        d = self.guard.check(wf)
        if not d.allowed:
            raise WorkflowBlocked(f"costwarden: workflow {wf!r} may not spend now ({d.action}: {d.reason})")

    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        self.check_request(data)
        return data

    async def async_pre_call_deployment_hook(self, kwargs: dict, call_type):
        self.check_request(kwargs)
        return None

    def completion(self, **kwargs: Any):
        """litellm.completion with the pre-call check first (LiteLLM's sync path cannot raise from a hook)."""
        import litellm

        self.check_request(kwargs)
        return litellm.completion(**kwargs)

    # --- usage -------------------------------------------------------------------------------
    def _report(self, kwargs: dict) -> None:
        payload = kwargs.get("standard_logging_object")
        if not isinstance(payload, dict):
            log.warning("costwarden: LiteLLM gave no standard_logging_object; usage not reported")
            return
        result = parser.parse(payload)
        for ev in result.events:
            if self.guard.report(ev):
                self.reported += 1
        for r in result.rejects:
            self.rejects.append(r)
            log.warning("costwarden: LiteLLM usage not reportable (%s): %s", r.reason, r.detail[:200])

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._report(kwargs)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._report(kwargs)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._report(kwargs)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._report(kwargs)
