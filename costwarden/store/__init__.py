"""Storage: the Store interface, its chDB implementation, migrations and SQL builders."""
from costwarden.store.base import Row, Store
from costwarden.store.migrate import migrate

__all__ = ["Row", "Store", "migrate", "open_store"]


def open_store(url: str | None, data_dir: str, database: str = "costwarden") -> Store:
    """`chdb` (default, under data_dir) or an http(s):// ClickHouse URL (clickhouse-connect)."""
    if not url or url == "chdb":
        from costwarden.store.chdb_store import ChdbStore

        return ChdbStore(f"{data_dir}/chdb", database)
    from costwarden.store.clickhouse_store import ClickHouseStore  # part 2

    return ClickHouseStore.from_url(url, database)
