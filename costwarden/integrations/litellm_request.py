"""What a LiteLLM request says: its workflow, attribution tags, call id, and what it may cost
(prompt tokens, max output tokens). Kwargs of the proxy's pre-call hook, the SDK's deployment hook
and the logging hooks all have the shapes read here."""
from __future__ import annotations

import json

DEFAULT_MAX_OUTPUT_TOKENS = 4096


def _metadatas(kwargs: dict) -> list[dict]:
    lp = kwargs.get("litellm_params") or {}
    out = []
    for m in (kwargs.get("metadata"), kwargs.get("litellm_metadata"), lp.get("metadata"), lp.get("litellm_metadata")):
        if isinstance(m, dict) and m:
            out.append(m)
    return out


def _tag_lists(kwargs: dict) -> list:
    lists = [m.get("tags") for m in _metadatas(kwargs)] + [kwargs.get("tags")]
    return [t for lst in lists if isinstance(lst, (list, tuple)) for t in lst if isinstance(t, str)]


def workflow_of(kwargs: dict) -> str | None:
    tags = _tag_lists(kwargs)
    for t in tags:
        if t.startswith("workflow:") and t[9:].strip():
            return t[9:].strip()
    metas = _metadatas(kwargs)
    for meta in metas:
        slm = meta.get("spend_logs_metadata")
        if isinstance(slm, dict) and isinstance(slm.get("workflow"), str) and slm["workflow"].strip():
            return slm["workflow"].strip()
    for meta in metas:
        wf = meta.get("workflow")
        if isinstance(wf, str) and wf.strip():
            return wf.strip()
    return None


def attribution_tags(kwargs: dict, workflow: str) -> dict[str, str]:
    """The tags budgets match on, as the connector will derive them from the logged call."""
    tags: dict[str, str] = {}
    for t in _tag_lists(kwargs):
        k, sep, v = t.partition(":")
        if k.strip() and sep and v.strip() and len(tags) < 60:
            tags[k.strip()[:256]] = v.strip()[:256]
    for meta in _metadatas(kwargs):
        slm = meta.get("spend_logs_metadata")
        if isinstance(slm, dict):
            for k, v in slm.items():
                if isinstance(v, (str, int)) and not isinstance(v, bool) and len(tags) < 60:
                    tags.setdefault(str(k)[:256], str(v)[:256])
    tags["workflow"] = workflow
    return tags


def call_id_of(kwargs: dict) -> str | None:
    cid = kwargs.get("litellm_call_id")
    if not cid:
        cid = getattr(kwargs.get("litellm_logging_obj"), "litellm_call_id", None)
    return str(cid) if cid else None


def input_tokens(model: str, kwargs: dict) -> int:
    """The prompt's tokens (LiteLLM's counter), else its UTF-8 bytes (a byte-level BPE token is at
    least one byte)."""
    import litellm

    messages = kwargs.get("messages")
    system = kwargs.get("system")
    try:
        if isinstance(messages, list):
            msgs = list(messages)
            if isinstance(system, str) and system:
                msgs.insert(0, {"role": "system", "content": system})
            return int(litellm.token_counter(model=model, messages=msgs))
        text = kwargs.get("input", kwargs.get("prompt"))
        if text is not None:
            return int(litellm.token_counter(model=model, text=text if isinstance(text, str) else json.dumps(text)))
    except Exception:
        pass
    raw = json.dumps([messages, system, kwargs.get("input"), kwargs.get("prompt")], default=str)
    return len(raw.encode("utf-8"))


def output_tokens(model: str, kwargs: dict, call_type: str = "") -> int:
    """The request's max_tokens, else the model's max output (what a call may be billed for)."""
    if "embedding" in call_type:
        return 0
    for k in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        v = kwargs.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return min(v, 10_000_000)
    try:
        import litellm

        info = litellm.get_model_info(model)
        v = info.get("max_output_tokens") or info.get("max_tokens")
        if isinstance(v, int) and v > 0:
            return min(v, 10_000_000)
    except Exception:
        pass
    return DEFAULT_MAX_OUTPUT_TOKENS
