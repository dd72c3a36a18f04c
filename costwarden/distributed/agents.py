"""Thin Faust agents: decode, call the stage's commit point, hand the results on.

    usage.raw        -> process_raw      -> usage.processed, usage.deadletter, usage.by-budget
    usage.by-budget  -> evaluate_budgets -> budget.events, controls

Records of a take are acknowledged when the agent asks for the next take, i.e. after the
commit point stored them and the sends were handed to the producer; only acknowledged offsets
commit (in the same Kafka transaction as the sends under exactly_once).

Rebalances: Faust's `on_partitions_revoked` (sent after the agents went idle, before this member
rejoins) releases the partitions in both stages and stops their alert deliveries;
`on_partitions_assigned` starts a takeover per assigned partition (journal replay; budgets:
marks and controls reloaded, the current controls of the partition's budgets sent again). The
stages also take a partition over themselves before processing its first slice, so no record is
processed before its partition's journal was replayed, whichever runs first.
"""
from __future__ import annotations

import asyncio
import json
import logging

import faust

from costwarden.distributed.app import Runtime, slices
from costwarden.distributed.state import to_json

log = logging.getLogger(__name__)

RESEND_ROUNDS = 5


def register(app: faust.App, rt: Runtime) -> None:
    k = rt.settings.kafka

    def topic(name: str, partitions: int) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=partitions)

    raw = topic(k.topic_raw, k.partitions)
    processed = topic(k.topic_processed, k.partitions)
    dead = topic(k.topic_dead_letter, k.partitions)
    by_budget = topic(k.topic_budget_usage, k.budget_partitions)
    budget_events = topic(k.topic_budget_events, k.partitions)
    controls = topic(k.topic_controls, k.partitions)
    tasks: set[asyncio.Task] = set()

    async def send_budget(res, confirm: bool = False) -> None:
        for key, value in res.budget_events:
            await budget_events.send(key=key, value=value)
        pending = [(key, value) for key, value in res.controls]
        for _ in range(RESEND_ROUNDS if confirm else 1):
            futs = [await controls.send(key=key, value=value) for key, value in pending]
            if not confirm or not futs:
                return
            # A re-sent control may be older than one another process stored and sent meanwhile:
            # once ours are on the log, send again any that the store has a newer version of
            # (every writer sends after it stores, so a newer one stored later lands after ours).
            await asyncio.gather(*futs)
            sent = {json.loads(v)["workflow"]: json.loads(v)["version"] for _, v in pending}
            loop = asyncio.get_running_loop()
            rows = await loop.run_in_executor(None, rt.budget.current_controls, list(sent))
            pending = [(r["workflow"].encode(), to_json(r)) for r in rows if r["version"] != sent[r["workflow"]]]
            if not pending:
                return

    async def take_over(tp: tuple[str, int]) -> None:
        res = await rt.take_over(tp)
        if tp[0] == k.topic_budget_usage and res is not None:
            await send_budget(res, confirm=True)

    async def on_revoked(sender, revoked, **kwargs) -> None:
        await rt.partitions_revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_assigned(sender, assigned, **kwargs) -> None:
        try:  # the topic's own partition count, as the producers see it
            n = app.consumer.topic_partitions(k.topic_budget_usage)
        except Exception:
            n = None
        tps = {(tp.topic, tp.partition) for tp in assigned}
        rt.partitions_assigned(tps, n)
        for tp in sorted(tps):
            t = asyncio.ensure_future(take_over(tp))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    app.on_partitions_revoked.connect(on_revoked)
    app.on_partitions_assigned.connect(on_assigned)

    @app.agent(raw, name="process_raw")
    async def process_raw(stream):
        async for events in stream.take_events(k.batch_max, within=k.batch_within_s):
            batch = slices(events)
            for sl in batch:  # until stored, lag counts from here
                rt.next_offset.setdefault((sl.topic, sl.partition), sl.first)
            res = await rt.commit_point("raw", rt.raw.handle, batch)
            for key, value in res.forward:  # to the partition of the event's id (raw_stage.py)
                await raw.send(key=key, value=value)
            for key, value in res.processed:
                await processed.send(key=key, value=value)
            for key, value in res.dead:
                await dead.send(key=key, value=value)
            for key, value in res.budget_usage:
                await by_budget.send(key=key, value=value)
            rt.metrics.raw_committed(res)
            for sl in batch:
                rt.next_offset[(sl.topic, sl.partition)] = sl.last + 1

    @app.agent(by_budget, name="evaluate_budgets")
    async def evaluate_budgets(stream):
        async for events in stream.take_events(k.batch_max, within=min(k.batch_within_s, 0.1)):
            batch = slices(events)  # one commit per budget partition
            for sl in batch:
                rt.next_offset.setdefault((sl.topic, sl.partition), sl.first)
            res = await rt.commit_point("budget", rt.budget.handle, batch)
            await send_budget(res)
            rt.metrics.budget_committed(res)
            for sl in batch:
                rt.next_offset[(sl.topic, sl.partition)] = sl.last + 1
            if res.alerts_enqueued and rt.delivery is not None:
                rt.delivery.wake()

    @app.timer(2.0)
    async def consumer_lag():
        consumer = app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in (k.topic_raw, k.topic_budget_usage)]
        if not tps:
            return
        try:
            ends = await consumer.highwaters(*tps)
        except Exception as e:  # the broker is away: keep the last figures
            log.info("consumer lag not measured: %s", e)
            return
        for tp in tps:
            # The next offset to commit: after the last stored slice, else the first record taken
            # but not yet stored, else the group's committed offset (nothing taken yet).
            done = rt.next_offset.get((tp.topic, tp.partition))
            if done is None:
                done = consumer._committed_offset.get(tp)
                done = None if done is None else done + 1
            end = ends.get(tp)
            if end is not None:
                rt.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, end - (done or 0)))
