"""Topic administration with kafka-python's synchronous `KafkaAdminClient`.

`ensure_topics` creates the topics of `topic_specs` that do not exist yet, with their
partitions, replication and configs, and describes those that do. An existing topic is never
changed: a difference from its spec (fewer partitions, another replication factor, another
cleanup policy or retention) is reported as a problem that says what to do, and left alone.
Why never repartition: a keyed record's partition is murmur2(key) modulo the partition count, so
adding partitions moves keys. On `usage.raw` the workers forward a copy that lands on another
partition to its id's owner (raw_stage.py), but on the compacted `controls` topic the newest
control of a workflow would sit on a new partition while older ones stay on the old one, and
readers (the API's feed) could apply them in the wrong order. That is a decision for a person.

Used at start by `costwarden worker` (distributed/app.py) and `costwarden api --mode
distributed` (through `topics.create_topics_async`), and by `costwarden topics create|describe`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from costwarden.distributed.topics import TopicSpec
from costwarden.errors import CostwardenError

log = logging.getLogger(__name__)
TOPIC_ALREADY_EXISTS = 36  # Kafka's error code: another creator was first (a race between workers)


class KafkaUnavailable(CostwardenError):
    """No Kafka broker answered at the bootstrap address in time, or it stopped answering."""


@dataclass
class TopicState:
    spec: TopicSpec
    status: str                      # created | exists | missing (ensure_topics(create=False))
    partitions: int                  # the topic's own count
    replication: int
    configs: dict[str, str] = field(default_factory=dict)  # effective values of the spec's config keys
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def as_dict(self) -> dict:
        return {"topic": self.name, "status": self.status, "partitions": self.partitions,
                "configured_partitions": self.spec.partitions, "replication": self.replication,
                "configs": self.configs, "problems": self.problems}


def admin_client(bootstrap: str, timeout_s: float = 30.0, **client_config):
    """A connected KafkaAdminClient, or KafkaUnavailable when no broker answers within timeout_s."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    ms = int(timeout_s * 1000)
    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=ms,
                                request_timeout_ms=max(ms, 1000), client_id="costwarden-admin", **client_config)
    except KafkaError as e:
        raise KafkaUnavailable(f"no Kafka broker answered at {bootstrap} within {timeout_s:g}s "
                               f"({type(e).__name__})") from None


