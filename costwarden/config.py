"""Typed configuration: one section per concern, from environment variables and a YAML file.

Precedence: explicit arguments > environment (COSTWARDEN_<SECTION>__<KEY>) > config file
(COSTWARDEN_CONFIG, else ./costwarden.yaml if present) > defaults. Secrets (channel URLs, store
passwords) are SecretStr and never printed.
"""
from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError
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
    bootstrap_servers: str = "localhost:9092"
    topic_raw: str = "usage.raw"
    topic_dead_letter: str = "usage.deadletter"
    topic_processed: str = "usage.processed"
    topic_budget_events: str = "budget.events"
    topic_controls: str = "controls"
    partitions: int = 6


class LimitsSettings(BaseModel):
    max_payload_bytes: int = 64 * 1024
    max_tokens_per_class: int = 10_000_000_000
    max_requests: int = 100_000_000
    max_gpu_hours: Decimal = Decimal(1_000_000)

    def limits(self) -> Limits:
        return Limits(**self.model_dump())


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
