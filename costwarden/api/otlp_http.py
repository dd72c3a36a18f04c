"""OTLP/HTTP as its clients speak it (the OTLP specification, "OTLP/HTTP"): the body's encoding
from Content-Type, its compression from Content-Encoding, and answers in the request's encoding.

    Content-Type       application/x-protobuf (or application/protobuf): binary ExportTraceServiceRequest
                       application/json (or none): its OTLP/JSON form
                       anything else: 415 naming these
    Content-Encoding   gzip (x-gzip), deflate (zlib format, or raw deflate; also named zlib), identity,
                       or none; a list is undone last-first; anything else: 415 naming these
    size               the body as sent, and again after each decompression, is capped at
                       api.max_body_bytes: past it 413 body_too_large (never retried by exporters),
                       and inflating stops one byte past it (a 64 MiB gzip bomb: ~9 ms, ~2x the cap
                       of memory at the peak)

Answers: 200 with an ExportTraceServiceResponse (partial_success with rejected_spans and an
error_message when spans were dead-lettered) in the request's encoding; a 4xx/5xx raised here or
by the route is a google.rpc.Status in the request's encoding: binary for protobuf (message
"<reason>: <detail>", code, and an ErrorInfo detail whose reason is ours), and for JSON our usual
`{"error", "detail"}` plus the Status fields `code` and `message`.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from costwarden.api.ingest import BodyError

JSON = "application/json"
PROTOBUF = ("application/x-protobuf", "application/protobuf")
ENCODINGS = ("gzip", "deflate", "identity")
_ALIASES = {"x-gzip": "gzip", "zlib": "deflate", "": "identity"}
# google.rpc.Code of an HTTP status (OTLP clients do not act on it; it is for the logs)
_GRPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 415: 3, 422: 3, 429: 8, 500: 13, 501: 12, 503: 14}


@dataclass(frozen=True)
class Encoding:
    media_type: str  # as it will be answered: the request's own type

    @property
    def protobuf(self) -> bool:
        return self.media_type in PROTOBUF

    @classmethod
    def of(cls, request: Request) -> "Encoding":
        mt = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if not mt:
            return cls(JSON)
        if mt != JSON and mt not in PROTOBUF:
            raise BodyError(415, "unsupported_media_type",
                            f"{mt!r}: send an ExportTraceServiceRequest as application/x-protobuf "
                            f"(binary, the exporters' default) or application/json (OTLP/JSON)")
        return cls(mt)

    # --- answers ------------------------------------------------------------------------------
    def success(self, rejected: int = 0, message: str = "") -> Response:
        if self.protobuf:
            resp = ExportTraceServiceResponse()
            if rejected or message:
                resp.partial_success.rejected_spans = rejected
                resp.partial_success.error_message = message
            return Response(resp.SerializeToString(), media_type=self.media_type)
        if not (rejected or message):
            return JSONResponse({})  # OTLP: full success leaves partialSuccess unset
        return JSONResponse({"partialSuccess": {"rejectedSpans": rejected, "errorMessage": message}})

    def error(self, e: BodyError) -> Response:
        code = _GRPC_CODE.get(e.status, 2)
        message = f"{e.reason}: {e.detail}"
        if not self.protobuf:
            return JSONResponse({"error": e.reason, "detail": e.detail, "code": code, "message": message},
                                status_code=e.status)
        status = status_pb2.Status(code=code, message=message)
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=e.reason, domain="costwarden"))
        return Response(status.SerializeToString(), status_code=e.status, media_type=self.media_type)


def content_codings(request: Request) -> list[str]:
    """The Content-Encoding list, in the order to undo it (last applied first); 415 for one we lack."""
    raw = request.headers.get("content-encoding") or ""
    out = []
    for token in raw.split(","):
        c = token.strip().lower()
        c = _ALIASES.get(c, c)
        if c not in ENCODINGS:
            raise BodyError(415, "unsupported_content_encoding",
                            f"Content-Encoding {token.strip()[:40]!r}: send gzip, deflate or no compression")
        if c != "identity":
            out.append(c)
    return out[::-1]


def decompress(body: bytes, codings: list[str], limit: int) -> bytes:
    """Undo each coding, never producing more than `limit` bytes (413 past it)."""
    for c in codings:
        body = _gunzip(body, limit) if c == "gzip" else _inflate(body, limit)
    return body


def _gunzip(data: bytes, limit: int) -> bytes:
    out = bytearray()
    while True:  # concatenated gzip members are one body (RFC 1952)
        rest = _run(zlib.decompressobj(16 + zlib.MAX_WBITS), data, limit - len(out), "gzip", out)
        if not rest.strip(b"\x00"):  # trailing zero padding is tolerated, as Python's gzip does
            return bytes(out)
        data = rest


def _inflate(data: bytes, limit: int) -> bytes:
    # HTTP's "deflate" is the zlib format (RFC 1950); some senders write raw deflate (RFC 1951)
    zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
    out = bytearray()
    rest = _run(zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS), data, limit, "deflate", out)
    if rest:
        raise BodyError(400, "malformed_compression", f"deflate: {len(rest)} bytes after the end of the stream")
    return bytes(out)


def _run(d, data: bytes, room: int, name: str, out: bytearray) -> bytes:
    """Inflate one stream into `out`, at most `room` bytes; the bytes after its end."""
    try:
        chunk = d.decompress(data, room + 1)
    except zlib.error as e:
        raise BodyError(400, "malformed_compression", f"{name}: {e}") from None
    if len(chunk) > room:
        raise BodyError(413, "body_too_large", f"the {name} body inflates past the limit of "
                                               f"{len(out) + room} bytes (api.max_body_bytes)")
    out += chunk
    if not d.eof:
        raise BodyError(400, "malformed_compression", f"{name}: the stream is truncated")
    return d.unused_data
