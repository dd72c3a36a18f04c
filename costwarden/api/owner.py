"""Which API replica owns a workflow's reservations, and forwarding a call to it (distributed mode).

Owner = rendezvous (highest random weight) hashing: for each replica URL in `api.replicas`,
weight = sha256(url + NUL + workflow); the replica with the highest weight owns the workflow.
Every replica with the same list computes the same owner without talking to the others, and
adding or removing a replica moves only the workflows it gains or loses.

A hold id starts with its owner's tag (the first 8 hex digits of sha256(url)) and a dash, so
settle / release are routed by the id alone. A replica that is not the owner forwards the call
over HTTP with the caller's bearer token and returns the owner's answer; the response header
`X-Costwarden-Owner` names the replica that answered. Owner unreachable: 503 with the reason
(fail closed: a reservation is never admitted without its owner).
"""
from __future__ import annotations

import hashlib

import httpx
from fastapi import HTTPException, Request, Response

from costwarden.errors import ConfigError

OWNER_HEADER = "X-Costwarden-Owner"
FORWARDED_HEADER = "X-Costwarden-Forwarded-By"


def _tag(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:8]


class ReplicaRouter:
    def __init__(self, replicas: list[str], self_url: str | None) -> None:
        self.replicas = [r.rstrip("/") for r in replicas]
        if not self.replicas:
            raise ConfigError("api.replicas is empty")
        if len(set(self.replicas)) != len(self.replicas):
            raise ConfigError("api.replicas lists a replica twice")
        self.self_url = (self_url or "").rstrip("/")
        if self.self_url not in self.replicas:
            raise ConfigError(f"api.self_url {self_url!r} must be one of api.replicas {self.replicas}")
        self.by_tag = {_tag(u): u for u in self.replicas}
        if len(self.by_tag) != len(self.replicas):  # pragma: no cover - a sha256 prefix collision
            raise ConfigError("two api.replicas share a tag; change one URL")
        self.tag = _tag(self.self_url)

    @classmethod
    def from_settings(cls, api) -> "ReplicaRouter | None":
        return cls(api.replicas, api.self_url) if api.replicas else None

    def owner(self, workflow: str) -> str:
        def weight(url: str) -> bytes:
            return hashlib.sha256(url.encode() + b"\0" + workflow.encode()).digest()
        return max(self.replicas, key=weight)

    def owner_of_hold(self, hold_id: str) -> str:
        url = self.by_tag.get(hold_id.split("-", 1)[0])
        if url is None:
            raise HTTPException(404, f"no open reservation {hold_id!r} (no replica issued this id)")
        return url

    @property
    def id_prefix(self) -> str:
        return self.tag + "-"


async def route(request: Request, response: Response, rt, owner: str | None, content: bytes) -> Response | None:
    """None: answer here (this replica owns it, or not distributed). Else the owner's answer."""
    router = getattr(rt, "router", None)
    if router is None or owner is None:
        return None
    if owner == router.self_url:
        response.headers[OWNER_HEADER] = owner
        request.state.owner = owner  # the app's error handlers add it too (409, 404, 422)
        return None
    if request.headers.get(FORWARDED_HEADER):  # the replica lists disagree: never ping-pong
        raise HTTPException(503, f"{request.headers[FORWARDED_HEADER]} forwarded this to {router.self_url}, "
                                 f"which computes the owner {owner}: the replicas' api.replicas lists differ")
    url = owner + request.url.path
    headers = {"Authorization": request.headers.get("authorization", ""), FORWARDED_HEADER: router.self_url,
               "Content-Type": request.headers.get("content-type", "application/json")}
    try:
        async with httpx.AsyncClient(timeout=rt.settings.api.owner_timeout_s) as client:
            r = await client.post(url, content=content, headers=headers)
    except httpx.HTTPError as e:
        raise HTTPException(503, f"the owner of this workflow's reservations, {owner}, did not answer "
                                 f"({type(e).__name__}): failed closed, no reservation was granted",
                            headers={OWNER_HEADER: owner}) from None
    out = Response(r.content, status_code=r.status_code, media_type=r.headers.get("content-type"))
    out.headers[OWNER_HEADER] = r.headers.get(OWNER_HEADER, owner)
    return out
