"""The notifier interface and its two implementations.

    Notifier         send(channel, title, body); raises DeliveryError
    AppriseNotifier  named Apprise URLs from config (Slack, Teams, email, PagerDuty, webhooks)
    LogNotifier      a Python logger plus an in-memory list (demo, no channel configured)

Channel URLs hold secrets (tokens, passwords). They never appear in a log record, an error
or a repr: errors name the channel and the URL scheme only, and a logging filter on the
loggers Apprise and its HTTP stack write to masks every secret part of every configured URL.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Iterable, Mapping, Protocol, runtime_checkable
from urllib.parse import unquote

from pydantic import SecretStr

from costwarden.errors import ConfigError, DeliveryError

log = logging.getLogger(__name__)

MASK = "****"
_TOKEN_SPLIT = re.compile(r"[/:@?&=#,;\s]+")
_FILTERED_LOGGERS = ("apprise", "urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "requests")


@runtime_checkable
class Notifier(Protocol):
    def send(self, channel: str, title: str, body: str) -> None:
        """Deliver one message to a named channel, or raise DeliveryError."""


class _Redactor(logging.Filter):
    """Masks registered secret fragments in log records (process-wide, installed once)."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self._installed = False

    def add(self, fragments: Iterable[str]) -> None:
        with self._lock:
            self._secrets.update(f for f in fragments if f)
            if not self._installed:
                for name in _FILTERED_LOGGERS:
                    logging.getLogger(name).addFilter(self)
                self._installed = True

    def redact(self, text: str) -> str:
        # Longest first, so a whole URL is masked before its parts.
        for s in sorted(self._secrets, key=len, reverse=True):
            if s in text:
                text = text.replace(s, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        clean = self.redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


_REDACTOR = _Redactor()


def redact(text: str) -> str:
    """Mask every secret fragment of every configured channel URL in `text`."""
    return _REDACTOR.redact(text)


def _tokens(url: str) -> set[str]:
    return set(_TOKEN_SPLIT.split(url)) | set(_TOKEN_SPLIT.split(unquote(url)))


def _secret_fragments(raw: str, plugin) -> set[str]:
    """The parts of `raw` that Apprise itself hides in its privacy URL (passwords, tokens,
    keys), plus the whole URL. Works for every Apprise scheme without knowing it."""
    public = _tokens(plugin.url(privacy=True)) | {_scheme(raw)}
    frags = {t for t in _tokens(raw) - public if len(t) >= 3}
    frags.update({raw, plugin.url(privacy=False)})
    return frags


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "?"


class AppriseNotifier:
    """Delivers through Apprise to channels named in config (`oncall-search` -> URL).

    A fresh `apprise.Apprise` per send, synchronous, with connect and read timeouts of
    `timeout` seconds (and the same limit on the whole call), so a dead receiver costs at most
    about `timeout` per attempt. Apprise's own retries are off: the outbox retries.
    """

    def __init__(self, channels: Mapping[str, str | SecretStr], timeout: float = 5.0) -> None:
        import apprise

        self._apprise = apprise
        self.timeout = float(timeout)
        self._channels: dict[str, SecretStr] = {}
        self._schemes: dict[str, str] = {}
        problems = []
        for name, value in channels.items():
            raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            raw = raw.strip()
            plugin = apprise.Apprise.instantiate(raw, asset=self._asset(), suppress_exceptions=True) if raw else None
            if plugin is None:
                problems.append(f"alert channel {name!r}: not a valid Apprise URL (scheme {_scheme(raw)!r})")
                continue
            _REDACTOR.add(_secret_fragments(raw, plugin))
            self._channels[name] = SecretStr(raw)
            self._schemes[name] = _scheme(raw)
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def channels(self) -> list[str]:
        return sorted(self._channels)

    def __repr__(self) -> str:
        return f"AppriseNotifier(channels={self.channels!r}, timeout={self.timeout})"

    def _asset(self):
        # async_mode=False: dispatch in the calling thread, no shared pool to leak work into.
        return self._apprise.AppriseAsset(async_mode=False)

    def send(self, channel: str, title: str, body: str) -> None:
        secret = self._channels.get(channel)
        if secret is None:
            raise DeliveryError(f"unknown alert channel {channel!r} (configured: {', '.join(self.channels) or 'none'})")
        where = f"alert channel {channel!r} ({self._schemes[channel]})"
        try:
            obj = self._apprise.Apprise(asset=self._asset())
            plugin = obj.instantiate(secret.get_secret_value(), asset=self._asset(), suppress_exceptions=True)
            if plugin is None:
                raise DeliveryError(f"{where}: the URL could not be loaded")
            plugin.socket_connect_timeout = min(float(plugin.socket_connect_timeout), self.timeout)
            plugin.socket_read_timeout = min(float(plugin.socket_read_timeout), self.timeout)
            plugin.retry = 0
            obj.add(plugin)
            result = obj.notify(body=body, title=title, timeout=self.timeout * 2)
        except DeliveryError:
            raise
        except Exception as e:  # apprise or its HTTP stack failed in an unexpected way
            raise DeliveryError(redact(f"{where}: {type(e).__name__}: {e}")) from None
        if not result:
            reasons = "; ".join(e.message for e in result.logs() if e.level in ("WARNING", "ERROR", "CRITICAL"))
            status = getattr(getattr(result, "status", None), "name", "FAILURE").lower()
            raise DeliveryError(redact(f"{where}: delivery failed ({status}): {reasons or 'no detail'}"))


class LogNotifier:
    """Writes each message to a logger and keeps it in `sent` (channel, title, body).

    With `channels`, a name outside them is an error, like an unconfigured Apprise channel;
    without, every channel name is accepted (the demo when nothing is configured).
    """

    def __init__(self, channels: Iterable[str] | None = None, logger: logging.Logger | None = None) -> None:
        self._channels = None if channels is None else set(channels)
        self.logger = logger or logging.getLogger("costwarden.alerts.log")
        self.sent: list[tuple[str, str, str]] = []

    def __repr__(self) -> str:
        names = "any" if self._channels is None else sorted(self._channels)
        return f"LogNotifier(channels={names!r})"

    def send(self, channel: str, title: str, body: str) -> None:
        if self._channels is not None and channel not in self._channels:
            raise DeliveryError(f"unknown alert channel {channel!r} (configured: {', '.join(sorted(self._channels)) or 'none'})")
        self.logger.warning("ALERT [%s] %s\n%s", channel, title, body)
        self.sent.append((channel, title, body))
