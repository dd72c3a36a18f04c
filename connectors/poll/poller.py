"""The poller: pull a source window by window, hand settled buckets to the pipeline, checkpoint.

Per window [start, end) (bucket-aligned, never past the settle horizon):
    fetch every page  ->  drop buckets that end after the horizon  ->  pure parser
    ->  compare with the stored buckets (revise.plan)  ->  pipeline.ingest(new + revision events)
    ->  cost lines replaced in provider_cost_lines  ->  rejects to dead_letters
    ->  cursor := max(cursor, end)                 (the checkpoint, after the data is durable)
A crash anywhere before the checkpoint re-polls that window on restart; the store comparison
makes that re-poll emit nothing already stored, so a restart neither misses nor double counts.
Each run starts `lookback` before the cursor, so late revisions of closed buckets are caught.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Mapping

from pydantic import SecretStr

from costwarden.config import PollerSettings
from costwarden.connectors.base import parse_time
from costwarden.errors import ConfigError, ConnectorAuthError, ConnectorError, InvalidEventError
from costwarden.streams.process import DeadLetter

from .http import HttpClient, RetryPolicy
from .revise import plan
from .source import PulledSource, Window, fetch_pages, width_of
from .state import PollState

log = logging.getLogger("costwarden.connectors.poll")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class PollReport:
    connector: str
    windows: int = 0
    pages: int = 0
    new_buckets: int = 0
    revised_buckets: int = 0
    unchanged_buckets: int = 0
    cost_lines: int = 0
    cost_nanos: int = 0
    dead_letters: Counter = field(default_factory=Counter)
    cursor: datetime | None = None
    horizon: datetime | None = None

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items()}
        d["dead_letters"] = dict(self.dead_letters)
        d["cursor"] = self.cursor.isoformat() if self.cursor else None
        d["horizon"] = self.horizon.isoformat() if self.horizon else None
        return d


def align_down(d: datetime, width: timedelta) -> datetime:
    secs = int((d - _EPOCH).total_seconds())
    step = int(width.total_seconds())
    return _EPOCH + timedelta(seconds=secs - secs % step)


def resolve_key(source: PulledSource, ps: PollerSettings, environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """The API key: settings api_key, else api_key_file, else the provider's environment variable."""
    env = os.environ if environ is None else environ
    if ps.api_key is not None and ps.api_key.get_secret_value():
        return ps.api_key
    if ps.api_key_file:
        try:
            text = Path(ps.api_key_file).read_text().strip()
        except OSError as e:
            raise ConfigError(f"{source.name}: cannot read api_key_file {ps.api_key_file}: {e.strerror}") from None
        if text:
            return SecretStr(text)
    if source.env_key and env.get(source.env_key):
        return SecretStr(env[source.env_key].strip())
    if source.needs_key:
        raise ConfigError(f"{source.name}: no API key; set {source.env_key} or "
                          f"connectors.sources.{source.name}.api_key_file")
    return None


