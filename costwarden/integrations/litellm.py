"""LiteLLM callback: admit each call against the workflow's budgets, then account its usage.

    from costwarden.integrations.litellm import CostwardenCallback
    litellm.callbacks = [CostwardenCallback(guard)]              # guard = costwarden.sdk.Costwarden(...)

The LiteLLM proxy (`litellm --config config.yaml`) loads it from the config, with the API's URL
and a gateway token from the environment (COSTWARDEN_URL, COSTWARDEN_TOKEN; see
costwarden/integrations/litellm_proxy.py and docs/gateway.md):

    litellm_settings:
      callbacks: costwarden.integrations.litellm_proxy.callback

Workflow: a tag "workflow:<name>" in the request's tags (metadata.tags, litellm_metadata.tags or
the `x-litellm-tags` header), else spend_logs_metadata["workflow"], else metadata["workflow"];
`default_workflow` otherwise. A call with no workflow is only reported.

Admission (`mode`):
  "reserve" (the default): the cached decision first (a block or a throttle over its rate refuses
      at once, no round trip), then `POST /v1/reservations` holds what the call may cost against
      the workflow's hard budgets: the API sizes it as the smaller of the worst case (the prompt's
      tokens + `max_tokens`, else the model's max output, at catalogue prices) and the workflow's
      recent p99 cost per call. On success the hold is settled with the call's real usage (the
      spend is recorded, then the hold dropped); on failure it is released (or settled, if the
      failed call still used tokens). A workflow whose reservation matched no hard budget is
      check-only for `no_hard_budget_s` (60 s), so it pays no round trip per call.
  "check": the cached decision only; usage is reported after the call (queued, batched). Under
      N concurrent calls a hard budget can be overshot by up to N calls.

Refusals are `WorkflowBlocked` errors that the proxy answers as (docs/gateway.md says why):
    402 budget_exceeded    blocked, or the budget cannot pay this call this period; x-should-retry:
                           false (the openai and anthropic SDKs retry 408/409/429/5xx, never 402)
    429 budget_throttled   a throttle's rate is used up; Retry-After (and retry-after-ms)
    429 budget_reserved    holds of calls in flight fill the budget; Retry-After: 1
    503 budget_unavailable costwarden cannot be reached and the workflow fails closed; Retry-After: 5

Hooks: async_pre_call_hook (the proxy, before routing), async_pre_call_deployment_hook (the SDK's
litellm.acompletion / Router; in the proxy it finds the hold already taken), async_log_success_event
/ log_success_event (settle or report), async_log_failure_event / log_failure_event and
async_post_call_failure_hook (release). LiteLLM's synchronous `litellm.completion` swallows
exceptions from its pre-call logging hooks, so synchronous callers admit first:
`callback.completion(**kwargs)` (admit, then litellm.completion) or `callback.check_request(kwargs)`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import uuid
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from litellm.integrations.custom_logger import CustomLogger

from costwarden.connectors import litellm as parser
from costwarden.integrations.litellm_request import (  # noqa: F401  (workflow_of: public)
    attribution_tags, call_id_of, input_tokens, output_tokens, workflow_of)
from costwarden.integrations.refusals import (  # noqa: F401  (the codes: public)
    BUDGET_EXCEEDED, BUDGET_RESERVED, BUDGET_THROTTLED, BUDGET_UNAVAILABLE, UNAVAILABLE_RETRY_AFTER_S,
    WorkflowBlocked)
from costwarden.sdk import Costwarden
from costwarden.sdk.reporter import as_payload

log = logging.getLogger("costwarden.integrations.litellm")


@dataclass
class _Open:
    hold_id: str
    workflow: str
    at: float


class CostwardenCallback(CustomLogger):
    def __init__(self, guard: Costwarden, *, default_workflow: str | None = None, mode: str = "reserve",
                 sizing: str = "quantile", no_hard_budget_s: float = 60.0, max_workers: int = 32,
                 hold_ttl_s: float | None = None) -> None:
        super().__init__()
        if mode not in ("reserve", "check"):
            raise ValueError(f"mode must be 'reserve' or 'check', not {mode!r}")
        if sizing not in ("quantile", "worst"):
            raise ValueError(f"sizing must be 'quantile' or 'worst', not {sizing!r}")
        self.guard = guard
        self.default_workflow = default_workflow
        self.mode = mode
        self.sizing = sizing
        self.no_hard_budget_s = no_hard_budget_s
        self.hold_ttl_s = hold_ttl_s
        self._http: httpx.Client = guard._http  # the guard's connection pool, URL and token
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="costwarden-litellm")
        self._lock = threading.Lock()
        self._open: dict[str, _Open] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._admitted: OrderedDict[str, None] = OrderedDict()
        self._no_hard_budget: dict[tuple, float] = {}
        self._unknown_models: set[str] = set()
        self.reported = 0
        self.rejects: list[Any] = []
        self.stats: Counter = Counter()  # reserved, settled, released, refused:<code>, fail_open, ...

    @classmethod
    def from_env(cls, **kw) -> "CostwardenCallback":
        """COSTWARDEN_URL, COSTWARDEN_TOKEN (a gateway token), COSTWARDEN_LITELLM_MODE (reserve | check),
        COSTWARDEN_LITELLM_SIZING (quantile | worst), COSTWARDEN_LITELLM_DEFAULT_WORKFLOW,
        COSTWARDEN_FAIL_OPEN (1: allow when costwarden cannot be reached; default: fail closed)."""
        url, token = os.environ.get("COSTWARDEN_URL"), os.environ.get("COSTWARDEN_TOKEN")
        if not url or not token:
            raise RuntimeError("the costwarden LiteLLM callback needs COSTWARDEN_URL and COSTWARDEN_TOKEN "
                               "(a gateway token: `costwarden tokens create --role gateway --name litellm`)")
        guard = Costwarden(url, token, default_fail_open=os.environ.get("COSTWARDEN_FAIL_OPEN") == "1")
        if not guard.wait_ready(10.0):  # the proxy is still starting: worth a wait
            log.warning("costwarden: decisions not loaded from %s yet; calls follow the fail policy until they are",
                        url)
        kw.setdefault("mode", os.environ.get("COSTWARDEN_LITELLM_MODE", "reserve"))
        kw.setdefault("sizing", os.environ.get("COSTWARDEN_LITELLM_SIZING", "quantile"))
        kw.setdefault("default_workflow", os.environ.get("COSTWARDEN_LITELLM_DEFAULT_WORKFLOW") or None)
        return cls(guard, **kw)

    # --- admission -----------------------------------------------------------------------------
    def check_request(self, kwargs: dict, call_type: Any = None) -> None:
        """Admit the call (synchronous; raises WorkflowBlocked). In reserve mode a hold is taken
        and recorded under the call's litellm_call_id (without one the call is only checked). A call
        is admitted once: a later hook for the same call id (the proxy's deployment hook after its
        pre-call hook) passes, so a throttle counts it once."""
        wf = workflow_of(kwargs) or self.default_workflow
        if wf is None:
            return
        call_id = call_id_of(kwargs)
        if call_id is not None:
            with self._lock:
                if call_id in self._admitted:
                    return
        self._admit(wf, call_id, kwargs, str(call_type or ""))
        if call_id is not None:
            with self._lock:
                self._admitted[call_id] = None
                if len(self._admitted) > 10_000:
                    self._admitted.popitem(last=False)

    def _admit(self, wf: str, call_id: str | None, kwargs: dict, call_type: str = "") -> None:
        d = self.guard.check(wf)
        if not d.allowed:
            self.stats["refused:cache"] += 1
            if d.source == "fail-closed":
                raise WorkflowBlocked(f"costwarden: workflow {wf!r} may not spend now: {d.reason}",
                                      BUDGET_UNAVAILABLE, UNAVAILABLE_RETRY_AFTER_S, wf)
            if d.action == "throttle":
                rate = float(d.rate_per_min or 0)
                wait = 60.0 / rate if rate > 0 else 60.0
                raise WorkflowBlocked(f"costwarden: workflow {wf!r} is throttled to {d.rate_per_min}/min: {d.reason}",
                                      BUDGET_THROTTLED, wait, wf)
            raise WorkflowBlocked(f"costwarden: workflow {wf!r} is blocked: {d.reason}", BUDGET_EXCEEDED, None, wf)
        if self.mode == "reserve":
            if call_id is None:  # nothing to settle the hold by: checked only
                self.stats["no_call_id"] += 1
                return
            self._reserve(wf, call_id, kwargs, call_type)

    def _reserve(self, wf: str, call_id: str, kwargs: dict, call_type: str = "") -> None:
        tags = attribution_tags(kwargs, wf)
        key = (wf, tuple(sorted(tags.items())))
        until = self._no_hard_budget.get(key)
        if until is not None and time.monotonic() < until:
            return
        target = self._deployment(kwargs)
        if target is None:
            self.stats["unreservable"] += 1
            return
        model, provider, model_ref = target
        body = {"workflow": wf, "model": model, "provider": provider,
                "max_input_tokens": input_tokens(model_ref, kwargs),
                "max_output_tokens": output_tokens(model_ref, kwargs, call_type), "tags": tags,
                "sizing": self.sizing}
        if self.hold_ttl_s:
            body["ttl_s"] = self.hold_ttl_s
        try:
            r = self._http.post("/v1/reservations", json=body)
        except httpx.HTTPError as e:
            return self._unreachable(wf, f"{type(e).__name__}: {e}")
        if r.status_code == 201:
            hold = r.json()
            if not hold.get("budgets"):  # no hard budget: nothing to hold; check-only for a while
                self._no_hard_budget[key] = time.monotonic() + self.no_hard_budget_s
                self._background(self._release_id, hold["id"])
                return
            with self._lock:
                self._open[call_id] = _Open(hold["id"], wf, time.monotonic())
            self.stats["reserved"] += 1
            return
        if r.status_code == 409:
            try:
                err = r.json()
            except ValueError:
                err = {}
            code = err.get("error") if err.get("error") in (BUDGET_EXCEEDED, BUDGET_RESERVED) else BUDGET_EXCEEDED
            retry = r.headers.get("retry-after")
            self.stats[f"refused:{code}"] += 1
            raise WorkflowBlocked(f"costwarden: workflow {wf!r} refused: {err.get('detail', r.text[:300])}", code,
                                  float(retry) if code == BUDGET_RESERVED and retry else
                                  (1.0 if code == BUDGET_RESERVED else None), wf)
        if r.status_code == 422:  # the model is not in costwarden's catalogue: cannot hold, report only
            self.stats["unreservable"] += 1
            log.warning("costwarden: no reservation for %s/%s (%s); the call is only reported", provider, model,
                        r.text[:200])
            return
        return self._unreachable(wf, f"HTTP {r.status_code}: {r.text[:200]}")

    def _unreachable(self, wf: str, why: str) -> None:
        if self.guard.fail_open.get(wf, self.guard.default_fail_open):
            self.stats["fail_open"] += 1
            log.warning("costwarden: reservation for %r failed (%s); failing open", wf, why)
            return
        self.stats["refused:budget_unavailable"] += 1
        raise WorkflowBlocked(f"costwarden: workflow {wf!r} cannot be admitted now (reservation failed: {why}); "
                              f"failing closed", BUDGET_UNAVAILABLE, UNAVAILABLE_RETRY_AFTER_S, wf)

    def _deployment(self, kwargs: dict) -> tuple[str, str, str] | None:
        """(model, provider as costwarden names it, the model string LiteLLM knows) for the call.
        In the proxy the requested name is a model group: its dearest deployment (by LiteLLM's own
        price list) is held for; costwarden's catalogue prices it."""
        import litellm

        name = kwargs.get("model")
        if not isinstance(name, str) or not name:
            return None
        ref, custom = name, kwargs.get("custom_llm_provider")
        server = sys.modules.get("litellm.proxy.proxy_server")
        router = getattr(server, "llm_router", None) if server is not None else None
        if router is not None:
            try:
                deps = router.get_model_list(model_name=name) or []
            except Exception:
                deps = []
            if deps:
                params = max((d.get("litellm_params") or {} for d in deps), key=_list_price)
                ref = params.get("model") or name
                custom = params.get("custom_llm_provider") or custom
        try:
            model, provider, _, _ = litellm.get_llm_provider(ref, custom_llm_provider=custom)
            return model, parser.provider_name(provider), ref
        except Exception as e:
            if name not in self._unknown_models:  # once per model
                self._unknown_models.add(name)
                log.warning("costwarden: provider of model %r unknown (%s); its calls are only checked and "
                            "reported", name, e)
            return None

    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        try:
            await self._off_loop(self.check_request, data, call_type)
        except WorkflowBlocked as e:
            if call_type == "anthropic_messages" or str(call_type).endswith("anthropic_messages"):
                e.for_anthropic()
            raise
        return data

    async def async_pre_call_deployment_hook(self, kwargs: dict, call_type):
        cid = call_id_of(kwargs)
        if cid is not None and cid in self._admitted:  # the proxy's pre-call hook admitted it
            return None
        await self._off_loop(self.check_request, kwargs, call_type)
        return None

    def completion(self, **kwargs: Any):
        """litellm.completion with admission first (LiteLLM's sync path cannot raise from a hook)."""
        import litellm

        kwargs.setdefault("litellm_call_id", str(uuid.uuid4()))  # the id its hold is settled by
        self.check_request(kwargs)
        try:
            return litellm.completion(**kwargs)
        except BaseException:
            self.release_call(call_id_of(kwargs))
            raise

    # --- after the call ------------------------------------------------------------------------
    def release_call(self, call_id: str | None) -> bool:
        """Drop the hold of a call that will not be settled (idempotent)."""
        if not call_id:
            return False
        with self._lock:
            o = self._open.pop(call_id, None)
        if o is None:
            return False
        self._release_id(o.hold_id)
        return True

    def _release_id(self, hold_id: str) -> None:
        try:
            r = self._http.post(f"/v1/reservations/{hold_id}/release")
            if r.status_code not in (200, 404):
                log.warning("costwarden: release of %s answered %s (it expires with its TTL)", hold_id, r.status_code)
            self.stats["released"] += 1
        except httpx.HTTPError as e:
            log.warning("costwarden: release of %s failed (%s); it expires with its TTL", hold_id, e)

    def _finish(self, kwargs: dict, ok: bool) -> None:
        """Settle (success, or a failure that used tokens) or release the call's hold, and report
        usage that has no hold. LiteLLM may call both the sync and the async hook for one call:
        the second finds it finished."""
        payload = kwargs.get("standard_logging_object")
        call_id = call_id_of(kwargs)
        key = f"{call_id}:{payload.get('id') if isinstance(payload, dict) else ''}:{ok}"
        with self._lock:
            if key in self._finished:
                return
            self._finished[key] = None
            if len(self._finished) > 10_000:
                self._finished.popitem(last=False)
            held = self._open.pop(call_id, None) if call_id else None
            self._expire_open()
        events = []
        if not isinstance(payload, dict):
            log.warning("costwarden: LiteLLM gave no standard_logging_object; usage not reported")
        else:
            result = parser.parse(payload)
            events = list(result.events)
            for rj in result.rejects:
                self.rejects.append(rj)
                log.warning("costwarden: LiteLLM usage not reportable (%s): %s", rj.reason, rj.detail[:200])
        if held is not None:
            ev = events[0] if events else None
            used = ev is not None and (ok or any(v for v in ev.tokens.model_dump().values() if isinstance(v, int)))
            if used:
                events = events[1:]
                try:
                    r = self._http.post(f"/v1/reservations/{held.hold_id}/settle", json=as_payload(ev))
                    r.raise_for_status()
                    self.stats["settled"] += 1
                    self.reported += 1
                except httpx.HTTPError as e:  # the usage is reported instead; the hold expires with its TTL
                    log.warning("costwarden: settle of %s failed (%s); usage reported instead", held.hold_id, e)
                    events.insert(0, ev)
            else:
                self._release_id(held.hold_id)
        for ev in events:
            if self.guard.report(ev):
                self.reported += 1

    def _expire_open(self) -> None:
        """Forget holds whose call never finished (the API expires them after its TTL). Under the lock."""
        if len(self._open) < 1000:
            return
        cutoff = time.monotonic() - 3600
        for cid in [c for c, o in self._open.items() if o.at < cutoff]:
            del self._open[cid]

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._finish(kwargs, True)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._finish(kwargs, False)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        await self._off_loop(self._finish, kwargs, True)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        await self._off_loop(self._finish, kwargs, False)

    async def async_post_call_failure_hook(self, request_data: dict, original_exception, user_api_key_dict,
                                           traceback_str=None):
        """The proxy, for any failed request (a later pre-call hook refused it, the call failed...)."""
        call_id = call_id_of(request_data) if isinstance(request_data, dict) else None
        if call_id and call_id in self._open:
            await self._off_loop(self.release_call, call_id)
        return None

    async def _off_loop(self, fn, *args):
        """Run fn on the callback's threads, never on the event loop (HTTP, token counting)."""
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self._pool, fn, *args)
        except RuntimeError:  # close() shut the pool down; LiteLLM may still call a hook
            fut = loop.run_in_executor(None, fn, *args)
        return await fut

    def _background(self, fn, *args) -> None:
        try:
            self._pool.submit(fn, *args)
        except RuntimeError:
            threading.Thread(target=fn, args=args, daemon=True).start()

    def close(self) -> None:
        """Stop the callback's threads (the guard is the caller's to close)."""
        self._pool.shutdown(wait=False)


def _list_price(params: dict) -> tuple[float, float]:
    """(output, input) price per token of a deployment in LiteLLM's price list; (0, 0) if unknown."""
    import litellm

    ref = str(params.get("model") or "")
    info = litellm.model_cost.get(ref) or litellm.model_cost.get(ref.split("/", 1)[-1]) or {}
    try:
        return float(info.get("output_cost_per_token") or 0), float(info.get("input_cost_per_token") or 0)
    except (TypeError, ValueError):
        return 0.0, 0.0
