"""What the API routes need from a runtime: the one interface both runtimes implement.

    EmbeddedRuntime     (api/runtime.py)      the embedded pipeline on one thread, chDB
    DistributedRuntime  (api/distributed.py)  Kafka producer + controls feed + a ClickHouse server
Routes depend on this Protocol only (tests/api/test_runtime_contract.py checks both classes).
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from costwarden.api.decisions import DecisionCache
from costwarden.budgets.controls import ControlChange


@runtime_checkable
class Runtime(Protocol):
    mode: str        # "embedded" | "distributed"
    router: Any      # owner routing of reservations (distributed with replicas), else None
    reservations: Any  # the ReservationBook this replica serves, or None
    cache: DecisionCache
    thread: Any      # PipelineThread: `await thread.run(fn)` runs store work off the event loop

    @property
    def settings(self) -> Any: ...

    @property
    def store(self) -> Any: ...

    @property
    def ready(self) -> bool: ...

    async def ingest(self, parsed, source: str) -> dict:
        """Usage in: per-item results (accepted / duplicate / rejected) once durable."""

    async def settle(self, hold_id: str, event, raw: Any, source: str) -> dict:
        """A reservation's actual usage recorded, then its hold dropped."""

    async def budget_status(self) -> list[dict]: ...

    async def release(self, workflow: str, reason: str, by: str) -> ControlChange: ...

    async def extend(self, workflow: str, until, reason: str, by: str) -> ControlChange: ...

    async def reload_budgets(self, reason: str, actor: str) -> dict:
        """Re-read the budgets file (audited); raises CostwardenError subclasses on a bad file."""

    def close(self) -> None: ...
