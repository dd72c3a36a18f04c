"""Typed configuration: one section per concern, from environment variables and a YAML file.

Precedence: explicit arguments > environment (COSTWARDEN_<SECTION>__<KEY>) > config file
(COSTWARDEN_CONFIG, else ./costwarden.yaml if present) > defaults. Secrets (channel URLs, store
passwords) are SecretStr and never printed.
"""
from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from costwarden.errors import ConfigError
from costwarden.events import Limits


class StoreSettings(BaseModel):
    url: SecretStr = Field(SecretStr("chdb"), description="'chdb' (embedded) or http(s)://user:pass@host:8123")
    database: str = "costwarden"


class PipelineSettings(BaseModel):
    batch_size: int = Field(5000, ge=1, le=200_000)
    dedupe_horizon_hours: int = Field(48, ge=1)
    dedupe_max_entries: int = Field(2_000_000, ge=1000)


class BudgetSettings(BaseModel):
    budgets_file: Path | None = None
    rules_file: Path | None = None
    catalogue_file: Path | None = None
    timezone: str = "UTC"


class AlertSettings(BaseModel):
    channels: dict[str, SecretStr] = Field(default_factory=dict, description="name -> Apprise URL")
    delivery_interval_s: float = 2.0
    max_attempts: int = 8


class KafkaSettings(BaseModel):
    """Kafka topics and the distributed worker (costwarden/distributed, docs/distributed.md)."""

    bootstrap_servers: str = "localhost:9092"
    topic_raw: str = "usage.raw"
    topic_dead_letter: str = "usage.deadletter"
    topic_processed: str = "usage.processed"
    topic_budget_usage: str = "usage.by-budget"     # internal: usage re-keyed by budget id
    topic_budget_events: str = "budget.events"
    topic_controls: str = "controls"                # compacted, keyed by workflow
    partitions: int = Field(6, ge=1)
    budget_partitions: int = Field(3, ge=1)         # usage.by-budget: one owner per budget
    replication_factor: int = Field(1, ge=1)
    retention_hours: int = Field(7 * 24, ge=1)      # raw / processed / by-budget
    dead_letter_retention_hours: int = Field(30 * 24, ge=1)
    budget_events_retention_hours: int = Field(90 * 24, ge=1)
    app_id: str = "costwarden"                      # the consumer group
    processing_guarantee: str = Field("at_least_once", pattern="^(exactly_once|at_least_once)$")
    batch_max: int = Field(2000, ge=1)              # events per flush (per take)
    # how long a batch waits to fill: the first stage of the crossing event -> block path (docs/distributed.md)
    batch_within_s: float = Field(0.25, gt=0)
    session_timeout_s: float = Field(10.0, ge=6)
    metrics_port: int = Field(9108, ge=0, le=65535)  # 0: any free port (logged)


class LimitsSettings(BaseModel):
    max_payload_bytes: int = 64 * 1024
    max_tokens_per_class: int = 10_000_000_000
    max_requests: int = 100_000_000
    max_gpu_hours: Decimal = Decimal(1_000_000)

    def limits(self) -> Limits:
        return Limits(**self.model_dump())


class PollerSettings(BaseModel):
    """One pulled source (`costwarden connectors run <name>`); see connectors/README.md."""

    base_url: str | None = None                     # None: the provider's public API
    api_key: SecretStr | None = None                # else api_key_file, else the provider's env var
    api_key_file: Path | None = None
    bucket_width: str = "1h"                        # 1m | 1h | 1d (cost reports: 1d)
    start: str | None = None                        # RFC 3339: first bucket when no cursor is stored
    settle_s: int = Field(3600, ge=0)               # a bucket is taken once closed this long ago
    lookback_hours: int = Field(48, ge=0)           # closed buckets re-polled for late revisions
    group_by: list[str] | None = None               # None: every group_by field of the source
    interval_s: float = Field(300, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)


