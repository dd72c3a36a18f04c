"""Thin Faust agents: decode, call the stage's commit point, hand the results on.

    usage.raw        -> process_raw      -> usage.processed, usage.deadletter, usage.by-budget
    usage.by-budget  -> evaluate_budgets -> budget.events, controls

Records of a take are acknowledged when the agent asks for the next take, i.e. after the
commit point stored them and the sends were handed to the producer; only acknowledged offsets
commit (in the same Kafka transaction as the sends under exactly_once).
"""
from __future__ import annotations

import json
import logging

import faust

from costwarden.distributed.app import Runtime, slices

log = logging.getLogger(__name__)


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

    @app.agent(raw, name="process_raw")
    async def process_raw(stream):
        async for events in stream.take_events(k.batch_max, within=k.batch_within_s):
            batch = slices(events)
            for sl in batch:  # until stored, lag counts from here
                rt.next_offset.setdefault((sl.topic, sl.partition), sl.first)
            res = await rt.commit_point("raw", rt.raw.handle, batch)
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
        async for events in stream.take_events(k.batch_max, within=min(k.batch_within_s, 0.2)):
            batch = slices(events)
            for sl in batch:
                rt.next_offset.setdefault((sl.topic, sl.partition), sl.first)
            res = await rt.commit_point("budget", rt.budget.handle, [json.loads(e.value) for e in events])
            for key, value in res.budget_events:
                await budget_events.send(key=key, value=value)
            for key, value in res.controls:
                await controls.send(key=key, value=value)
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