def missing_topics(bootstrap: str, names: list[str], timeout_s: float = 30.0, **client_config) -> list[str]:
    """The topics of `names` that do not exist (asked without creating any). A producer checks
    this first: kafka-python 3.0 does not pass `allow_auto_create_topics=False` on to its metadata
    requests, so producing to a missing topic on a broker with auto-creation on would create it
    with the broker's default partition count."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = admin_client(bootstrap, timeout_s, **{k: v for k, v in client_config.items()
                                                  if k in KafkaAdminClient.DEFAULT_CONFIG and k != "client_id"})
    try:
        found = _describe(admin, names)
    except KafkaError as e:
        raise KafkaUnavailable(f"Kafka at {bootstrap} failed: {type(e).__name__}: {e}") from None
    finally:
        admin.close()
    return [n for n in names if n not in found]


def ensure_topics(bootstrap: str, specs: list[TopicSpec], *, create: bool = True, timeout_s: float = 30.0,
                  **client_config) -> list[TopicState]:
    """Create the missing topics (when `create`), then describe every one against its spec."""
    from kafka.errors import KafkaError

    admin = admin_client(bootstrap, timeout_s, **client_config)
    try:
        found = _describe(admin, [s.name for s in specs])
        created: set[str] = set()
        todo = [s for s in specs if s.name not in found]
        if create and todo:
            created = _create(admin, todo, timeout_s)
            found.update(_describe(admin, [s.name for s in todo]))
        configs = _configs(admin, [s for s in specs if s.name in found])
    except KafkaError as e:  # the broker went away, or did not answer a request in time
        raise KafkaUnavailable(f"Kafka at {bootstrap} failed: {type(e).__name__}: {e}") from None
    finally:
        admin.close()
    out = []
    for s in specs:
        if s.name not in found:
            out.append(TopicState(s, "missing", 0, 0, problems=[f"topic {s.name} does not exist: run "
                                                                f"`costwarden topics create`"]))
            continue
        parts, repl = found[s.name]
        st = TopicState(s, "created" if s.name in created else "exists", parts, repl, configs.get(s.name, {}))
        st.problems = problems(st)
        out.append(st)
    return out


def problems(st: TopicState) -> list[str]:
    """What differs from the spec, each with what to do (nothing here changes the topic)."""
    s, out = st.spec, []
    if st.partitions < s.partitions:
        add = (f"or add partitions yourself (`kafka-topics.sh --alter --topic {s.name} --partitions "
               f"{s.partitions}`: keyed records then move to other partitions"
               + ("; not for a compacted topic, whose older records stay on their old partitions)"
                  if s.config.get("cleanup.policy") == "compact" else ")"))
        out.append(f"topic {s.name} has {st.partitions} partitions, {s.partitions} configured; left as it is "
                   f"(costwarden never repartitions a topic; at most {st.partitions} workers share it). "
                   f"Set {s.partitions_setting}={st.partitions} to match, {add}")
    if st.replication < s.replication:
        out.append(f"topic {s.name} has replication factor {st.replication}, {s.replication} configured; left as "
                   f"it is (raise it with `kafka-reassign-partitions.sh`)")
    for key, want in sorted(s.config.items()):
        have = st.configs.get(key)
        if have is not None and have != want:
            out.append(f"topic {s.name} has {key}={have}, {want} configured; left as it is (set it with "
                       f"`kafka-configs.sh --alter --entity-type topics --entity-name {s.name} "
                       f"--add-config {key}={want}`)")
    return out


def _describe(admin, names: list[str]) -> dict[str, tuple[int, int]]:
    """name -> (partitions, replication factor) of the topics that exist."""
    out = {}
    for t in admin.describe_topics(names):
        if t.get("error_code") == 0 and t.get("partitions"):
            parts = t["partitions"]
            out[t["name"]] = (len(parts), min(len(p.get("replica_nodes") or []) for p in parts))
    return out


def _create(admin, todo: list[TopicSpec], timeout_s: float) -> set[str]:
    from kafka.errors import for_code

    res = admin.create_topics({s.name: {"num_partitions": s.partitions, "replication_factor": s.replication,
                                        "configs": dict(s.config)} for s in todo},
                              timeout_ms=int(timeout_s * 1000), raise_errors=False)
    created, failed = set(), []
    for t in res["topics"]:
        code = t.get("error_code", 0)
        if code == 0:
            created.add(t["name"])
        elif code != TOPIC_ALREADY_EXISTS:  # already there: created by another worker meanwhile
            failed.append(f"{t['name']}: {for_code(code).__name__} {t.get('error_message') or ''}".strip())
    if failed:
        raise CostwardenError("could not create Kafka topics: " + "; ".join(failed))
    if created:
        admin.wait_for_topics(sorted(created), timeout_ms=int(timeout_s * 1000))
        log.info("created Kafka topics %s", ", ".join(sorted(created)))
    return created


def _configs(admin, specs: list[TopicSpec]) -> dict[str, dict[str, str]]:
    from kafka.admin import ConfigResource, ConfigResourceType

    asked = [ConfigResource(ConfigResourceType.TOPIC, s.name, configs=sorted(s.config)) for s in specs if s.config]
    if not asked:
        return {}
    res = admin.describe_configs(asked, config_filter="all").get("topic", {})
    return {name: {k: v.get("value") for k, v in cfg.items()} for name, cfg in res.items()}


def create_topics(bootstrap: str, specs: list[TopicSpec], attempts: int = 30, timeout_s: float = 10.0,
                  log_problems: bool = True, **client_config) -> list[TopicState]:
    """`ensure_topics` with retries while the broker is starting (compose start-up); every problem
    is logged as a warning unless the caller reports them itself (the topics are left as they are)."""
    last: Exception | None = None
    for i in range(attempts):
        try:
            states = ensure_topics(bootstrap, specs, timeout_s=timeout_s, **client_config)
        except (KafkaUnavailable, OSError) as e:
            last = e
            log.warning("creating topics on %s failed (attempt %d of %d): %s", bootstrap, i + 1, attempts, e)
            time.sleep(min(1 + i, 5))
            continue
        for p in [p for st in states for p in st.problems] if log_problems else []:
            log.warning(p)
        return states
    raise KafkaUnavailable(f"could not create Kafka topics on {bootstrap}: {last}")
