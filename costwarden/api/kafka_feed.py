"""Distributed mode's Kafka side of the API: an asyncio loop thread that owns the Kafka clients,
the `ControlFeed` over the compacted `controls` topic, and the acks=all producer.

The feed reads every partition of the controls topic from the beginning (the compacted topic
holds the latest Control of every workflow), calls `apply` for each record in partition order,
and keeps following. `start()` returns once the records that existed at start are applied (the
end offsets read at start are reached), so a replica answers no decision before it has caught
up. Every replica reads the same topic in the same per-workflow order (records are keyed by
workflow, so one workflow's controls are on one partition): all replicas converge on the same
control per workflow.

Regressions: a partition whose offsets go backwards (the topic deleted and re-created, a log
truncated by an unclean leader election, a consumer reset to the earliest offset) means the
cache may hold controls the topic no longer has. The feed then re-reads the whole topic and
replaces the cache's contents at once (`DecisionCache.replace`: a new epoch, so every SSE
client and SDK resyncs from a snapshot).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any, Awaitable, Callable, Coroutine, Iterable, TypeVar

from costwarden.budgets.controls import Control
from costwarden.errors import CostwardenError

log = logging.getLogger("costwarden.api")
T = TypeVar("T")


class BrokerUnreachable(CostwardenError):
    """The Kafka broker did not acknowledge in time: nothing was accepted (HTTP 503, retry)."""

    http_status = 503


class LoopThread:
    """An asyncio event loop in a daemon thread; `submit(coro)` from any thread."""

    def __init__(self, name: str = "costwarden-kafka") -> None:
        self.loop = asyncio.new_event_loop()
        self._t = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._t.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> "Future[T]":
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60) -> T:
        return self.submit(coro).result(timeout)

    def run(self, coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """Await from another event loop (uvicorn's)."""
        return asyncio.wrap_future(self.submit(coro))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._t.join(timeout=10)


class _Regressed(Exception):
    """A partition of the controls topic went backwards: the topic is re-read whole."""


class KafkaControlFeed:
    """`ControlFeed` (costwarden/api/decisions.py) over the compacted controls topic."""

    def __init__(self, loop: LoopThread, bootstrap: str, topic: str, catch_up_timeout_s: float = 60) -> None:
        self.loop, self.bootstrap, self.topic = loop, bootstrap, topic
        self.catch_up_timeout_s = catch_up_timeout_s
        self.records = 0
        self.caught_up = threading.Event()
        self._task: Future | None = None
        self._stopping = False
        self.failed: str | None = None  # why the feed stopped following (the replica is then not ready)
        self.resyncs = 0  # times the topic went backwards and was re-read whole
        self._rereading = False

    def start(self, apply: Callable[[Control], None],
              replace: Callable[[Iterable[Control]], None] | None = None) -> None:
        """`replace(controls)` swaps in the whole topic after a regression (see `_consume`); by
        default the `replace` of the cache whose `apply` is given (DecisionCache.replace)."""
        if replace is None:
            replace = getattr(getattr(apply, "__self__", None), "replace", None)
        self._task = self.loop.submit(self._follow(apply, replace))
        deadline = time.monotonic() + self.catch_up_timeout_s
        while not self.caught_up.wait(0.1) and not self._task.done() and time.monotonic() < deadline:
            pass
        if not self.caught_up.is_set():
            err = self._task.exception(0) if self._task.done() else None
            self.stop()
            raise CostwardenError(f"could not read the controls topic {self.topic!r} on {self.bootstrap} "
                                  f"within {self.catch_up_timeout_s:.0f}s" + (f": {err}" if err else ""))

    async def _follow(self, apply: Callable[[Control], None],
                      replace: Callable[[Iterable[Control]], None] | None) -> None:
        resync: str | None = None  # why the topic is being re-read (None: the first read)
        while not self._stopping:
            try:
                await self._consume(apply, replace, resync)
                return  # stopped
            except _Regressed as e:
                self.resyncs += 1
                resync = str(e)
                log.warning("the controls topic went backwards (%s): re-reading it from the beginning", resync)
            except Exception as e:
                if not self._rereading or self._stopping:  # not in a re-read: the feed stops (not ready)
                    self.failed = f"{type(e).__name__}: {e}"
                    log.error("the controls feed stopped: %s", self.failed)
                    raise
                # re-reading after a regression (the topic may be being re-created): keep what the
                # cache holds and try again
                log.warning("re-reading the controls topic: %s: %s; retrying", type(e).__name__, e)
                await asyncio.sleep(1.0)

    async def _consume(self, apply: Callable[[Control], None],
                       replace: Callable[[Iterable[Control]], None] | None, resync: str | None) -> None:
        """One consumer, from the beginning of every partition. The first read applies records as
        they come; a re-read (`resync`) collects the topic up to the end offsets read now and then
        swaps it in at once (`replace`: a new cache epoch, so every SSE client and SDK takes a
        snapshot); until then the cache keeps what it had. Raises _Regressed when a partition's
        offsets go back."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", isolation_level="read_committed")
        await c.start()
        try:
            parts = None
            for _ in range(100):  # the topic's metadata, once the broker has it
                parts = c.partitions_for_topic(self.topic)
                if parts:
                    break
                await c._client.force_metadata_update()
                await asyncio.sleep(0.1)
            if not parts:
                raise CostwardenError(f"the controls topic {self.topic!r} does not exist")
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            ends = await c.end_offsets(tps)
            self._rereading = resync is not None
            latest: dict[str, Control] | None = {} if resync is not None else None
            sink = apply if latest is None else (lambda ctl: latest.__setitem__(ctl.workflow, ctl))
            nexts: dict[Any, int] = {}  # per partition: the offset after the last record read
            while not self._stopping:
                batch = await c.getmany(timeout_ms=200, max_records=5000)
                for tp in sorted(batch, key=lambda t: t.partition):
                    for rec in batch[tp]:
                        if rec.offset < nexts.get(tp, 0):
                            raise _Regressed(f"{tp.topic}:{tp.partition} went from offset {nexts[tp]} back to "
                                             f"{rec.offset}")
                        nexts[tp] = rec.offset + 1
                        self._apply_record(sink, tp, rec)
                if not batch and nexts:  # idle: a log that went back without records for us
                    for tp, n in nexts.items():
                        pos = await _position(c, tp)
                        if pos is not None and pos < n:
                            raise _Regressed(f"{tp.topic}:{tp.partition} position went from {n} back to {pos}")
                if latest is not None or not self.caught_up.is_set():
                    positions = {tp: await _position(c, tp) for tp in tps}
                    if all(p is not None and p >= ends[tp] for tp, p in positions.items()):
                        if latest is not None:  # the re-read is complete: swap it in
                            if replace is not None:
                                replace(latest.values())
                            else:  # a plain apply() sink: converge on what the topic holds now
                                for ctl in latest.values():
                                    apply(ctl)
                            log.warning("the controls topic was re-read: %d controls (resync %d)", len(latest),
                                        self.resyncs)
                            latest, sink = None, apply
                            self._rereading = False
                        self.caught_up.set()
        finally:
            await c.stop()

    def _apply_record(self, apply: Callable[[Control], None], tp, rec) -> None:
        from costwarden.distributed.state import control_from_message

        if rec.value is None:  # a tombstone: nothing to apply
            return
        try:
            control = control_from_message(rec.value)
        except Exception as e:  # a record we cannot read must not stop the feed
            log.warning("controls record %s:%d@%d skipped: %s", tp.topic, tp.partition, rec.offset,
                        type(e).__name__)
            return
        apply(control)
        self.records += 1

    def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            try:
                self._task.result(5)
            except Exception:
                pass


async def _position(c, tp, timeout_s: float = 1.0) -> int | None:
    """The consumer's position, or None while it has none (a reset still pending)."""
    try:
        return await asyncio.wait_for(c.position(tp), timeout_s)
    except asyncio.TimeoutError:
        return None


class Producer:
    """acks=all, idempotent; `send` returns once the broker acknowledged the record."""

    def __init__(self, loop: LoopThread, bootstrap: str) -> None:
        from aiokafka import AIOKafkaProducer

        async def make():
            p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                 linger_ms=2, max_batch_size=512 * 1024)
            await p.start()
            return p

        self.loop = loop
        self._p = loop.call(make())

    async def _send_all(self, records: list[tuple[str, bytes, bytes]]) -> None:
        futs = [await self._p.send(topic, value=value, key=key) for topic, key, value in records]
        await asyncio.gather(*futs)

    async def send_all(self, records: list[tuple[str, bytes, bytes]]) -> None:
        """(topic, key, value) records; returns after every one is acknowledged by the broker."""
        if records:
            try:
                await self.loop.run(self._send_all(records))
            except CostwardenError:
                raise
            except Exception as e:  # KafkaError after the producer's own retries (request timeout)
                raise BrokerUnreachable(f"the Kafka broker did not acknowledge: {type(e).__name__}: {e}") from None

    def close(self) -> None:
        try:
            self.loop.call(self._p.stop(), timeout=10)
        except Exception as e:
            log.warning("closing the Kafka producer: %s", type(e).__name__)
