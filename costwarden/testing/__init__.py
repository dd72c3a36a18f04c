"""Test support: real servers for integration tests (never imported by the product at run time).

    clickhouse_http   TEST ADAPTER serving ClickHouse's HTTP interface on top of chDB
    kafka_broker      a Kafka broker for tests: $KAFKA_BOOTSTRAP_SERVERS, testcontainers, or Kafka's own jars
"""
