-- costwarden schema v1. Every statement is idempotent (IF NOT EXISTS); {db} is the database.
-- Raw usage: one row per event, deduplicated by event_id (ReplacingMergeTree keeps the newest
-- ingest of an id). Rollups are materialised by the same INSERT through materialized views, so a
-- crash can never leave an event in one and not the other.
CREATE TABLE IF NOT EXISTS {db}.usage_events
(
    event_id            String,
    occurred_at         DateTime64(3, 'UTC'),
    ingested_at         DateTime64(3, 'UTC'),
    source              LowCardinality(String),
    provider            LowCardinality(String),
    model               String,
    priced_model        String,
    operation           LowCardinality(String),
    service_tier        LowCardinality(String),
    requests            UInt64,
    input_tokens        UInt64,
    cache_read_tokens   UInt64,
    cache_write_tokens  UInt64,
    cache_write_1h_tokens UInt64,
    output_tokens       UInt64,
    reasoning_tokens    UInt64,
    gpu_hours           Decimal(24, 9),
    gpu_type            LowCardinality(String),
    api_key_id          String,
    project_id          String,
    workspace_id        String,
    user_id             String,
    service_account     String,
    trace_id            String,
    tags                Map(String, String),
    team                LowCardinality(String),
    workflow            LowCardinality(String),
    cost_center         LowCardinality(String),
    env                 LowCardinality(String),
    rule_id             LowCardinality(String),
    cost_micros         Int64,
    unpriced            UInt8,
    catalogue_version   LowCardinality(String),
    provider_cost       Nullable(Decimal(38, 12)),
    provider_cost_currency LowCardinality(String)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY event_id
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.usage_rollup_minute
(
    bucket DateTime('UTC'), team LowCardinality(String), workflow LowCardinality(String),
    cost_center LowCardinality(String), env LowCardinality(String), provider LowCardinality(String),
    model String, events UInt64, requests UInt64, input_tokens UInt64, cache_read_tokens UInt64,
    cache_write_tokens UInt64, cache_write_1h_tokens UInt64, output_tokens UInt64,
    reasoning_tokens UInt64, gpu_hours Decimal(38, 9), cost_micros Int64, unpriced_events UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, team, workflow, cost_center, env, provider, model)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.usage_rollup_hour AS {db}.usage_rollup_minute;
CREATE TABLE IF NOT EXISTS {db}.usage_rollup_day AS {db}.usage_rollup_minute;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_rollup_minute TO {db}.usage_rollup_minute AS
SELECT toStartOfMinute(occurred_at) AS bucket, team, workflow, cost_center, env, provider,
       priced_model AS model, count() AS events, sum(requests) AS requests,
       sum(input_tokens) AS input_tokens, sum(cache_read_tokens) AS cache_read_tokens,
       sum(cache_write_tokens) AS cache_write_tokens, sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
       sum(output_tokens) AS output_tokens, sum(reasoning_tokens) AS reasoning_tokens,
       sum(toDecimal128(gpu_hours, 9)) AS gpu_hours, sum(cost_micros) AS cost_micros, sum(unpriced) AS unpriced_events
FROM {db}.usage_events
GROUP BY bucket, team, workflow, cost_center, env, provider, model;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_rollup_hour TO {db}.usage_rollup_hour AS
SELECT toStartOfHour(occurred_at) AS bucket, team, workflow, cost_center, env, provider,
       priced_model AS model, count() AS events, sum(requests) AS requests,
       sum(input_tokens) AS input_tokens, sum(cache_read_tokens) AS cache_read_tokens,
       sum(cache_write_tokens) AS cache_write_tokens, sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
       sum(output_tokens) AS output_tokens, sum(reasoning_tokens) AS reasoning_tokens,
       sum(toDecimal128(gpu_hours, 9)) AS gpu_hours, sum(cost_micros) AS cost_micros, sum(unpriced) AS unpriced_events
FROM {db}.usage_events
GROUP BY bucket, team, workflow, cost_center, env, provider, model;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_rollup_day TO {db}.usage_rollup_day AS
SELECT toStartOfDay(occurred_at) AS bucket, team, workflow, cost_center, env, provider,
       priced_model AS model, count() AS events, sum(requests) AS requests,
       sum(input_tokens) AS input_tokens, sum(cache_read_tokens) AS cache_read_tokens,
       sum(cache_write_tokens) AS cache_write_tokens, sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
       sum(output_tokens) AS output_tokens, sum(reasoning_tokens) AS reasoning_tokens,
       sum(toDecimal128(gpu_hours, 9)) AS gpu_hours, sum(cost_micros) AS cost_micros, sum(unpriced) AS unpriced_events
FROM {db}.usage_events
GROUP BY bucket, team, workflow, cost_center, env, provider, model;

-- Invalid input, kept with the reason (the dead-letter stream's durable end).
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    received_at DateTime64(3, 'UTC'), source LowCardinality(String), reason LowCardinality(String),
    detail String, payload String, payload_sha256 String
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(received_at)
ORDER BY (payload_sha256, reason);

-- Budget events: threshold crossings, spikes, period roll-overs (append only).
CREATE TABLE IF NOT EXISTS {db}.budget_events
(
    key String, at DateTime64(3, 'UTC'), budget_id LowCardinality(String), period_start DateTime('UTC'),
    kind LowCardinality(String), threshold String, spend_micros Int64, amount_micros Int64,
    forecast_micros Int64, workflow String, detail String
)
ENGINE = ReplacingMergeTree(at)
ORDER BY key;

-- Alert outbox: one row per (budget, period, threshold); `version` orders state changes.
CREATE TABLE IF NOT EXISTS {db}.alert_outbox
(
    key String, version UInt64, created_at DateTime64(3, 'UTC'), budget_id LowCardinality(String),
    channel LowCardinality(String), title String, body String, status LowCardinality(String),
    attempts UInt32, next_attempt_at DateTime64(3, 'UTC'), last_error String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (key, channel);

-- Current control per workflow (latest version wins) and the append-only audit trail.
CREATE TABLE IF NOT EXISTS {db}.controls
(
    workflow String, version UInt64, state LowCardinality(String), rate_per_min Nullable(Decimal(18, 6)),
    reason String, budget_id String, period_start Nullable(DateTime('UTC')), set_at DateTime64(3, 'UTC'),
    expires_at Nullable(DateTime64(3, 'UTC')), set_by String, kept_by_person UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY workflow;

CREATE TABLE IF NOT EXISTS {db}.control_audit
(
    at DateTime64(3, 'UTC'), seq UInt64, workflow String, from_state LowCardinality(String),
    to_state LowCardinality(String), rate_per_min Nullable(Decimal(18, 6)), reason String,
    budget_id String, actor String, actor_kind LowCardinality(String)
)
ENGINE = MergeTree
ORDER BY (workflow, at, seq);
