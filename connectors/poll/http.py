"""The HTTP transport of the pollers: GET JSON with retries, on the standard library (urllib).

    429 and 5xx, connection errors, timeouts  -> retried with exponential backoff (jittered,
                                                 capped); a Retry-After header (seconds or an
                                                 HTTP date) is respected as the minimum wait
    401 / 403                                 -> ConnectorAuthError at once (never retried)
    other 4xx                                 -> ConnectorError with the provider's message
Secrets live in headers only; no URL, log record or error carries them (the provider's error
text is redacted of the key before it is shown).
"""
from __future__ import annotations

import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping, Sequence

from pydantic import SecretStr

from costwarden.connectors.base import loads
from costwarden.errors import ConnectorAuthError, ConnectorError

log = logging.getLogger("costwarden.connectors.poll")

Params = Sequence[tuple[str, Any]]


@dataclass
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.2
    max_retry_after: float = 3600.0   # a provider asking to wait longer than this is capped

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        d = min(self.base_delay * (2 ** max(attempt - 1, 0)), self.max_delay) * (1 - self.jitter * rng.random())
        return max(d, min(retry_after, self.max_retry_after)) if retry_after is not None else d


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    v = value.strip()
    if v.isdigit():
        return float(v)
    try:
        when = parsedate_to_datetime(v)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


@dataclass
class HttpClient:
    """GET JSON from one API. `name` labels errors (e.g. "openai-usage")."""

    name: str
    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # holds the key
    secret: SecretStr | None = None         # redacted from any provider text we show
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    requests_made: int = 0

    def url(self, path: str, params: Params = ()) -> str:
        q = urllib.parse.urlencode([(k, v) for k, v in params if v is not None], doseq=True)
        return self.base_url.rstrip("/") + "/" + path.lstrip("/") + (f"?{q}" if q else "")

    def get_json(self, path: str, params: Params = ()) -> Any:
        url = self.url(path, params)
        req = urllib.request.Request(url, headers={"Accept": "application/json", **self.headers}, method="GET")
        attempt = 0
        while True:
            attempt += 1
            self.requests_made += 1
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    body = resp.read()
                return loads(body)
            except urllib.error.HTTPError as e:
                status, text = e.code, self._text(e)
                wait_hint = retry_after_seconds(e.headers.get("Retry-After") if e.headers else None)
                if status in (401, 403):
                    raise ConnectorAuthError(
                        f"{self.name}: the provider refused our credentials (HTTP {status}) at {path}; "
                        f"the connector is stopped. Check its api_key / api_key_file / environment key. "
                        f"Provider said: {text}") from None
                if status != 429 and status < 500:
                    raise ConnectorError(f"{self.name}: HTTP {status} from {path}: {text}") from None
                problem = f"HTTP {status}"
            except ValueError as e:  # a body that is not JSON
                raise ConnectorError(f"{self.name}: {path} answered with something that is not JSON "
                                     f"({type(e).__name__})") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                wait_hint, problem = None, f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            if attempt >= self.retry.max_attempts:
                raise ConnectorError(f"{self.name}: {path} failed {attempt} times, last: {problem}")
            delay = self.retry.delay(attempt, wait_hint, self.rng)
            log.warning("%s: %s from %s (attempt %d), retrying in %.2fs", self.name, problem, path, attempt, delay)
            self.sleep(delay)

    def _text(self, e: urllib.error.HTTPError) -> str:
        try:
            raw = e.read(4096).decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - the body is only for the message
            return ""
        try:
            data = json.loads(raw)
            err = data.get("error", data) if isinstance(data, dict) else data
            raw = err.get("message", raw) if isinstance(err, dict) else str(err)
        except ValueError:
            pass
        if self.secret is not None:
            key = self.secret.get_secret_value()
            if key:
                raw = raw.replace(key, "****")
        return " ".join(str(raw).split())[:300]
