-- Connectors (part 4): durable poller cursors and providers' own cost reports.
-- Cursor per connector: every bucket that ended before `cursor` was polled, settled and stored.
-- Latest version wins (ReplacingMergeTree(version), read FINAL); it only moves forward.
CREATE TABLE IF NOT EXISTS {db}.connector_cursors
(
    connector String, cursor DateTime64(3, 'UTC'), version UInt64, updated_at DateTime64(3, 'UTC'),
    detail String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY connector;

-- Provider-reported cost per day and line (OpenAI Costs API, Anthropic cost report), in USD.
-- No materialized view reads this table, so a re-poll of a day simply replaces its lines
-- (the poller sums lines that share a key before it writes). Read FINAL.
CREATE TABLE IF NOT EXISTS {db}.provider_cost_lines
(
    source LowCardinality(String), day Date, provider LowCardinality(String), project_id String,
    workspace_id String, api_key_id String, line_item String, model String, service_tier String,
    amount Decimal(38, 12), currency LowCardinality(String), quantity Nullable(Decimal(38, 12)),
    polled_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(polled_at)
PARTITION BY toYYYYMM(day)
ORDER BY (source, day, project_id, workspace_id, api_key_id, line_item, model, service_tier);
