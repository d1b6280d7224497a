"""Real processes for the end-to-end tests and bench.py: a Kafka broker
(scripts/kafka/start.sh), the worker and the Go test agent built from this
repository, Python agents, and a Kafka client (confluent-kafka) to produce
inputs and read outputs independently of the worker.

Everything listens on 127.0.0.1 only, on ports the OS picks.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import grpc
from confluent_kafka import Consumer, Producer, TopicPartition

from eddy_agent._gen.eddy.v1 import agent_pb2, agent_pb2_grpc

SDK = pathlib.Path(__file__).resolve().parent.parent
ROOT = SDK.parent.parent
PASSAGENT = SDK / "tests" / "agents" / "passagent.py"
WORDCOUNT = ROOT / "examples" / "wordcount" / "python" / "wordcount.py"


def uniq(prefix: str) -> str:
    """A fresh name for a topic, group or app."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(timeout: float, what: str, cond: Callable[[], bool], interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# ---- the broker -----------------------------------------------------------


class Broker:
    """A single-node Apache Kafka broker from scripts/kafka/start.sh, or the
    one named by $EDDY_KAFKA_BOOTSTRAP."""

    def __init__(self) -> None:
        self.dir: Optional[str] = None
        self.bootstrap = ""

    def start(self) -> str:
        env_addr = os.environ.get("EDDY_KAFKA_BOOTSTRAP", "").strip()
        if env_addr:
            self.bootstrap = env_addr
            return env_addr
        self.dir = tempfile.mkdtemp(prefix="eddy-py-kafka-")
        env = dict(os.environ, EDDY_KAFKA_WATCH_PID=str(os.getpid()))
        try:
            out = subprocess.run(
                ["bash", str(ROOT / "scripts" / "kafka" / "start.sh"), self.dir],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                timeout=600,
                check=False,
                text=True,
            )
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"scripts/kafka/start.sh did not finish in {e.timeout}s") from e
        if out.returncode != 0 or not out.stdout.strip():
            raise RuntimeError(
                "could not start the Kafka broker for the end-to-end tests with scripts/kafka/start.sh "
                f"(status {out.returncode}); it needs Java 17+ and, the first time, Maven "
                "(apt-get install -y openjdk-17-jre-headless maven):\n" + out.stderr
            )
        self.bootstrap = out.stdout.strip().splitlines()[-1]
        return self.bootstrap

    def stop(self) -> None:
        if self.dir is None:
            return
        subprocess.run(["bash", str(ROOT / "scripts" / "kafka" / "stop.sh"), self.dir], check=False, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


# ---- Go binaries ------------------------------------------------------------


def build_bins(out_dir: str) -> dict[str, str]:
    """Build worker, workerctl and the Go test agent with ``go build``.

    $EDDY_BIN_DIR, when set, names a directory that already holds them (for
    running the Python tests against binaries built elsewhere)."""
    names = {"worker": "./cmd/worker", "workerctl": "./cmd/workerctl", "testagent": "./integration/testagent"}
    prebuilt = os.environ.get("EDDY_BIN_DIR", "").strip()
    if prebuilt:
        bins = {n: os.path.join(prebuilt, n) for n in names}
        missing = [p for p in bins.values() if not os.access(p, os.X_OK)]
        if missing:
            raise RuntimeError(f"EDDY_BIN_DIR={prebuilt}: missing {', '.join(missing)}")
        return bins
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("go not found: the end-to-end tests build the worker from this repository (Go 1.26)")
    bins = {}
    for name, pkg in names.items():
        path = os.path.join(out_dir, name)
        r = subprocess.run([go, "build", "-o", path, pkg], cwd=ROOT, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"go build {pkg}: status {r.returncode}\n{r.stderr}")
        bins[name] = path
    return bins


# ---- processes --------------------------------------------------------------


class Proc:
    """A child process whose output is collected in memory."""

    def __init__(self, name: str, args: Sequence[str], env: Optional[dict[str, str]] = None) -> None:
        self.name = name
        self.args = list(args)
        self._out: list[str] = []
        self._lock = threading.Lock()
        self.p = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            with self._lock:
                self._out.append(line)

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self._out)

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.p.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL and wait."""
        if self.alive():
            self.p.kill()
        self.p.wait(30)
        self._reader.join(5)

    def wait(self, timeout: float) -> int:
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running {timeout:g}s later; output:\n{self.output}") from None
        self._reader.join(5)
        return rc


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: no EDDY_ADDR/EDDY_TOKEN/EDDY_APP
    leaking in from the caller, Python unbuffered, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("EDDY_ADDR", "EDDY_TOKEN", "EDDY_APP")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Worker:
    """A worker process on 127.0.0.1:0 ports, started with an app file body."""

    bins: dict[str, str]
    body: str
    env: dict[str, str] = field(default_factory=dict)
    grpc_addr: str = ""
    http_addr: str = ""
    proc: Optional[Proc] = None
    dir: str = ""
    # tls is (ca_file, cert_file, key_file) for a worker serving (mutual)
    # TLS: workerctl and ListAgents then use them.
    tls: Optional[tuple[str, str, str]] = None

    @property
    def app(self) -> str:
        """The app of the app file body, which agents send in Hello."""
        m = re.search(r"^app:\s*(\S+)", self.body, re.MULTILINE)
        assert m, "app file body without app"
        return m.group(1)

    def start(self, timeout: float = 30) -> Worker:
        self.dir = tempfile.mkdtemp(prefix="eddy-py-worker-")
        app = os.path.join(self.dir, "app.yaml")
        with open(app, "w") as f:
            f.write(self.body)
        addr_file = os.path.join(self.dir, "addr.json")
        self.proc = Proc(
            "worker",
            [
                self.bins["worker"],
                "-c",
                app,
                "--grpc",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
                os.path.join(self.dir, "data"),
                "--addr-file",
                addr_file,
            ],
            env=clean_env(**self.env),
        )

        def ready() -> bool:
            assert self.proc is not None
            if not self.proc.alive():
                raise AssertionError(f"worker exited with {self.proc.p.returncode} before listening:\n{self.proc.output}")
            try:
                with open(addr_file) as f:
                    a = json.load(f)
            except (OSError, ValueError):
                return False
            self.grpc_addr, self.http_addr = a["grpc"], a["http"]
            return True

        wait_for(timeout, "the worker's addr file", ready)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def output(self) -> str:
        return self.proc.output if self.proc else ""

    def ctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.bins["workerctl"], "--addr", self.grpc_addr, *self._ctl_tls(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env(),
        )

    def _ctl_tls(self) -> list[str]:
        if self.tls is None:
            return []
        ca, cert, key = self.tls
        return ["--cacert", ca, "--cert", cert, "--key", key]

    def channel(self) -> grpc.Channel:
        """A gRPC channel to the worker, over TLS with the client certificate when tls is set."""
        if self.tls is None:
            return grpc.insecure_channel(self.grpc_addr)
        ca, cert, key = (pathlib.Path(f).read_bytes() for f in self.tls)
        return grpc.secure_channel(self.grpc_addr, grpc.ssl_channel_credentials(ca, key, cert))

    def status(self) -> dict[str, Any]:
        r = self.ctl("status", "-o", "json")
        if r.returncode != 0:
            raise AssertionError(f"workerctl status: status {r.returncode}: {r.stderr}")
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    def wait_assigned(self, n: int, timeout: float = 60) -> None:
        """Until the worker is RUNNING and owns n partitions."""

        def ok() -> bool:
            assert self.proc is not None
            if not self.proc.alive():
                raise AssertionError(f"worker exited with {self.proc.p.returncode}:\n{self.proc.output}")
            r = self.ctl("status", "-o", "json")
            if r.returncode != 0:
                return False
            st = json.loads(r.stdout)
            return "RUNNING" in str(st.get("state")) and len(st.get("assigned") or []) == n

        wait_for(timeout, f"the worker RUNNING with {n} assigned partitions", ok, interval=0.1)

    def agents(self) -> list[agent_pb2.AgentInfo]:
        """ListAgents, over the generated Python stubs."""
        with self.channel() as ch:
            resp = agent_pb2_grpc.AgentServiceStub(ch).ListAgents(agent_pb2.ListAgentsRequest(), timeout=5)
        return list(resp.agents)

    def wait_instances(self, name: str, n: int, parts: int, timeout: float = 60) -> agent_pb2.AgentInfo:
        """Until agent ``name`` has n instances owning all ``parts`` partitions between them."""
        found: list[agent_pb2.AgentInfo] = []

        def ok() -> bool:
            for a in self.agents():
                if a.name != name:
                    continue
                owned = sum(len(i.partitions) for i in a.instances)
                if len(a.instances) == n and not a.unassigned and owned == parts:
                    found[:] = [a]
                    return True
            return False

        wait_for(timeout, f"{n} instances of {name} owning {parts} partitions", ok, interval=0.1)
        return found[0]


def pass_app(bootstrap: str, agent_extra: str = "", partitions: int = 8) -> tuple[str, str, str, str]:
    """An app with an input and an output topic and one agent "pass" (like
    integration/agents_test.go's passApp). Returns (body, app, in, out)."""
    app, tin, tout = uniq("app"), uniq("in"), uniq("out")
    body = f"""app: {app}
brokers: {bootstrap}
shutdown_timeout: 30s
kafka: {{reach_timeout: 10s, session_timeout: 6s}}
topics:
  - {{name: {tin}, partitions: {partitions}}}
  - {{name: {tout}, partitions: {partitions}}}
agents:
  - {{name: pass, topics: [{tin}]{agent_extra}}}
"""
    return body, app, tin, tout


def python_agent(script: pathlib.Path, *args: str, env: Optional[dict[str, str]] = None) -> Proc:
    return Proc(script.name, [sys.executable, str(script), *args], env=clean_env(**(env or {})))


# ---- Kafka --------------------------------------------------------------------


def produce(
    bootstrap: str, topic: str, keys: Sequence[str], values: Sequence[str | bytes]
) -> list[tuple[int, int]]:
    """Write values keyed by keys and wait for every acknowledgement.
    Returns the (partition, offset) of each record."""
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "partitioner": "murmur2_random",
        }
    )
    out: list[Optional[tuple[int, int]]] = [None] * len(values)
    errors: list[str] = []

    def report(i: int) -> Callable[[Any, Any], None]:
        def cb(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                out[i] = (msg.partition(), msg.offset())

        return cb

    for i, v in enumerate(values):
        while True:
            try:
                p.produce(
                    topic, key=keys[i].encode(), value=v if isinstance(v, bytes) else v.encode(), on_delivery=report(i)
                )
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(120)
    if remaining or errors:
        raise AssertionError(f"produce to {topic}: {remaining} unacknowledged, errors: {errors[:3]}")
    return [o for o in out if o is not None]


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: str
    value: str
    headers: dict[str, str]


class Reader:
    """An independent reader of topics from the beginning, in a group of its
    own, that never commits."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self.c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": uniq("verify"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.c.subscribe(list(topics))
        self.got: dict[str, list[Rec]] = {t: [] for t in topics}

    def read_until(self, timeout: float, what: str, stop: Callable[[dict[str, list[Rec]]], bool]) -> dict[str, list[Rec]]:
        deadline = time.monotonic() + timeout
        while not stop(self.got):
            if time.monotonic() > deadline:
                n = sum(len(v) for v in self.got.values())
                raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (read {n} records)")
            for m in self.c.consume(num_messages=1000, timeout=0.1):
                if m.error() is not None:  # informational (e.g. partition EOF)
                    continue
                hs = {k: (v or b"").decode() for k, v in (m.headers() or [])}
                self.got[m.topic()].append(
                    Rec(
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        (m.key() or b"").decode(),
                        (m.value() or b"").decode(errors="replace"),
                        hs,
                    )
                )
        return self.got

    def close(self) -> None:
        self.c.close()


def keyed_values(n: int, nkeys: int) -> tuple[list[str], list[str]]:
    """n values "k<key>:<seq>" over nkeys keys; seq counts per key from 0."""
    seq = [0] * nkeys
    keys, values = [], []
    for i in range(n):
        k = i % nkeys
        keys.append(f"k{k}")
        values.append(f"k{k}:{seq[k]}")
        seq[k] += 1
    return keys, values


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """The group's committed offsets for topic's partitions (-1 when none)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset if tp.offset >= 0 else -1 for tp in sorted(tps, key=lambda t: t.partition)]
    finally:
        c.close()


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uniq("watermarks")})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    finally:
        c.close()


def at_end(committed_: Iterable[int], end: Iterable[int]) -> bool:
    return all(e == 0 or c == e for c, e in zip(committed_, end))


def wait_committed_at_end(bootstrap: str, app: str, topic: str, partitions: int = 8, timeout: float = 30) -> None:
    end = end_offsets(bootstrap, topic, partitions)
    wait_for(
        timeout,
        f"committed offsets of {topic} at the end {end}",
        lambda: at_end(committed(bootstrap, app, topic, partitions), end),
        interval=0.2,
    )


__all__ = [
    "Broker",
    "PASSAGENT",
    "Proc",
    "Reader",
    "Rec",
    "WORDCOUNT",
    "Worker",
    "at_end",
    "build_bins",
    "clean_env",
    "committed",
    "end_offsets",
    "keyed_values",
    "pass_app",
    "produce",
    "python_agent",
    "uniq",
    "wait_committed_at_end",
    "wait_for",
]
