"""The API's distributed runtime (`costwarden api --mode distributed`): no embedded pipeline.

    POST /v1/events       validate (parse_event), then produce accepted events to the raw usage
                          topic keyed by event_id and invalid ones to the dead-letter topic (with
                          the reason); the answer comes after the broker acknowledged (acks=all).
                          Pricing, dedupe and budgets happen in the workers; an event sent twice
                          is `accepted` twice here and counted once there.
    decisions, SSE        the DecisionCache, fed by a KafkaControlFeed over the compacted
                          controls topic: every replica converges on the same controls.
    budgets, controls     budget status is computed from the ClickHouse store's sums (exact,
                          whichever worker stored the events); audit and tokens read the store.
    release / extend      by a person: the Control row and its audit row go to the store, then
                          the Control goes on the controls topic (keyed by workflow, after the
                          worker's block on the same partition), so every replica sees it, and
                          the workers take it from the store before their next budget batch
                          (a release then holds for the rest of the budget period).
    reservations          with `api.replicas` set: one owner replica per workflow (owner.py)
                          runs an OwnerBook (owner_book.py) on the store thread; the others
                          forward to it. Without `api.replicas`: HTTP 501.

Store I/O runs on one PipelineThread (as in embedded mode); Kafka clients on one LoopThread.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from costwarden.api.decisions import DecisionCache
from costwarden.api.kafka_feed import KafkaControlFeed, LoopThread, Producer
from costwarden.api.owner import ReplicaRouter
from costwarden.api.owner_book import OwnerBook
from costwarden.api.runtime import PipelineThread
from costwarden.budgets.controls import ControlBook, ControlChange
from costwarden.budgets.evaluate import BudgetLedger
from costwarden.config import Settings
from costwarden.errors import NotOfferedError
from costwarden.money import from_nanos
from costwarden.persist import change_rows, store_seeder
from costwarden.store import tables as T
from costwarden.store.store_journal import StoreJournal
from costwarden.store.writer import Commit, CommitWriter
from costwarden.streams.process import dead_letter

log = logging.getLogger("costwarden.api")


def _payload_bytes(raw) -> bytes:
    from costwarden.distributed.state import to_json

    return to_json(raw)


class DistributedRuntime:
    mode = "distributed"
    reservations = None  # an OwnerBook when api.replicas is set; else the routes answer 501
    router = None

    def __init__(self, settings: Settings) -> None:
        from costwarden.distributed.state import Core
        # imports aiokafka here, before this runtime's threads start (distributed/topics.py says why)
        from costwarden.distributed.topics import create_topics_async, topic_specs

        self.settings = settings
        self.core = Core.load(settings)
        self.router = ReplicaRouter.from_settings(settings.api)
        k = settings.kafka
        self.thread = PipelineThread("costwarden-store")
        self.loop = LoopThread()
        self._closers = [self.thread.stop, self.loop.stop]
        try:
            self.store = self.thread.call(lambda: self.core.open_store(migrate_schema=True))
            self._closers.insert(0, self.store.close)
            # this API's own commits (dead letters, people's control changes); any replica finishes
            # one a crashed replica left in the journal
            self.writer = CommitWriter(self.store, StoreJournal(self.store, "api"))
            self.thread.call(self.writer.recover)
            self.loop.call(create_topics_async(k.bootstrap_servers, topic_specs(k)))
            self.producer = Producer(self.loop, k.bootstrap_servers)
            self._closers.insert(0, self.producer.close)
            self.cache = DecisionCache()
            self.feed = KafkaControlFeed(self.loop, k.bootstrap_servers, k.topic_controls)
            self.feed.start(self.cache.apply)
            self._closers.insert(0, self.feed.stop)
            if self.router is not None:
                a = settings.api
                self.reservations = OwnerBook(self.core, self.cache, self.store, a.reservation_ttl_s,
                                              a.settled_max_s, self.router.id_prefix)
        except BaseException:
            self.close()
            raise
        self.started_at = datetime.now(timezone.utc)
        self._ready = True

    @property
    def ready(self) -> bool:
        """False once closing, or when the controls feed stopped (decisions would go stale)."""
        return self._ready and self.feed.failed is None

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready = value

    @classmethod
    def open(cls, settings: Settings) -> "DistributedRuntime":
        return cls(settings)

    # --- usage in ------------------------------------------------------------------------------
    async def ingest(self, parsed, source: str) -> dict:
        k = self.settings.kafka
        records, dead, results = [], [], []
        now = datetime.now(timezone.utc)
        for i in parsed.items:
            if i.event is None:
                d = dead_letter(i.raw, source, i.reason, i.detail, now).row()
                dead.append(d)
                records.append((k.topic_dead_letter, source.encode(), _payload_bytes(d)))
                results.append({"index": i.index, "status": "rejected", "reason": i.reason, "detail": i.detail})
            else:
                # the canonical event, whatever shape it came in (CloudEvent, LiteLLM record, span)
                records.append((k.topic_raw, i.event.event_id.encode(),
                                _payload_bytes(i.event.model_dump(mode="json", exclude_none=True))))
                results.append({"index": i.index, "event_id": i.event.event_id, "status": "accepted"})
        await self.producer.send_all(records)  # acks=all: durable in Kafka before we answer
        if dead:  # also where `costwarden` reads dead letters from, as the workers do
            await self.thread.run(lambda: self.writer.commit(Commit.form({T.DEAD_LETTERS: dead})))
        accepted = len(results) - len(dead)
        return {"accepted": accepted, "duplicates": 0, "rejected": len(dead), "cost_nanos": None,
                "control_changes": [], "results": results}

    async def reload_budgets(self, reason: str, actor: str) -> dict:
        raise NotOfferedError("in distributed mode the workers own the budgets file: change it where they "
                              "read it and restart them (a rolling restart keeps ingesting)")

    async def settle(self, hold_id: str, event, raw, source: str = "") -> dict:
        """On the owner: the usage to the raw topic (acked) first, then the hold becomes a settled
        entry, counted until a worker stored the event (owner_book.py)."""
        k = self.settings.kafka
        await self.producer.send_all([(k.topic_raw, event.event_id.encode(), _payload_bytes(raw))])
        hold, cost = await self.thread.run(lambda: self.reservations.settle(hold_id, event))
        return {"id": hold_id, "hold": "released" if hold else "expired_or_unknown", "accepted": 1,
                "duplicates": 0, "cost_usd": str(from_nanos(cost)) if cost is not None else None,
                "estimate_usd": str(from_nanos(hold.nanos)) if hold else None}

    # --- budgets ------------------------------------------------------------------------------
    def _seeder(self):
        return store_seeder(self.store)

    async def budget_status(self) -> list[dict]:
        """Every budget's current period from the store's sums (a fresh ledger per call)."""
        def now():
            return BudgetLedger(self.core.budgets, seeder=self._seeder()).status(datetime.now(timezone.utc))
        return await self.thread.run(now)

    # --- a person's control changes -----------------------------------------------------------
    def _book(self, workflow: str) -> ControlBook:
        cur = {c.workflow: c for c in self.cache.controls()}.get(workflow)
        return ControlBook([cur] if cur is not None else [])

    async def _commit(self, change: ControlChange) -> ControlChange:
        from costwarden.distributed.state import to_json

        current, audit = change_rows([change])

        # the workers take it from here (budget_stage adopts people's changes from the store)
        await self.thread.run(lambda: self.writer.commit(Commit.form({T.CONTROLS: current, T.CONTROL_AUDIT: audit})))
        k = self.settings.kafka
        await self.producer.send_all([(k.topic_controls, r["workflow"].encode(), to_json(r)) for r in current])
        self.cache.apply(change.after)  # read-your-writes here; the topic brings it to every replica
        return change

    async def release(self, workflow: str, reason: str, by: str) -> ControlChange:
        return await self._commit(self._book(workflow).release(workflow, reason=reason, by=by))

    async def extend(self, workflow: str, until, reason: str, by: str) -> ControlChange:
        return await self._commit(self._book(workflow).extend(workflow, until=until, reason=reason, by=by))

    def close(self) -> None:
        self._ready = False
        for close in list(self._closers):
            try:
                close()
            except Exception as e:
                log.warning("closing the distributed runtime: %s", type(e).__name__)
        self._closers = []
