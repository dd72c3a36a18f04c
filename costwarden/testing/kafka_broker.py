"""A real Kafka broker for tests.

`kafka_broker_session()` resolves one, in this order:
    1. $KAFKA_BOOTSTRAP_SERVERS: a broker someone already runs (used as is; it cannot be restarted)
    2. testcontainers' KafkaContainer, when testcontainers is importable and a Docker engine answers
    3. Apache Kafka's own jars (KRaft, broker+controller in one JVM): fetched once from Maven Central
       with the pom beside this file (`mvn dependency:copy-dependencies`, cached in ~/.m2 and
       ~/.cache/costwarden/kafka-libs-<hash>), formatted with kafka.tools.StorageTool and run as
       `java -cp 'libs/*' kafka.Kafka server.properties` on two free loopback ports.
If none can be had it raises BrokerUnavailable with the reason (the pytest fixture fails on it
under CI and skips otherwise).
"""
from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Iterator, Protocol

LOG4J = """log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={path}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
"""


class BrokerUnavailable(RuntimeError):
    """No Kafka broker could be had; the message says why."""


class Broker(Protocol):
    bootstrap: str

    def restart(self, hard: bool = False) -> None: ...


def new_cluster_id() -> str:
    """A random KRaft cluster id made as Kafka's Uuid.randomUuid() makes one: the URL-safe base64 of
    a version-4 UUID without padding, drawn again while it starts with '-' (1 draw in 64 would)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def storage_format_args(cluster_id: str, props: Path) -> list[str]:
    """`kafka-storage format` arguments; `--cluster-id=ID` is one token, so that no id is ever read
    as an option (argparse4j takes `-t -x...` for a missing value)."""
    return [f"--cluster-id={cluster_id}", "-c", str(props)]


class ExternalBroker:
    """A broker run by someone else ($KAFKA_BOOTSTRAP_SERVERS or a testcontainer)."""

    def __init__(self, bootstrap: str, container=None) -> None:
        self.bootstrap = bootstrap
        self._container = container

    def restart(self, hard: bool = False) -> None:
        raise BrokerUnavailable(f"the broker at {self.bootstrap} is not ours to restart")

    def stop(self) -> None:
        if self._container is not None:
            self._container.stop()


class KafkaBroker:
    """Apache Kafka in KRaft combined mode from its own jars, in a child JVM on loopback ports.

    with KafkaBroker() as broker:  broker.bootstrap == "127.0.0.1:PORT"; broker.restart() keeps
    the data and the ports, so clients reconnect to the same address.
    """

    def __init__(self, libs_dir: str | Path | None = None, work_dir: str | Path | None = None,
                 heap_mb: int = 512, start_timeout_s: float = 90, properties: dict[str, str] | None = None) -> None:
        self.libs_dir = Path(libs_dir) if libs_dir else None
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="costwarden-kafka-"))
        self.heap_mb = heap_mb
        self.start_timeout_s = start_timeout_s
        self.extra = dict(properties or {})
        self.port, self.controller_port = _free_port(), _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._formatted = False
        self.timings: dict[str, float] = {}

    def __enter__(self) -> "KafkaBroker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self.proc and self.proc.poll() is None:
            return
        java = _java()
        if self.libs_dir is None:
            t = time.monotonic()
            self.libs_dir = fetch_kafka_libs()
            self.timings["fetch_s"] = time.monotonic() - t
        props = self.work_dir / "server.properties"
        props.write_text(self._properties())
        (self.work_dir / "log4j.properties").write_text(LOG4J.format(path=self.work_dir / "broker.log"))
        cp = f"{self.libs_dir}/*"
        if not self._formatted:
            fmt = subprocess.run([java, "-cp", cp, *self._log_flags(), "kafka.tools.StorageTool", "format",
                                  *storage_format_args(new_cluster_id(), props)], capture_output=True, text=True)
            if fmt.returncode != 0:
                raise BrokerUnavailable(f"kafka-storage format failed: {(fmt.stderr or fmt.stdout)[-1500:]}")
            self._formatted = True
        t = time.monotonic()
        out = open(self.work_dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(
            [java, f"-Xmx{self.heap_mb}m", f"-Xms{min(self.heap_mb, 128)}m", "-XX:+UseSerialGC",
             "-Djava.awt.headless=true", *self._log_flags(), "-cp", cp, "kafka.Kafka", str(props)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        _LIVE.add(self)
        self._wait_ready(t)
        self.timings["start_s"] = time.monotonic() - t

    def stop(self, hard: bool = False) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL after 30 s; `hard` kills at once (a crash)."""
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, hard: bool = False) -> None:
        self.stop(hard=hard)
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        text = ""
        for name in ("stdout.log", "broker.log"):
            p = self.work_dir / name
            if p.exists():
                text += p.read_text(errors="replace")[-chars:]
        return text

    # --- internals -----------------------------------------------------------------------
    def _log_flags(self) -> list[str]:
        return [f"-Dlog4j.configuration=file:{self.work_dir / 'log4j.properties'}",
                f"-Dkafka.logs.dir={self.work_dir}"]

    def _properties(self) -> str:
        props = {
            "process.roles": "broker,controller", "node.id": "1",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER", "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "log.dirs": str(self.work_dir / "data"), "num.partitions": "1",
            "offsets.topic.replication.factor": "1", "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1", "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1", "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true", "log.flush.interval.messages": "1",
        }
        props.update(self.extra)
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else None
                raise BrokerUnavailable(f"Kafka broker exited with code {code} while starting:\n{self.log_tail()}")
            if _metadata_ok(self.bootstrap):
                return
            time.sleep(0.2)
        self.stop(hard=True)
        raise BrokerUnavailable(f"Kafka broker not ready after {self.start_timeout_s:.0f}s:\n{self.log_tail()}")


