-- costwarden schema v2: the HTTP API. Idempotent; {db} is the database.
-- API bearer tokens: only the sha256 of a token is stored; `revoked` latest version wins.
CREATE TABLE IF NOT EXISTS {db}.api_tokens
(
    token_sha256 String, version UInt64, name String, role LowCardinality(String),
    created_at DateTime64(3, 'UTC'), revoked UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY token_sha256;

-- Budget changes made through the API (reloads of the budgets file): who, when, why.
CREATE TABLE IF NOT EXISTS {db}.budget_audit
(
    at DateTime64(3, 'UTC'), seq UInt64, action LowCardinality(String), budget_ids String,
    detail String, reason String, actor String
)
ENGINE = MergeTree
ORDER BY (at, seq);
