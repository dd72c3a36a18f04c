-- costwarden schema v6: what budgets are seeded from, kept by the same INSERT as the raw events.
-- Budget scopes match on the org tag and report the top api key, which the report rollups do
-- not carry; reading `usage_events FINAL` for a period's total grew with every stored event.
-- These two rollups (hour, and minute for period edges that are not whole hours and for spike
-- baselines) are fed by materialized views, deduplicated with the raw block's token like the
-- report rollups, and back-filled from the raw table once (TRUNCATE first: a migration that
-- died before it was recorded runs again from the start).
CREATE TABLE IF NOT EXISTS {db}.budget_rollup_hour
(
    bucket DateTime('UTC'), org String, team LowCardinality(String), workflow LowCardinality(String),
    cost_center LowCardinality(String), env LowCardinality(String), provider LowCardinality(String),
    model String, key String, events UInt64, cost_micros Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, org, team, workflow, cost_center, env, provider, model, key)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.budget_rollup_minute AS {db}.budget_rollup_hour;

TRUNCATE TABLE {db}.budget_rollup_hour;
TRUNCATE TABLE {db}.budget_rollup_minute;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_budget_hour TO {db}.budget_rollup_hour AS
SELECT toStartOfHour(occurred_at) AS bucket, tags['org'] AS org, team, workflow, cost_center, env, provider,
       model, if(api_key_id != '', api_key_id, project_id) AS key, count() AS events, sum(cost_micros) AS cost_micros
FROM {db}.usage_events
GROUP BY bucket, org, team, workflow, cost_center, env, provider, model, key;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_budget_minute TO {db}.budget_rollup_minute AS
SELECT toStartOfMinute(occurred_at) AS bucket, tags['org'] AS org, team, workflow, cost_center, env, provider,
       model, if(api_key_id != '', api_key_id, project_id) AS key, count() AS events, sum(cost_micros) AS cost_micros
FROM {db}.usage_events
GROUP BY bucket, org, team, workflow, cost_center, env, provider, model, key;

INSERT INTO {db}.budget_rollup_hour
SELECT toStartOfHour(occurred_at) AS bucket, tags['org'] AS org, team, workflow, cost_center, env, provider,
       model, if(api_key_id != '', api_key_id, project_id) AS key, count() AS events, sum(cost_micros) AS cost_micros
FROM {db}.usage_events FINAL
GROUP BY bucket, org, team, workflow, cost_center, env, provider, model, key;

INSERT INTO {db}.budget_rollup_minute
SELECT toStartOfMinute(occurred_at) AS bucket, tags['org'] AS org, team, workflow, cost_center, env, provider,
       model, if(api_key_id != '', api_key_id, project_id) AS key, count() AS events, sum(cost_micros) AS cost_micros
FROM {db}.usage_events FINAL
GROUP BY bucket, org, team, workflow, cost_center, env, provider, model, key;