class ConnectorsSettings(BaseModel):
    sources: dict[str, PollerSettings] = Field(default_factory=dict)
    reconcile_threshold_pct: Decimal = Field(Decimal("5"), ge=0)
    reconcile_channel: str | None = None            # an alerts.channels name (the price-catalogue owner)


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_events_per_request: int = Field(10_000, ge=1)
    reservation_ttl_s: float = Field(300.0, gt=0)
    stream_heartbeat_s: float = Field(15.0, gt=0)
    # distributed mode: reservations are owned per workflow by one of these replicas (api/README.md)
    replicas: list[str] = Field(default_factory=list, description="every API replica's base URL")
    self_url: str | None = Field(None, description="this replica's URL, as written in `replicas`")
    owner_timeout_s: float = Field(5.0, gt=0)       # a forwarded reservation call; then 503
    settled_max_s: float = Field(3600.0, gt=0)      # settled spend counted until stored, at most this long
    # tokens: every replica reloads them from the store this often (a revoke elsewhere takes effect
    # within it) and at once when a request brings an unknown token (one load at a time)
    token_refresh_s: float = Field(0.5, gt=0, le=3600)
    # the CLI beside a running `costwarden serve` (cli/remote.py): its bearer token (the
    # COSTWARDEN_API_TOKEN environment variable wins); `serve` writes an admin token of its own to
    # DATA_DIR/serve.token (mode 0600) for the CLI of the same user unless local_token is false
    token: SecretStr | None = None
    local_token: bool = True
    # GET /v1/decisions/{workflow} also from a process of its own on this port (docs/gateway.md);
    # its scheduling priority: high / realtime need root or CAP_SYS_NICE (else it says so, runs normal)
    decisions_port: int | None = Field(None, ge=0, le=65535)
    decisions_priority: Literal["normal", "high", "realtime"] = "normal"


class UnpricedSettings(BaseModel):
    """How an event whose model (or GPU type) is not in the price catalogue is charged to budgets.
    Tried in order: its provider-reported cost (LiteLLM response_cost, OpenCost), then the first
    `fallback` that applies, then `block` if set; else it costs nothing. Reports keep it unpriced."""

    provider_cost: bool = True
    # "provider_max": each token class at the provider's most expensive rate (any model of it and of the
    # providers it inherits); "fixed": fixed_usd_per_1k. An empty list: no fallback.
    fallback: list[Literal["provider_max", "fixed"]] = Field(default_factory=lambda: ["provider_max"])
    fixed_usd_per_1k: dict[Literal["input", "cache_read", "cache_write", "cache_write_1h", "output"],
                           Decimal] = Field(default_factory=dict)  # a cache class left out: the input rate
    fixed_usd_per_gpu_hour: Decimal | None = Field(None, ge=0)
    block: bool = False  # nothing above applies: the price says policy "block" (the workflow is blocked)
    # alert channels (names in alerts.channels) told once per (model, UTC day) that unpriced usage appeared
    notify: list[str] = Field(default_factory=list)

    @field_validator("fixed_usd_per_1k")
    @classmethod
    def _non_negative(cls, v: dict) -> dict:
        for k, rate in v.items():
            if rate < 0:
                raise ValueError(f"{k}: a rate must be >= 0")
        return v

    @model_validator(mode="after")
    def _fixed_needs_rates(self) -> "UnpricedSettings":
        if "fixed" in self.fallback and not (
                {"input", "output"} <= set(self.fixed_usd_per_1k) or self.fixed_usd_per_gpu_hour is not None):
            raise ValueError("the fixed fallback needs fixed_usd_per_1k with input and output "
                             "(or fixed_usd_per_gpu_hour)")
        return self


class PricingSettings(BaseModel):
    unpriced: UnpricedSettings = UnpricedSettings()

    def unpriced_policy(self):
        """The streams-level policy: `catalogue.with_unpriced_policy(settings.pricing.unpriced_policy())`."""
        from costwarden.streams.pricing import UnpricedPolicy

        u = self.unpriced
        return UnpricedPolicy(provider_cost=u.provider_cost, fallback=tuple(u.fallback),
                              fixed_per_1k=dict(u.fixed_usd_per_1k), fixed_per_gpu_hour=u.fixed_usd_per_gpu_hour,
                              block=u.block)


def _config_file() -> Path | None:
    p = os.environ.get("COSTWARDEN_CONFIG")
    if p:
        return Path(p)
    default = Path("costwarden.yaml")
    return default if default.exists() else None


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field, field_name):  # pragma: no cover - unused by __call__
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _config_file()
        if not path:
            return {}
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"config file {path}: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COSTWARDEN_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Path(".costwarden")
    store: StoreSettings = StoreSettings()
    pipeline: PipelineSettings = PipelineSettings()
    budgets: BudgetSettings = BudgetSettings()
    alerts: AlertSettings = AlertSettings()
    kafka: KafkaSettings = KafkaSettings()
    limits: LimitsSettings = LimitsSettings()
    api: ApiSettings = ApiSettings()
    connectors: ConnectorsSettings = ConnectorsSettings()
    pricing: PricingSettings = PricingSettings()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return init_settings, env_settings, _YamlSource(settings_cls), file_secret_settings


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid settings: {msgs}") from None