class Poller:
    def __init__(self, source: PulledSource, pipeline, settings: PollerSettings | None = None, *,
                 clock: Callable[[], datetime] | None = None, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, environ: Mapping[str, str] | None = None) -> None:
        self.source = source
        self.pipeline = pipeline
        default_width = "1h" if "1h" in source.widths else source.widths[-1]
        self.settings = ps = settings or PollerSettings(bucket_width=default_width)
        self.width = width_of(ps.bucket_width, source.widths)
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.state = PollState(pipeline.store)
        key = resolve_key(source, ps, environ)
        self.client = HttpClient(source.name, ps.base_url or source.default_base_url,
                                 headers=source.headers(key.get_secret_value() if key else None), secret=key,
                                 retry=retry or RetryPolicy(), sleep=sleep)
        unknown = set(ps.group_by or ()) - set(source.group_fields)
        if unknown:
            raise ConfigError(f"{source.name}: cannot group by {', '.join(sorted(unknown))}; "
                              f"choose from {', '.join(source.group_fields) or 'nothing'}")
        self.group_by = tuple(source.group_fields if ps.group_by is None else ps.group_by)

    # --- planning -----------------------------------------------------------------------------
    def horizon(self) -> datetime:
        """Buckets that end at or before this instant are closed and settled."""
        return align_down(self.clock() - timedelta(seconds=self.settings.settle_s), self.width)

    def windows(self, start: datetime | None = None, end: datetime | None = None) -> list[tuple[datetime, datetime]]:
        horizon = self.horizon()
        if end is not None:
            horizon = min(horizon, align_down(end, self.width))
        lookback = timedelta(hours=self.settings.lookback_hours)
        if start is not None:
            begin = start
        else:
            cursor = self.state.cursor(self.source.name)
            if cursor is not None:
                begin = cursor - lookback
            elif self.settings.start:
                begin = _time(self.settings.start, "start")
            else:
                begin = horizon - max(lookback, self.width)
        begin = align_down(begin, self.width)
        default_hours = 24 if self.width < timedelta(days=1) else 168
        span = timedelta(hours=float(self.settings.options.get("window_hours", default_hours)))
        span = max(self.width, align_down(_EPOCH + span, self.width) - _EPOCH)
        out, w = [], begin
        while w < horizon:
            out.append((w, min(w + span, horizon)))
            w += span
        return out

    # --- running ------------------------------------------------------------------------------
    def run_once(self, start: datetime | None = None, end: datetime | None = None,
                 on_window: Callable[[PollReport], None] | None = None) -> PollReport:
        """One pass from the cursor (or `start`) to the settle horizon (or `end`)."""
        report = PollReport(self.source.name, horizon=self.horizon())
        for ws, we in self.windows(start, end):
            self.poll_window(ws, we, report)
            if on_window:
                on_window(report)
        report.cursor = self.state.cursor(self.source.name)
        return report

    def poll_window(self, ws: datetime, we: datetime, report: PollReport) -> None:
        src = self.source
        win = Window(ws, we, self.settings.bucket_width, self.group_by, dict(self.settings.options))
        pages = []
        for path, params in src.requests(win):
            for page in fetch_pages(self.client, path, params, src.paged):
                pages.append(src.closed(page, we))
        report.pages += len(pages)
        result = src.parse(pages, win)
        rejects = list(result.rejects)
        if src.event_source:
            events = [e for e in result.events if ws <= e.occurred_at < we]
            if len(events) != len(result.events):
                log.warning("%s: %d bucket(s) outside the window asked for were ignored",
                            src.name, len(result.events) - len(events))
            p = plan(events, self.state.stored(src.event_source, ws, we))
            rejects += p.rejects
            if p.events:
                batch = self.pipeline.ingest(p.events, src.name)
                report.cost_nanos += batch.cost_nanos
                report.dead_letters.update(batch.dead)
            report.new_buckets += p.new
            report.revised_buckets += p.revised
            report.unchanged_buckets += p.unchanged
        if result.cost_lines or not src.event_source:
            report.cost_lines += self.state.write_cost_lines(src.name, result.cost_lines, ws.date(), we.date())
        if rejects:
            now = self.clock()  # through the pipeline's commit, like every other dead letter
            batch = self.pipeline.ingest([DeadLetter(now, src.name, r.reason, r.detail[:2000], r.payload)
                                          for r in rejects], src.name)
            report.dead_letters.update(batch.dead)
        cursor = self.state.cursor(src.name)
        if cursor is None or we > cursor:
            self.state.save_cursor(src.name, we, f"window {ws.isoformat()}..{we.isoformat()}")
        report.windows += 1
        log.info("%s: window %s..%s: %d page(s), %d new, %d revised, %d unchanged, %d rejected",
                 src.name, ws.isoformat(), we.isoformat(), len(pages), report.new_buckets,
                 report.revised_buckets, report.unchanged_buckets, len(rejects))


def _time(text: str, name: str) -> datetime:
    try:
        return parse_time(text, name)
    except InvalidEventError as e:
        raise ConfigError(f"connector {name}: {e.detail}") from None


def run_forever(pollers: list[Poller], stop: threading.Event,
                interval_s: float | None = None) -> list[ConnectorAuthError]:
    """Poll each connector every interval until `stop` is set. An auth error stops that connector
    (logged once, clearly); other connector errors are logged and retried next interval. Returns
    the auth errors that stopped connectors (all of them stopped: the loop ends)."""
    active = list(pollers)
    refused: list[ConnectorAuthError] = []
    while active and not stop.is_set():
        for p in list(active):
            try:
                p.run_once()
            except ConnectorAuthError as e:
                log.error("%s", e)
                refused.append(e)
                active.remove(p)
            except ConnectorError as e:
                log.warning("%s (will retry in the next interval)", e)
        if active:
            stop.wait(interval_s if interval_s is not None else min(p.settings.interval_s for p in active))
    return refused
