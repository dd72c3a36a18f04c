-- costwarden schema v5: the commit journal of the distributed workers, kept in the store.
-- One entry per formed commit (store/store_journal.py): written before any table of the commit,
-- then a `done` version (empty body) once every table write succeeded. `owner` scopes entries to
-- a Kafka partition ("raw:<topic>:<partition>", "budget:<topic>:<partition>"): the worker that
-- takes a partition over re-applies its entries not done, oldest first. Entries outlive the raw
-- topic's default retention (7 d) by nothing: after that no record could be replayed anyway.
CREATE TABLE IF NOT EXISTS {db}.commit_journal
(
    owner String, id String, seq UInt64, created_at DateTime64(3, 'UTC'), body String, done UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (owner, id)
TTL toDateTime(created_at) + INTERVAL 7 DAY;
