-- costwarden schema v9: the last two reads of `usage_events FINAL` on a page, as rollups kept by
-- the same INSERT as the raw events (materialized views, deduplicated with the raw block's token
-- like the other rollups), back-filled from the raw table once (TRUNCATE first: a migration that
-- died before it was recorded runs again from the start).
--   run_rollup_day     workflow runs (the `run_id` tag) per day and report dimensions: the finance
--                      report's runs and cost per run grow with the runs, not with stored events
--   source_rollup_day  cost per day, source, provider, project and workspace, and the cost the
--                      events reported themselves (LiteLLM, OpenCost; `reported_cost`): what the
--                      reconciliation compares with the providers' cost reports
CREATE TABLE IF NOT EXISTS {db}.run_rollup_day
(
    bucket DateTime('UTC'), team LowCardinality(String), workflow LowCardinality(String),
    cost_center LowCardinality(String), env LowCardinality(String), provider LowCardinality(String),
    model String, run_id String, events UInt64, cost_nanos Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, team, workflow, cost_center, env, provider, model, run_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.source_rollup_day
(
    bucket Date, source LowCardinality(String), provider LowCardinality(String), project_id String,
    workspace_id String, provider_cost_currency LowCardinality(String), with_provider_cost UInt8,
    events UInt64, cost_nanos Int64, unpriced UInt64, reported_cost Decimal(38, 12)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, source, provider, project_id, workspace_id, provider_cost_currency, with_provider_cost)
SETTINGS non_replicated_deduplication_window = 1000;

TRUNCATE TABLE {db}.run_rollup_day;
TRUNCATE TABLE {db}.source_rollup_day;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_run_day TO {db}.run_rollup_day AS
SELECT toStartOfDay(occurred_at) AS bucket, team, workflow, cost_center, env, provider, priced_model AS model,
       tags['run_id'] AS run_id, count() AS events, sum(cost_nanos) AS cost_nanos
FROM {db}.usage_events WHERE tags['run_id'] != ''
GROUP BY bucket, team, workflow, cost_center, env, provider, model, run_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_source_day TO {db}.source_rollup_day AS
SELECT toDate(occurred_at) AS bucket, source, provider, project_id, workspace_id, provider_cost_currency,
       toUInt8(provider_cost IS NOT NULL) AS with_provider_cost, count() AS events, sum(cost_nanos) AS cost_nanos,
       sum(unpriced) AS unpriced, sum(ifNull(provider_cost, toDecimal128(0, 12))) AS reported_cost
FROM {db}.usage_events
GROUP BY bucket, source, provider, project_id, workspace_id, provider_cost_currency, with_provider_cost;

INSERT INTO {db}.run_rollup_day
SELECT toStartOfDay(occurred_at) AS bucket, team, workflow, cost_center, env, provider, priced_model AS model,
       tags['run_id'] AS run_id, count() AS events, sum(cost_nanos) AS cost_nanos
FROM {db}.usage_events FINAL WHERE tags['run_id'] != ''
GROUP BY bucket, team, workflow, cost_center, env, provider, model, run_id;

INSERT INTO {db}.source_rollup_day
SELECT toDate(occurred_at) AS bucket, source, provider, project_id, workspace_id, provider_cost_currency,
       toUInt8(provider_cost IS NOT NULL) AS with_provider_cost, count() AS events, sum(cost_nanos) AS cost_nanos,
       sum(unpriced) AS unpriced, sum(ifNull(provider_cost, toDecimal128(0, 12))) AS reported_cost
FROM {db}.usage_events FINAL
GROUP BY bucket, source, provider, project_id, workspace_id, provider_cost_currency, with_provider_cost;
