"""Request bodies of POST /v1/events -> items for the pipeline, with a precise reason per reject.

Accepted shapes (Content-Type):
    application/json                      one canonical event, or a JSON array of them; an object or
                                          array item with "specversion" is read as a CloudEvent
    application/cloudevents+json          one CloudEvent 1.0 (structured mode), data = canonical event
    application/cloudevents-batch+json    a JSON array of CloudEvents
Idempotency: the canonical event_id; a CloudEvent whose data has no event_id gets one derived from
its source + id, so a redelivered CloudEvent is counted once.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from costwarden.errors import InvalidEventError
from costwarden.events import Limits, UsageEvent, json_int, parse_event

JSON = "application/json"
CE = "application/cloudevents+json"
CE_BATCH = "application/cloudevents-batch+json"
KNOWN_TYPES = (JSON, CE, CE_BATCH)


class BodyError(Exception):
    """The body as a whole cannot be read: HTTP `status` with a precise message."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        self.status, self.reason, self.detail = status, reason, detail
        super().__init__(f"{reason}: {detail}")


@dataclass
class Item:
    index: int
    event: UsageEvent | None = None
    raw: Any = None
    reason: str = ""
    detail: str = ""


@dataclass
class Parsed:
    items: list[Item] = field(default_factory=list)

    @property
    def events(self) -> list[UsageEvent]:
        return [i.event for i in self.items if i.event is not None]


def media_type(content_type: str | None) -> str:
    mt = (content_type or "").split(";", 1)[0].strip().lower()
    if not mt:
        return JSON
    if mt not in KNOWN_TYPES:
        raise BodyError(415, "unsupported_media_type",
                        f"{mt!r}: send {JSON}, {CE} or {CE_BATCH}")
    return mt


def decode(body: bytes) -> Any:
    if not body.strip():
        raise BodyError(400, "empty_body", "the body is empty; send one event or a JSON array of events")
    try:  # an integer literal of thousands of digits is read (as a Decimal): its event alone is rejected
        return json.loads(body, parse_float=Decimal, parse_int=json_int)
    except UnicodeDecodeError as e:
        raise BodyError(400, "malformed_json", f"not UTF-8: {e.reason} at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise BodyError(400, "malformed_json", f"{e.msg} at line {e.lineno} column {e.colno} (char {e.pos})") from None
    except RecursionError:
        raise BodyError(400, "malformed_json", "nested too deeply") from None
    except ValueError as e:  # a value Python refuses to read; never a 500
        raise BodyError(400, "malformed_json", f"unreadable value: {str(e)[:200]}") from None


def ce_event_id(source: str, ce_id: str) -> str:
    return "ce:" + hashlib.sha256(f"{source}\x00{ce_id}".encode()).hexdigest()[:40]


def from_cloudevent(ce: Any) -> dict:
    """A structured CloudEvent -> the canonical event dict in its data. Raises InvalidEventError."""
    if not isinstance(ce, dict):
        raise InvalidEventError("not_an_object", "a CloudEvent must be a JSON object")
    if ce.get("specversion") != "1.0":
        raise InvalidEventError("invalid_field", f"specversion must be \"1.0\", got {ce.get('specversion')!r}")
    for attr in ("id", "source", "type"):
        v = ce.get(attr)
        if not isinstance(v, str) or not v.strip():
            raise InvalidEventError("missing_field", f"CloudEvent attribute {attr!r} is required (non-empty string)")
    dct = ce.get("datacontenttype")
    if dct is not None and str(dct).split(";")[0].strip().lower() not in ("application/json", ""):
        raise InvalidEventError("unsupported", f"datacontenttype {dct!r}: data must be application/json")
    if "data_base64" in ce:
        raise InvalidEventError("unsupported", "data_base64 is not accepted; send data as a JSON object")
    data = ce.get("data")
    if not isinstance(data, dict):
        raise InvalidEventError("missing_field" if data is None else "not_an_object",
                                "CloudEvent data must be a canonical usage event object")
    data = dict(data)
    data.setdefault("event_id", ce_event_id(ce["source"], ce["id"]))
    if "occurred_at" not in data and isinstance(ce.get("time"), str):
        data["occurred_at"] = ce["time"]
    data.setdefault("source", "cloudevents")
    return data


def items_of(doc: Any, mt: str, max_events: int) -> list[tuple[Any, bool]]:
    """(payload, is_cloudevent) per event in the body."""
    if mt == CE_BATCH:
        if not isinstance(doc, list):
            raise BodyError(400, "not_an_array", f"{CE_BATCH} needs a JSON array of CloudEvents")
        out = [(d, True) for d in doc]
    elif mt == CE:
        if not isinstance(doc, dict):
            raise BodyError(400, "not_an_object", f"{CE} needs one CloudEvent object (use {CE_BATCH} for arrays)")
        out = [(doc, True)]
    elif isinstance(doc, list):
        out = [(d, isinstance(d, dict) and "specversion" in d) for d in doc]
    elif isinstance(doc, dict):
        out = [(doc, "specversion" in doc)]
    else:
        raise BodyError(400, "not_an_object", "send one event object or a JSON array of events")
    if not out:
        raise BodyError(400, "empty_batch", "the array holds no events")
    if len(out) > max_events:
        raise BodyError(413, "too_many_events", f"{len(out)} events in one request; the limit is {max_events}")
    return out


def parse_body(body: bytes, content_type: str | None, limits: Limits, max_events: int) -> Parsed:
    mt = media_type(content_type)
    parsed = Parsed()
    for i, (payload, is_ce) in enumerate(items_of(decode(body), mt, max_events)):
        item = Item(i, raw=payload)
        try:
            data = from_cloudevent(payload) if is_ce else payload
            if not isinstance(data, dict):
                raise InvalidEventError("not_an_object", "an event must be a JSON object")
            item.raw = data
            item.event = parse_event(data, limits)
        except InvalidEventError as e:
            item.reason, item.detail = e.reason, e.detail
        parsed.items.append(item)
    return parsed
