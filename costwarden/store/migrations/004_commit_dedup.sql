-- costwarden schema v4: every table of the pipeline's commit deduplicates a re-applied block.
-- The commit writer (store/writer.py) gives each INSERT a token; re-applying a journalled commit
-- after a crash then stores each block once. usage_events and the rollups had this since v1.
ALTER TABLE {db}.dead_letters MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.budget_events MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.alert_outbox MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.controls MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.control_audit MODIFY SETTING non_replicated_deduplication_window = 1000;
