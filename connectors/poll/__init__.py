"""Pollers for the sources that are pulled: transport (HTTP, paging, retries), durable cursors and
bucket revisions. The parsers they call are the pure ones in costwarden.connectors.

    SOURCES["openai-usage"]  -> PulledSource;  Poller(source, pipeline, settings).run_once()
"""
from __future__ import annotations

from . import anthropic, openai, opencost
from .http import HttpClient, RetryPolicy
from .poller import Poller, PollReport, resolve_key, run_forever
from .source import PulledSource

SOURCES: dict[str, PulledSource] = {s.name: s for s in (
    openai.USAGE, openai.COSTS, anthropic.USAGE, anthropic.COSTS, opencost.ALLOCATION)}

__all__ = ["SOURCES", "HttpClient", "RetryPolicy", "Poller", "PollReport", "PulledSource", "resolve_key",
           "run_forever"]