_LIVE: set[KafkaBroker] = set()
atexit.register(lambda: [b.stop(hard=True) for b in list(_LIVE)])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else shutil.which("java")
    if not java:
        raise BrokerUnavailable("no `java` on PATH (Kafka's jars need Java 11+; apt-get install openjdk-17-jre-headless)")
    return java


def _metadata_ok(bootstrap: str) -> bool:
    """One metadata request through aiokafka's admin client (own thread, own event loop)."""
    host, _, port = bootstrap.partition(":")
    try:  # cheap check first: no client (and no client error log) until the port listens
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False

    async def probe() -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            return bool(cluster.get("brokers"))
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    box: list[bool] = []
    t = threading.Thread(target=lambda: box.append(asyncio.run(probe())), daemon=True)
    t.start()
    t.join(10)
    return bool(box and box[0])


def pom_path() -> Path:
    return Path(str(resources.files("costwarden.testing").joinpath("kafka/pom.xml")))


def fetch_kafka_libs(cache_root: str | Path | None = None) -> Path:
    """The directory holding Kafka's jars, fetched with Maven on first use (cached, locked)."""
    pom = pom_path()
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    root = Path(cache_root or os.environ.get("COSTWARDEN_KAFKA_LIBS_CACHE") or Path.home() / ".cache" / "costwarden")
    libs = root / f"kafka-libs-{digest}"
    if (libs / ".complete").exists():
        return libs
    root.mkdir(parents=True, exist_ok=True)
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerUnavailable("no `mvn` on PATH to fetch Kafka's jars (apt-get install maven)")
    with open(root / f"kafka-libs-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch at a time across processes
        if (libs / ".complete").exists():
            return libs
        tmp = Path(tempfile.mkdtemp(prefix="kafka-libs-", dir=root))
        res = subprocess.run([mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                              f"-DoutputDirectory={tmp}"], capture_output=True, text=True, timeout=900)
        if res.returncode != 0 or not list(tmp.glob("kafka_2.13-*.jar")):
            shutil.rmtree(tmp, ignore_errors=True)
            raise BrokerUnavailable(f"mvn could not fetch Kafka's jars (exit {res.returncode}):\n"
                                    f"{(res.stdout + res.stderr)[-2000:]}")
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        (libs / ".complete").write_text("ok\n")
    return libs


def _from_testcontainers() -> ExternalBroker | None:
    try:
        from testcontainers.kafka import KafkaContainer  # optional; lazily imported
    except ImportError:
        return None
    try:
        container = KafkaContainer().with_kraft()
        container.start()
    except Exception:  # no Docker engine here: fall through to the jars
        return None
    return ExternalBroker(container.get_bootstrap_server(), container)


@contextlib.contextmanager
def kafka_broker_session() -> Iterator[Broker]:
    """A broker for the length of the block (env, then testcontainers, then Kafka's jars)."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield ExternalBroker(env)
        return
    ext = _from_testcontainers()
    if ext is not None:
        try:
            yield ext
        finally:
            ext.stop()
        return
    with KafkaBroker() as broker:
        yield broker
