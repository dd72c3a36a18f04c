"""The distributed runtime: Faust agents over Kafka storing into a ClickHouse server.

See docs/distributed.md. Public surface: `create_app`, `run_worker` (app.py), `topic_specs`,
`create_topics` (topics.py), `ensure_topics` (topic_admin.py), `produce` (producer.py),
`produce_validated` (kafka_ingest.py), `WorkerMetrics` (metrics.py).
Importing this package does not import Faust; app.py and agents.py do.
"""
