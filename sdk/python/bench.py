"""Pass-through throughput: the Python agent against the Go test agent.

Not a test: a measurement, run by hand (it takes a minute or two)::

    make py-venv
    sdk/python/.venv/bin/python sdk/python/bench.py [--events 200000]

Same setup for each row, in one run, against one real Kafka broker
(scripts/kafka/start.sh, or $EDDY_KAFKA_BOOTSTRAP): a fresh 8-partition input
topic filled with N keyed 100-byte records, a worker (built from this
repository) with one agent "pass" that copies every event to an output
topic, and the agent process(es) connected with every partition assigned.
The worker starts paused; the clock runs from `workerctl resume` until the
committed offsets reach the end of the input (at-least-once: every output
acknowledged by Kafka, then committed), like `make bench`'s
BenchmarkPassThrough. Rows:

- go: integration/testagent (the Go SDK), one process;
- python: tests/agents/passagent.py (this SDK), one process;
- python x2: two processes of it, sharing the partitions.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests"))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402

from harness import (  # noqa: E402
    PASSAGENT,
    Broker,
    Proc,
    Worker,
    build_bins,
    end_offsets,
    produce,
    python_agent,
    uniq,
)


def fill(bootstrap: str, topic: str, n: int) -> None:
    pad = "0" * 90
    keys = [f"k{i % 10000}" for i in range(n)]
    values = [f"{i:09d}{pad}" for i in range(n)]
    produce(bootstrap, topic, keys, values)


def run_one(bootstrap: str, bins: dict[str, str], kind: str, instances: int, n: int) -> float:
    app, tin, tout = uniq("bench"), uniq("in"), uniq("out")
    body = f"""app: {app}
brokers: {bootstrap}
log: {{level: warn}}
kafka: {{reach_timeout: 10s, session_timeout: 6s}}
topics:
  - {{name: {tin}, partitions: 8}}
  - {{name: {tout}, partitions: 8}}
agents:
  - {{name: pass, topics: [{tin}]}}
"""
    w = Worker(bins, body).start()
    agents: list[Proc] = []
    try:
        w.wait_assigned(8)
        for i in range(instances):
            if kind == "go":
                agents.append(
                    Proc("testagent", [bins["testagent"], "--addr", w.grpc_addr, "--app", w.app, "--name", "pass", "--out", tout])
                )
            else:
                agents.append(
                    python_agent(PASSAGENT, "--addr", w.grpc_addr, "--app", w.app, "--out", tout, env={"EDDY_LOG_LEVEL": "WARNING"})
                )
        w.wait_instances("pass", instances, 8)
        r = w.ctl("pause")
        if r.returncode != 0:
            raise RuntimeError(f"pause: {r.stderr}")
        fill(bootstrap, tin, n)
        end = end_offsets(bootstrap, tin, 8)
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": app, "enable.auto.commit": False})
        tps = [TopicPartition(tin, p) for p in range(8)]
        try:
            r = w.ctl("resume")
            t0 = time.monotonic()
            if r.returncode != 0:
                raise RuntimeError(f"resume: {r.stderr}")
            deadline = t0 + 600
            while True:
                got = sorted(c.committed(tps, timeout=10), key=lambda t: t.partition)
                if all(e == 0 or t.offset == e for t, e in zip(got, end)):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("committed offsets did not reach the end in 10 minutes")
                time.sleep(0.05)
            elapsed = time.monotonic() - t0
        finally:
            c.close()
        for a in agents:
            if not a.alive():
                raise RuntimeError(f"{a.name} died:\n{a.output[-3000:]}")
        return n / elapsed
    finally:
        for a in agents:
            a.kill()
        w.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description="Pass-through events/s: Python agent vs Go agent")
    ap.add_argument("--events", type=int, default=200_000, help="records per row (default %(default)s)")
    ap.add_argument("--rows", default="go,python,python x2", help="rows to run, comma-separated")
    ap.add_argument(
        "--warmup", type=int, default=50_000, help="records of an untimed first run, to warm the broker up (0: none)"
    )
    args = ap.parse_args()

    broker = Broker()
    bootstrap = broker.start()
    try:
        with tempfile.TemporaryDirectory(prefix="eddy-bench-bin-") as d:
            bins = build_bins(d)
            if args.warmup > 0:
                run_one(bootstrap, bins, "go", 1, args.warmup)  # a fresh broker's JVM is still warming up
            print(f"pass-through, {args.events} records of 100 bytes, 8 partitions, 1 worker, at-least-once")
            print(f"{'agent':<12} {'instances':>9} {'events/s':>12}")
            results = {}
            for row in [r.strip() for r in args.rows.split(",") if r.strip()]:
                kind, _, times = row.partition(" x")
                instances = int(times or 1)
                rate = run_one(bootstrap, bins, kind, instances, args.events)
                results[row] = rate
                print(f"{kind:<12} {instances:>9} {rate:>12,.0f}", flush=True)
            if "go" in results and "python" in results:
                print(f"python / go: {results['python'] / results['go']:.2f}")
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
